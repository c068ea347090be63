"use strict";
// Trades the key for the session cookie (HttpOnly, SameSite=Strict), then opens the dashboard.
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.hidden = true;
  const key = document.getElementById("login-key").value;
  const answer = await fetch("/dashboard/login", {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({key}),
  });
  if (answer.ok) { location.replace("/"); return; }
  const body = await answer.json().catch(() => ({}));
  const words = JSON.parse((document.getElementById("i18n") || {}).textContent || "{}");
  const failed = (words["sign-in failed ({status})"] || "sign-in failed ({status})").replace("{status}", answer.status);
  error.textContent = (body.error && body.error.message) || failed;
  error.hidden = false;
});
