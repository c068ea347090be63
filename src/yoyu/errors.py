"""The one family of errors a user can cause, and nothing else.

Every message is one line that says what was wrong and what to do. The CLI
prints it and exits with ``exit_code`` (2 unless a class says otherwise);
the gateway and the MCP server answer with ``http_status``, the OpenAI error
``error_type`` and ``error_code`` the class carries (httpx's
``_exceptions.py`` is the model: the tree says whose fault it was, so no
boundary keeps its own ordered ladder of isinstance checks). Bugs stay
ordinary exceptions with tracebacks: they are ours, not the user's.

    YoyuError
     ├── ModelError            a model could not be read or found
     │    ├── ModelFileError       the file is truncated, malformed or lying
     │    ├── ModelNotFoundError   no file, manifest or catalog entry by that name
     │    └── RemoteModelError     a model on the Hub or at a URL could not be read or fetched
     ├── MachineError          an unknown preset or a bad machine description
     ├── ConfigError           yoyu.toml or a YOYU_* variable is wrong
     ├── SettingsError         a run or plan setting is out of range
     │    └── DoesNotFitError      the plan refuses the run: it does not fit (exit 1, as yoyu plan)
     ├── RequestCancelledError the client left, or the deadline passed (499)
     ├── RunStoreError         the run store cannot be opened or has no such run
     ├── GuardCommandError     ``yoyu guard -- CMD`` could not start CMD (exit code 127)
     ├── GuardStoppedError     the guard stopped a model yoyu ran, before memory ran out (exit 75)
     ├── MigrationError        ``yoyu migrate`` cannot start, resume or roll back as asked
     ├── BackendError          an engine failed to load or answer (its last log lines say why)
     │    ├── BackendStartError        a managed engine did not come up (bad file, port, timeout)
     │    ├── BackendUnavailableError  nothing answers, or the model is not loaded there
     │    ├── BackendCrashedError      the engine died or hung up in the middle of an answer
     │    ├── BackendTimeoutError      the engine took longer than the configured timeout
     │    └── BackendRequestError      the engine refused: an HTTP error status or error event
     └── GatewayError          the gateway cannot serve a request as asked
          ├── BadRequestError          the body is not JSON, lacks a field, or one is out of range
          ├── UnknownModelError        no served model, route or alias by that name
          ├── PrivacyError             a local-only request has no local route
          ├── AdmissionError           a load would cross the memory floor or budget (503)
          ├── QueueFullError           the model's wait queue is full (429 with Retry-After)
          └── NoRouteError             every route failed (each one's reason listed)
"""

from __future__ import annotations

from typing import Any, TypeVar

from yoyu.i18n import Message

_ErrorT = TypeVar("_ErrorT", bound="YoyuError")


class YoyuError(Exception):
    """Base of every error a user can cause; its message is shown as is.

    ``http_status``, ``error_type`` and ``error_code`` are how an HTTP API
    answers it (OpenAI's ``{"error": {"type", "code", "param"}}``); a subclass
    sets its own, an instance may override them (``param`` names the request
    field at fault, ``retry_after_s`` says when to try again).
    """

    exit_code = 2
    http_status = 500
    error_type = "server_error"
    error_code: str | None = None
    param: str | None = None
    retry_after_s: float | None = None

    def __init__(self, message: str | Message = "", *args: Any) -> None:
        # str(error) stays English (logs, HTTP bodies); the CLI renders ``message``
        # in the user's language (yoyu.i18n.render_error).
        self.message = message if isinstance(message, Message) else None
        super().__init__(str(message), *args)

    @classmethod
    def from_message(cls: type[_ErrorT], message_id: str, /, **values: object) -> _ErrorT:
        """The error with a catalog message: ``message_id`` is the English template."""
        return cls(Message(message_id, values))


class ModelError(YoyuError):
    """A model could not be read or found."""

    http_status = 503
    error_type = "model_unavailable"
    error_code = "model_unreadable"


class ModelFileError(ModelError):
    """A model file is truncated, malformed, or claims more than it holds."""


class ModelNotFoundError(ModelError):
    """No model file, Ollama manifest or catalog entry matches the name given."""

    http_status = 404
    error_type = "invalid_request_error"
    error_code = "model_not_found"


class RemoteModelError(ModelError):
    """A model on the Hugging Face Hub or at an https:// URL could not be planned or pulled:
    the server is unreachable or refuses, ignores Range requests, the header is larger
    than yoyu reads before a download, or a download does not match the Hub's sha256."""

    http_status = 502
    error_type = "upstream_error"
    error_code = "remote_model_unreadable"


class MachineError(YoyuError):
    """A machine preset is unknown or a machine description is invalid."""

    http_status = 400
    error_type = "invalid_request_error"
    error_code = "unknown_machine"


class ConfigError(YoyuError):
    """The configuration file or an environment override is invalid (the operator's to fix)."""

    error_code = "bad_config"


class SettingsError(YoyuError):
    """A run or plan setting is out of range (ctx 0, unknown KV type, negative memory).

    Through the gateway these come from a served model's configured settings:
    the operator's to fix, so a 500 with its own code, not the caller's 400.
    """

    error_code = "bad_settings"


class DoesNotFitError(SettingsError):
    """The plan says the model does not fit with these settings; nothing was started.

    Exit code 1, the same as ``yoyu plan`` for a model that does not fit: the
    input was understood, the machine is too small for it.
    """

    exit_code = 1
    http_status = 503
    error_type = "insufficient_memory"
    error_code = "model_does_not_fit"


class BackendError(YoyuError):
    """An engine (llama.cpp, Ollama...) failed to load a model or to answer."""

    http_status = 502
    error_type = "upstream_error"
    error_code = "upstream_failed"


class BackendStartError(BackendError):
    """A managed engine exited, failed to bind or never became ready.

    The message ends with the engine's last meaningful log line; ``log_tail``
    keeps the last lines and ``log_path`` the full log, for a closer look.
    """

    def __init__(
        self, message: str | Message, *, log_tail: str = "", log_path: str | None = None
    ) -> None:
        super().__init__(message)
        self.log_tail = log_tail
        self.log_path = log_path


class BackendUnavailableError(BackendError):
    """Nothing answers at the engine's address, or the model asked for is not loaded there."""


class BackendCrashedError(BackendError):
    """The engine died or closed the connection before finishing an answer."""


class BackendTimeoutError(BackendError):
    """Connecting to, or reading from, the engine took longer than the timeout allows."""

    http_status = 504
    error_code = "upstream_timeout"


class BackendRequestError(BackendError):
    """The engine refused a request: an HTTP error status, or an error object mid-stream.

    ``status_code`` is the upstream HTTP status (``None`` for an error event in
    a stream that had already started with 200); a gateway uses it to tell the
    caller's mistakes (4xx) from the engine's (5xx).
    """

    def __init__(
        self, message: str | Message, *, status_code: int | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.param = param
        if status_code in (401, 403):  # the upstream refused *our* key: the operator's to fix
            self.error_code = "upstream_auth"
        elif status_code is not None and 400 <= status_code < 500:  # the caller's request
            self.http_status, self.error_type = status_code, "invalid_request_error"
            self.error_code = "upstream_refused"


class RequestCancelledError(YoyuError):
    """The request was stopped before its answer: the client left, or its deadline passed.

    Never a reason to try the next route: nobody waits for the answer.
    """

    http_status = 499
    error_type = "request_cancelled"
    error_code = "client_closed_request"


class ShuttingDownError(RequestCancelledError):
    """The gateway stopped (Ctrl-C, SIGTERM) while answering: the client may ask again
    once it is back, so 503 with Retry-After rather than the client's own 499."""

    http_status = 503
    error_type = "server_error"
    error_code = "shutting_down"
    retry_after_s = 5.0


class RunStoreError(YoyuError):
    """The run store cannot be opened, is from a newer yoyu, or has no such run."""


class GatewayError(YoyuError):
    """The gateway cannot serve a request as asked."""


class BadRequestError(GatewayError):
    """The request is not valid JSON, lacks a field, or has one out of range (``param``)."""

    http_status = 400
    error_type = "invalid_request_error"
    error_code = "invalid_request"

    def __init__(self, message: str | Message, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class UnknownModelError(GatewayError):
    """No served model, route or alias has the name the request gave."""

    http_status = 404
    error_type = "invalid_request_error"
    error_code = "model_not_found"


class PrivacyError(GatewayError):
    """A request that must stay local has no local route; nothing was sent anywhere."""

    http_status = 403
    error_type = "privacy_error"
    error_code = "no_local_route"


class AdmissionError(GatewayError):
    """Loading the model would cross the memory floor or budget, even after unloading."""

    http_status = 503
    error_type = "insufficient_memory"
    error_code = "model_does_not_fit"
    retry_after_s = 30.0  # models unload after their TTL; the memory may be there by then


class QueueFullError(GatewayError):
    """The model already has ``max_queue`` requests waiting for a slot: try again later."""

    http_status = 429
    error_type = "rate_limit_exceeded"
    error_code = "queue_full"

    def __init__(self, message: str | Message, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NoRouteError(GatewayError):
    """Every route for the request failed; the message lists why each one did.

    When every one was refused for memory it answers as that refusal does
    (503 with Retry-After): the route is not broken, the machine is full; when
    every one was busy, as a full queue does (429, the soonest Retry-After).
    """

    http_status = 502
    error_type = "upstream_error"
    error_code = "no_route"

    def __init__(self, message: str | Message, *, causes: tuple[YoyuError, ...] = ()) -> None:
        super().__init__(message)
        self.causes = causes
        if causes and all(isinstance(cause, AdmissionError) for cause in causes):
            self.http_status, self.error_type = 503, AdmissionError.error_type
            self.error_code, self.retry_after_s = "no_route_fits", AdmissionError.retry_after_s
        elif causes and all(isinstance(cause, QueueFullError) for cause in causes):
            self.http_status, self.error_type = 429, QueueFullError.error_type
            self.error_code = "every_route_busy"
            self.retry_after_s = min(cause.retry_after_s or 1.0 for cause in causes)


class GuardCommandError(YoyuError):
    """The command given to ``yoyu guard --`` could not be started (not found, not executable).

    Exit code 127, as a shell reports a command it cannot find.
    """

    exit_code = 127


class GuardStoppedError(YoyuError):
    """The guard unloaded or stopped the model of a ``run``/``chat``/``soak``/``profile``.

    Exit code 75 (EX_TEMPFAIL), as ``yoyu guard -- CMD`` when it stops CMD: the
    machine was short of memory, not the input wrong.
    """

    exit_code = 75


class MigrationError(YoyuError):
    """A migration cannot start, resume or roll back as asked (none started, one unfinished)."""
