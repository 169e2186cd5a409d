"""Exceptions raised by the library. Only `gpukit.cli` turns them into messages and exit codes."""


class GpukitError(Exception):
    """Base class for every error gpukit raises on purpose."""


class UsageError(GpukitError):
    """The user asked for something that cannot be done (bad name, size, count)."""


class BackendUnavailable(GpukitError):
    """A backend cannot run on this machine; the message is the reason, shown to the user."""


class KernelError(GpukitError):
    """A kernel implementation raised, returned the wrong shape or disagreed with its reference."""


class OutputError(GpukitError):
    """A file could not be written after measuring (the disk filled, the folder went): not the
    user's input, so it has its own exit status; the message says where the results are."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP: the run stops, saves what it measured and exits with the
    signal's status. A KeyboardInterrupt of its own, so that a kernel raising a plain
    KeyboardInterrupt is told apart from the user stopping the run."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
