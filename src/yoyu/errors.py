"""The one family of errors a user can cause, and nothing else.

Every message is one line that says what was wrong and what to do. The CLI
prints it and exits 2; the gateway turns it into an OpenAI-style error object.
Bugs stay ordinary exceptions with tracebacks: they are ours, not the user's.

    YoyuError
     ├── ModelError            a model could not be read or found
     │    ├── ModelFileError       the file is truncated, malformed or lying
     │    └── ModelNotFoundError   no file, manifest or catalog entry by that name
     ├── MachineError          an unknown preset or a bad machine description
     ├── ConfigError           yoyu.toml or a YOYU_* variable is wrong
     ├── SettingsError         a run or plan setting is out of range
     │    └── DoesNotFitError      the plan refuses the run: it does not fit (exit 1, as yoyu plan)
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
          ├── BadRequestError          the body is not JSON or lacks a needed field
          ├── UnknownModelError        no served model, route or alias by that name
          ├── PrivacyError             a local-only request has no local route
          ├── AdmissionError           a load would cross the memory floor or budget
          └── NoRouteError             every route failed (each one's reason listed)
"""

from __future__ import annotations


class YoyuError(Exception):
    """Base of every error a user can cause; its message is shown as is."""

    exit_code = 2


class ModelError(YoyuError):
    """A model could not be read or found."""


class ModelFileError(ModelError):
    """A model file is truncated, malformed, or claims more than it holds."""


class ModelNotFoundError(ModelError):
    """No model file, Ollama manifest or catalog entry matches the name given."""


class MachineError(YoyuError):
    """A machine preset is unknown or a machine description is invalid."""


class ConfigError(YoyuError):
    """The configuration file or an environment override is invalid."""


class SettingsError(YoyuError):
    """A run or plan setting is out of range (ctx 0, unknown KV type, negative memory)."""


class DoesNotFitError(SettingsError):
    """The plan says the model does not fit with these settings; nothing was started.

    Exit code 1, the same as ``yoyu plan`` for a model that does not fit: the
    input was understood, the machine is too small for it.
    """

    exit_code = 1


class BackendError(YoyuError):
    """An engine (llama.cpp, Ollama...) failed to load a model or to answer."""


class BackendStartError(BackendError):
    """A managed engine exited, failed to bind or never became ready.

    The message ends with the engine's last meaningful log line; ``log_tail``
    keeps the last lines and ``log_path`` the full log, for a closer look.
    """

    def __init__(self, message: str, *, log_tail: str = "", log_path: str | None = None) -> None:
        super().__init__(message)
        self.log_tail = log_tail
        self.log_path = log_path


class BackendUnavailableError(BackendError):
    """Nothing answers at the engine's address, or the model asked for is not loaded there."""


class BackendCrashedError(BackendError):
    """The engine died or closed the connection before finishing an answer."""


class BackendTimeoutError(BackendError):
    """Connecting to, or reading from, the engine took longer than the timeout allows."""


class BackendRequestError(BackendError):
    """The engine refused a request: an HTTP error status, or an error object mid-stream.

    ``status_code`` is the upstream HTTP status (``None`` for an error event in
    a stream that had already started with 200); a gateway uses it to tell the
    caller's mistakes (4xx) from the engine's (5xx).
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RunStoreError(YoyuError):
    """The run store cannot be opened, is from a newer yoyu, or has no such run."""


class GatewayError(YoyuError):
    """The gateway cannot serve a request as asked; the HTTP layer picks the status."""


class BadRequestError(GatewayError):
    """The request body is not valid JSON or lacks a field the endpoint needs."""


class UnknownModelError(GatewayError):
    """No served model, route or alias has the name the request gave."""


class PrivacyError(GatewayError):
    """A request that must stay local has no local route; nothing was sent anywhere."""


class AdmissionError(GatewayError):
    """Loading the model would cross the memory floor or budget, even after unloading."""


class NoRouteError(GatewayError):
    """Every route for the request failed; the message lists why each one did."""


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
