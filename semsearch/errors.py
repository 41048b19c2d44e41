"""Errors the command line reports as one line (no traceback), importable without Dagster."""


class PoolBusyError(RuntimeError):
    """A pool stayed held by another live run for longer than the wait allows."""


class ConfigurationError(RuntimeError):
    """A setting the pipeline cannot work with, or an endpoint refusing it (a key, a model)."""
