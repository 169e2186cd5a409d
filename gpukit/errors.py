"""Exceptions raised by the library. Only `gpukit.cli` turns them into messages and exit codes."""


class GpukitError(Exception):
    """Base class for every error gpukit raises on purpose."""


class UsageError(GpukitError):
    """The user asked for something that cannot be done (bad name, size, count)."""


class BackendUnavailable(GpukitError):
    """A backend cannot run on this machine; the message is the reason, shown to the user."""


class KernelError(GpukitError):
    """A kernel implementation raised, returned the wrong shape or disagreed with its reference."""
