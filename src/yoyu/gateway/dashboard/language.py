"""The dashboard's words in the reader's language: which language, and its table.

The page's visible text (its HTML and the words its script writes) has English
message ids in ``UI_TEXTS``, in the one catalog the CLI uses (``N_`` marks them
for the extractor, so the test that every id has Japanese covers them). The
server renders a page for one language: the ids found as text or as a
``title``/``placeholder``/``aria-label`` in the HTML are replaced, ``<html lang>``
is set, and the table the script looks its words up in (``t()`` in app.js) is
put in the page as ``<script type="application/json" id="i18n">``. The JSON
calls and the event stream stay English: programs read them.

The language, first that applies: ``YOYU_LANG`` on the server forces it; else
the browser's ``Accept-Language`` (its best-ranked of ``ja``/``en``); else the
server's locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``); else English.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping

from yoyu.i18n import LANGUAGES, N_, language_from, translations

UI_TEXTS = (
    N_("Memory"),
    N_("Models"),
    N_("Runs"),
    N_("Plan"),
    N_("Guard log"),
    N_("live updates"),
    N_("offline"),
    N_("live"),
    N_("reconnecting"),
    N_("Sign out"),
    N_("Available"),
    N_("Level"),
    N_("Caution floor"),
    N_("Abort floor"),
    N_("Load floor"),
    N_("admission keeps this free"),
    N_("Swap used"),
    N_("Pressure (PSI 10 s)"),
    N_("some / full"),
    N_("Held by models"),
    N_("the plans' bytes"),
    N_("memory in use, available, and the floors"),
    N_("in use"),
    N_("caution floor"),
    N_("abort floor"),
    N_("(the floors are measured from the right: what must stay available)"),
    N_("Last minutes"),
    N_("Engines"),
    N_("GPUs"),
    N_("{share} % of {total}"),
    N_("above both floors"),
    N_("of {total}"),
    N_("in use {size}"),
    N_("caution floor {size}"),
    N_("abort floor {size}"),
    N_("ok"),
    N_("caution"),
    N_("abort"),
    N_("available"),
    N_("engines resident"),
    N_("engines anonymous"),
    N_("swap used"),
    N_("GPU used"),
    N_("engines, swap"),
    N_("anonymous / file-backed / swapped"),
    N_("engine"),
    N_("pid"),
    N_("procs"),
    N_("resident"),
    N_("anonymous"),
    N_("file-backed"),
    N_("swapped"),
    N_("split"),
    N_("no engine running"),
    N_("GPU"),
    N_("used"),
    N_("free"),
    N_("engines' share"),
    N_("Routes and aliases"),
    N_("No model is served: this is a monitor (yoyu dashboard). Serve models with yoyu serve."),
    N_("Load"),
    N_("Unload"),
    N_("loaded by {backend}"),
    N_("backend"),
    N_("answering"),
    N_("waiting"),
    N_("TTL"),
    N_("idle"),
    N_("file"),
    N_("plan needs"),
    N_("verdict"),
    N_("{backend} (remote)"),
    N_("{count} of {limit}"),
    N_("never"),
    N_("ready"),
    N_("loading"),
    N_("unloaded"),
    N_("load failed"),  # a model state; "failed" alone reads as a failed check
    N_("pinned"),
    N_("private"),
    N_("component"),
    N_("plan"),
    N_("engine measured"),
    N_("difference"),
    N_("{model} stayed loaded: {reason}"),
    N_("aliases"),
    N_("routes"),
    N_("models"),
    N_("No routes or aliases: clients name the models themselves."),
    N_("(none)"),
    N_("Stored runs"),
    N_("id"),
    N_("started"),
    N_("mode"),
    N_("model"),
    N_("ctx"),
    N_("peak RSS"),
    N_("state"),
    N_("error: {message}"),
    N_("No stored runs yet: yoyu run, yoyu chat, yoyu soak and yoyu profile store theirs."),
    N_("A/B: run #{a} against run #{b}"),
    N_("Run #{id}: {model}"),
    N_("Timeline (seconds from the load's start)"),
    N_("Soak of run #{id}: {verdict}"),
    N_("phase"),
    N_("figure"),
    N_("t (s)"),
    N_("{run} resident"),
    N_("{run} anonymous"),
    N_("{slope} ± {se} MiB/min over {turns} turns; band: ±{sigmas}σ of the slope."),
    N_("anonymous + swapped"),
    N_("fit"),
    N_("Model"),
    N_("served id, installed name, catalog name or a path"),
    N_("Machine"),
    N_("this machine"),
    N_("Cluster"),
    N_("Context"),
    N_("default"),
    N_("served"),
    N_("catalog"),
    N_("Verdict"),
    N_("Risk"),
    N_("Total"),
    N_("GPU layers"),
    N_("Predicted decode"),
    N_("FITS"),  # the plan's verdicts are the enum's values, as its JSON carries them
    N_("FITS_WITH_CHANGES"),
    N_("PARTIAL_OFFLOAD"),
    N_("CPU_ONLY"),
    N_("NEEDS_CLUSTER"),
    N_("DOES_NOT_FIT"),
    N_("safe"),
    N_("tight"),
    N_("{model} on {machine} · ctx {ctx} · KV {kv}"),
    N_("Per device"),
    N_("Nodes"),
    N_("{name} ({role}, layers {first}-{last})"),
    N_("move"),
    N_("total"),
    N_("free after"),
    N_("Moves (and what each gives)"),
    N_("Launch settings"),
    N_("Copy"),
    N_("Copied"),
    N_("weights"),
    N_("KV cache"),
    N_("compute"),
    N_("output"),
    N_("overhead"),
    N_("may use"),
    N_("{name}: {total} of {usable} it may use, {free} free after"),
    N_("Every decision of the guards on this machine (the gateway's, and any yoyu run or "
       "yoyu guard), newest first, with the samples behind it."),
    N_("No decision logged yet."),
    N_("time"),
    N_("PSI some/full"),
    N_("tree resident"),
    N_("guard pid {pid}"),
    N_("pids {pids}"),
    N_("no samples kept with this record"),
    N_("sign in first"),
    N_("yoyu: sign in"),
    N_("This gateway wants its API key. It is kept for this browser session as a cookie "
       "that no script can read."),
    N_("API key"),
    N_("Sign in"),
    N_("sign-in failed ({status})"),
    # the Plan page's "What fits here" (yoyu fit's ranking)
    N_("What fits here"),
    N_("Family"),
    N_("any"),
    N_("Use"),
    N_("Min context"),
    N_("Max size"),
    N_("e.g. 20GB"),
    N_("Free memory"),
    N_("GPU free memory"),
    N_("as reported"),
    N_("default quant only"),
    N_("also those that do not fit"),
    N_("Rank"),
    N_("chat"),
    N_("code"),
    N_("reasoning"),
    N_("embedding"),
    N_("vision"),
    N_("quant"),
    N_("where"),
    N_("decode tok/s"),
    N_("prefill tok/s"),
    N_("risk"),
    N_("memory needed"),
    N_("does not fit"),
    N_("CPU only"),
    N_("MoE experts of {cpu}/{blocks} blocks on the CPU"),
    N_("{gpu}/{total} layers on the GPU"),
    N_("all on the GPU"),
    N_("{runs} of {count} catalog models and quants run on {machine}; ctx: the largest that "
       "keeps the headroom; tok/s: predicted decode / prefill"),
    N_("Click a row to plan it."),
    N_("None fits here: loosen the filters, give more free memory, or show those that do not "
       "fit."),
    N_("No catalog model matches these filters."),
)  # fmt: skip
_TEXT = re.compile(r">(\s*)([^<>]*?)(\s*)<")
_ATTRIBUTE = re.compile(r'\b(title|placeholder|aria-label)="([^"]*)"')


def page_language(accept_language: str | None, environ: Mapping[str, str]) -> str:
    """``ja`` or ``en`` for one request: YOYU_LANG, the browser, the server's locale."""
    forced = environ.get("YOYU_LANG", "").strip()
    if forced:
        return language_from({"YOYU_LANG": forced})
    return browser_language(accept_language or "") or language_from(environ)


def browser_language(accept_language: str) -> str | None:
    """The best-ranked language of ``Accept-Language`` that the dashboard speaks, if any."""
    ranked = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = _quality(params)
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else None


def _quality(params: str) -> float:
    """The ``q`` of a tag's parameters (1 when it has none, 0 when it cannot be read)."""
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def ui_table(language: str) -> dict[str, str]:
    """Each UI id's text in ``language`` (only those that differ from the English)."""
    catalog = translations(language)
    found = {text: catalog.gettext(text) for text in UI_TEXTS}
    return {text: shown for text, shown in found.items() if shown != text}


def localized_page(page: str, language: str) -> str:
    """An HTML page of the dashboard in ``language``, with the script's table in it."""
    table = ui_table(language)
    blob = json.dumps(table, ensure_ascii=False).replace("<", "\\u003c")
    page = page.replace('<html lang="en">', f'<html lang="{language}">', 1)
    page = page.replace(
        "<script", f'<script type="application/json" id="i18n">{blob}</script>\n<script', 1
    )
    page = _TEXT.sub(lambda m: f">{m[1]}{_translated(m[2], table)}{m[3]}<", page)
    return _ATTRIBUTE.sub(lambda m: f'{m[1]}="{_translated(m[2], table)}"', page)


def _translated(text: str, table: Mapping[str, str]) -> str:
    return html.escape(table[text], quote=True) if text in table else text
