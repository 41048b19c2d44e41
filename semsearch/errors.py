"""Errors the command line reports as one line (no traceback), importable without Dagster."""


class PoolBusyError(RuntimeError):
    """A pool stayed held by another live run for longer than the wait allows."""
