"""User-facing errors: one clear line, no traceback, nonzero exit code in the CLI."""


class SaferiskError(Exception):
    """A problem with the user's input (config, model, data). The message is shown as is."""


class ModelError(SaferiskError):
    """A model file that is missing, corrupt, unsupported or produces bad outputs."""


class DataError(SaferiskError):
    """An input set that is missing, malformed, outside its domain or of the wrong shape."""


class ConfigError(SaferiskError):
    """An invalid configuration or command-line option."""


class WriteError(SaferiskError):
    """An output that cannot be written (read-only or full disk, no permission): nothing half-written is left."""
