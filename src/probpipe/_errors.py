"""Exceptions probpipe raises itself.

User code's exceptions are never wrapped: a failing row re-raises the row's
original exception (with a note naming the row). These classes cover what
probpipe detects on its own: bad backends, lost workers, timeouts, checkpoints.
Each also derives from the builtin a user would naturally catch.
"""

from __future__ import annotations


class ProbpipeError(Exception):
    """Base class of every exception probpipe raises on its own behalf."""


class BackendNotFoundError(ProbpipeError, ValueError):
    """No backend is registered under the requested name."""


class BackendUnavailableError(ProbpipeError, ImportError):
    """The backend is known but the packages it needs are not installed."""


class BackendConnectionError(ProbpipeError, ConnectionError):
    """The backend could not start, or attach to, the engine it needs."""


class PluginConflictError(ProbpipeError, RuntimeError):
    """Two plugins registered backends under the same name."""


class WorkerLostError(ProbpipeError, RuntimeError):
    """A row's worker process died (killed, crashed, out of memory)."""


class RowTimeoutError(ProbpipeError, TimeoutError):
    """A row ran longer than the call's ``timeout``."""


class RemoteRowError(ProbpipeError, RuntimeError):
    """Stands in for a row's exception that could not be sent back intact.

    Raised only when the original exception could not be pickled; the
    original type's name and message are kept in :attr:`type_name` and the
    message.
    """

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name

    def __reduce__(self):
        message = str(self).split(": ", 1)[-1]
        return (type(self), (self.type_name, message))


class CheckpointError(ProbpipeError, ValueError):
    """A checkpoint directory does not match the call, or a file in it is corrupt."""
