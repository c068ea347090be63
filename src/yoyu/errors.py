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
     └── BackendError          an engine failed to load or answer (its last log lines say why)
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


class BackendError(YoyuError):
    """An engine (llama.cpp, Ollama...) failed to load a model or to answer."""
