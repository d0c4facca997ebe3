"""Per-worker values: ``pp.per_worker(factory, *args, **kwargs)``.

A :class:`PerWorker` marks an argument whose value is built on the worker by
calling ``factory(*args, **kwargs)``, at most once per worker process for an
equal (factory, args, kwargs) fingerprint while the backend stays open, and
handed to every row that runs there. The built value never travels; only the
marker (factory, arguments, fingerprint) does, inside the call's spec.

How it is run, for every backend alike (no adapter knows about it):

* the planner empties the argument's slot, like a distribution's, and puts
  ``(slot, name, marker)`` in the :class:`~probpipe._worker.CallSpec`, with
  the id of the backend's current session;
* on the worker, :func:`probpipe._worker.run_chunk` asks :class:`ChunkValues`
  for the values of its rows; they come from a process-wide cache keyed by
  (session id, fingerprint), filled under a per-key lock so that the threads
  of one process (Prefect's thread pool, a Dask worker's threads) build once;
* each chunk reports how many values it built (``ChunkResult.per_worker_builds``)
  and the core sums them into provenance (``metadata["per_worker"]``).

A closed backend's next session has a new id, so values built for the old
one are never reused. In this process (``sequential``, ``prefect``) closing
the session forgets them at once; a worker process that outlives the session
(an attached Ray or Dask cluster) keeps the values of its few most recently
used sessions only.

A factory that raises fails every row of that chunk with its own exception
(plus a note naming the argument and the worker). The failure is remembered
for the (call, attempt) it happened in, so the other rows of that attempt do
not each build again; a retry is a new attempt and builds again.

This module is imported on workers: it depends on the standard library only.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

__all__ = ["ChunkValues", "PerWorker", "forget_session", "per_worker"]


def _callable_name(func: Any) -> str:
    module = getattr(func, "__module__", None) or "?"
    return f"{module}.{getattr(func, '__qualname__', type(func).__qualname__)}"


class PerWorker:
    """An argument built once per worker process: ``pp.per_worker(factory, *args, **kwargs)``.

    ``fingerprint`` is a content hash of (factory, args, kwargs): markers
    with equal content share their built value on a worker. A marker whose
    content cannot be pickled gets a fingerprint of its own (it is then
    never shared with another marker, and process backends refuse it).
    """

    __slots__ = ("args", "factory", "fingerprint", "kwargs")
    expanded_by_planner = True  # see the check in __init__

    def __init__(self, factory: Any, /, *args: Any, **kwargs: Any):
        if not callable(factory):
            raise TypeError(
                f"per_worker() takes a factory callable first (it builds the value on each "
                f"worker), got {type(factory).__name__} {factory!r}"
            )
        for given in (*args, *kwargs.values()):
            # Sweep and PerWorker mark arguments the planner expands; checked by
            # that flag, so this worker-side module needs nothing of the planner.
            if getattr(type(given), "expanded_by_planner", False):
                raise TypeError(
                    f"per_worker({_callable_name(factory)}, ...): its arguments are passed to "
                    f"the factory as they are, so a {type(given).__name__} among them would "
                    "not be expanded. Pass concrete values (make one call per value to try)."
                )
        self.factory = factory
        self.args = args
        self.kwargs = kwargs
        self.fingerprint = _content_fingerprint(factory, args, kwargs)

    @property
    def factory_name(self) -> str:
        return _callable_name(self.factory)

    def build(self) -> Any:
        """Call the factory (no rng: the value must not depend on the worker)."""
        return self.factory(*self.args, **self.kwargs)

    def __reduce__(self):
        # The fingerprint travels as computed here: workers never rehash.
        return (_restore, (self.factory, self.args, self.kwargs, self.fingerprint))

    def __repr__(self) -> str:
        given = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        shown = ", ".join([self.factory_name, *given])
        if len(shown) > 120:
            shown = shown[:117] + "..."
        return f"per_worker({shown})"


def _restore(factory: Any, args: tuple, kwargs: dict, fingerprint: str) -> PerWorker:
    marker = PerWorker.__new__(PerWorker)
    marker.factory, marker.args, marker.kwargs, marker.fingerprint = (
        factory,
        args,
        kwargs,
        fingerprint,
    )
    return marker


def _content_fingerprint(factory: Any, args: tuple, kwargs: dict) -> str:
    from ._provenance import fingerprint

    digest = fingerprint((factory, args, kwargs))
    if digest.startswith("id:"):
        # Unpicklable content: an id-based hash could be reused by another
        # object once this one is gone, so give this marker a unique key.
        return f"unique:{uuid.uuid4().hex}"
    return digest


def per_worker(factory: Any, /, *args: Any, **kwargs: Any) -> PerWorker:
    """Mark an argument built by ``factory(*args, **kwargs)`` once per worker process.

    Every row that runs on that process receives the same built value; later
    calls on the same open backend reuse it. The factory and its arguments
    must pickle on backends that ship work to other processes; the value
    need not. The factory gets no ``rng``: its value must not depend on
    which worker built it.
    """
    return PerWorker(factory, *args, **kwargs)


# ---------------------------------------------------------------------------
# The worker side: a process-wide cache
# ---------------------------------------------------------------------------

_SESSIONS_KEPT = 8  # sessions whose values a long-lived worker process keeps


class _Built:
    """One (session, fingerprint) entry: the value, or the last build failure."""

    __slots__ = ("failure", "has_value", "lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.has_value = False
        self.value: Any = None
        self.failure: tuple[str, int, BaseException] | None = None  # (call, attempt, error)


_cache: OrderedDict[str, dict[str, _Built]] = OrderedDict()  # session id -> fingerprint -> entry
_cache_lock = threading.Lock()


def _entry(session_id: str, fingerprint: str) -> _Built:
    with _cache_lock:
        entries = _cache.get(session_id)
        if entries is None:
            entries = _cache[session_id] = {}
            while len(_cache) > _SESSIONS_KEPT:  # a worker outliving closed sessions
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(session_id)
        entry = entries.get(fingerprint)
        if entry is None:
            entry = entries[fingerprint] = _Built()
        return entry


def forget_session(session_id: str) -> None:
    """Drop the values this process built for a session (called when it closes)."""
    with _cache_lock:
        _cache.pop(session_id, None)


def _obtain(
    marker: PerWorker, name: str, session_id: str, call_id: str, attempt: int, worker: str
) -> tuple[Any, bool]:
    """(value, whether it was built now) for ``marker`` in this process."""
    entry = _entry(session_id, marker.fingerprint)
    with entry.lock:  # threads of one process wait for a single build
        if entry.has_value:
            return entry.value, False
        if entry.failure is not None and entry.failure[:2] == (call_id, attempt):
            raise entry.failure[2]
        try:
            value = marker.build()
        except Exception as exc:
            exc.add_note(
                f"probpipe: raised by the factory {marker.factory_name}() of per_worker "
                f"argument {name!r} while building its value on worker {worker}"
            )
            entry.failure = (call_id, attempt, exc)
            raise
        entry.value, entry.has_value, entry.failure = value, True, None
        return value, True


class ChunkValues:
    """The per-worker values of one chunk's rows, built (at most once) on first use.

    ``slots`` are the spec's ``(slot, name, marker)``; :meth:`get` returns the
    values in that order, or raises the factory's exception. ``builds``
    counts the values this chunk built, by fingerprint.
    """

    def __init__(
        self,
        slots: Sequence[tuple[tuple, str, PerWorker]],
        session_id: str,
        call_id: str,
        attempt: int,
        worker: str,
    ):
        self.slots = slots
        self.session_id = session_id
        self.call_id = call_id
        self.attempt = attempt
        self.worker = worker
        self.builds: dict[str, int] = {}
        self._values: list[Any] | None = None

    def get(self) -> list[Any]:
        if self._values is None:
            values = []
            for _slot, name, marker in self.slots:
                value, built = _obtain(
                    marker, name, self.session_id, self.call_id, self.attempt, self.worker
                )
                if built:
                    self.builds[marker.fingerprint] = self.builds.get(marker.fingerprint, 0) + 1
                values.append(value)
            self._values = values
        return self._values


def build_here(marker: PerWorker, name: str) -> Any:
    """Build the value for a plain call (the function runs once, in this process)."""
    try:
        return marker.build()
    except Exception as exc:
        exc.add_note(
            f"probpipe: raised by the factory {marker.factory_name}() of per_worker "
            f"argument {name!r} while building its value in this process"
        )
        raise
