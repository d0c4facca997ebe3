"""The seam's currency: ``concurrent.futures.Future``.

Whatever a backend's ``map`` hands back, the core waits on it with
``concurrent.futures.wait`` and stops it with ``Future.cancel``:

* an adapter whose engine has futures of its own (Ray's ``ObjectRef``, Dask
  and Prefect futures) wraps each with :func:`follow`, which settles a
  :class:`TaskFuture` when the engine's future finishes and whose ``cancel``
  also asks the engine to stop the task;
* a backend that already returns ``concurrent.futures.Future`` objects (a
  process pool) is used as is;
* a plain backend of API.md section 6, whose handles are opaque and whose
  ``gather`` blocks, is adapted by :func:`as_futures`: each handle becomes a
  :class:`DeferredFuture` that :func:`wait_first` settles, oldest first, by
  calling ``gather`` on it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
from collections.abc import Callable, Iterable
from typing import Any


class TaskFuture(cf.Future):
    """A future for one engine task; ``cancel()`` also asks the engine to stop it.

    It never enters the RUNNING state, so it can be cancelled until it is
    settled, like the engine task behind it.
    """

    def __init__(self, stop: Callable[[], Any] | None = None):
        super().__init__()
        self._stop = stop

    def cancel(self) -> bool:
        if self.done():
            return False
        if self._stop is not None:
            with contextlib.suppress(Exception):  # finished or gone meanwhile
                self._stop()
        return super().cancel()

    def settle(self, read: Callable[[], Any]) -> None:
        """Set the outcome of ``read()``: its value, or the exception it raised."""
        try:
            value = read()
        except BaseException as exc:
            with contextlib.suppress(cf.InvalidStateError):  # cancelled meanwhile
                self.set_exception(exc)
        else:
            with contextlib.suppress(cf.InvalidStateError):
                self.set_result(value)


def follow(
    add_done_callback: Callable[[Callable[[Any], None]], Any],
    read: Callable[[], Any],
    stop: Callable[[], Any] | None = None,
) -> TaskFuture:
    """A :class:`TaskFuture` settled with ``read()`` once the engine says it is done.

    ``add_done_callback`` registers a one-argument callback with the engine's
    future; ``read`` returns the finished task's value or raises its error;
    ``stop`` asks the engine to stop the task (used by ``cancel``).
    """
    future = TaskFuture(stop)
    add_done_callback(lambda _engine_future: future.settle(read))
    return future


class DeferredFuture(TaskFuture):
    """A plain backend's handle: settled by calling the backend's ``gather`` on it."""

    def __init__(self, handle: Any, gather: Callable[[list[Any]], list[Any]]):
        super().__init__()
        self.handle = handle
        self._gather = gather

    def settle_now(self) -> None:
        self.settle(lambda: self._gather([self.handle])[0])


def as_futures(handles: Iterable[Any], gather: Callable[[list[Any]], list[Any]]) -> list[cf.Future]:
    """One future per handle: futures as they are, anything else deferred to ``gather``."""
    return [h if isinstance(h, cf.Future) else DeferredFuture(h, gather) for h in handles]


def wait_first(futures: Iterable[cf.Future]) -> set[cf.Future]:
    """Block until at least one of ``futures`` is done; return the done ones.

    Deferred futures are settled here, one at a time, in the order given
    (which is submission order): that is all a plain backend's ``gather``
    allows.
    """
    futures = list(futures)
    done = {f for f in futures if f.done()}
    if done:
        return done
    for future in futures:
        if isinstance(future, DeferredFuture):
            future.settle_now()
            return {future}
    done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
    return done
