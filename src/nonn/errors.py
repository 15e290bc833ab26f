"""Errors a user can cause. Each message names the fix; the CLI prints it in one line, exit 2."""


class NonnError(Exception):
    """Base class of every user-facing error."""


class ConfigError(NonnError):
    """A configuration key, value or file is wrong."""


class DataError(NonnError):
    """A dataset is unknown, missing, corrupt or could not be downloaded."""


class CheckpointError(NonnError):
    """A checkpoint or run artifact is missing, corrupt or incompatible."""


class ModelError(NonnError):
    """An architecture name or a module path does not exist."""


class PartitionError(NonnError):
    """A partition request cannot be met (K out of range, bad graph)."""


class ReportedError(NonnError):
    """A failure whose one-line error a child process has already printed; the CLI exits 2 without repeating it."""


class ReportError(NonnError):
    """A report cannot be made: not a run directory, or no browser for a screenshot."""
