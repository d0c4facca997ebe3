"""The core's view of one backend object: started once, stopped once, defaults filled in.

A backend may be any object with the members API.md section 6 requires; a
:class:`Session` reads its optional members and capability flags with the
defaults of :class:`~probpipe._backend.ExecutionBackend`, so the rest of the
core never asks "does this backend have ...?".
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ._backend import ExecutionBackend
from ._futures import as_futures
from ._per_worker import forget_session
from ._worker import SharedRef

_SHARE_THRESHOLD = 1 << 20  # values above ~1 MB are shared separately
_SHARE_CACHE_SIZE = 32


class Session:
    """Wraps any backend object: starts it once, stops it once, fills in defaults."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.name: str = getattr(backend, "name", type(backend).__name__)
        self.started = False
        # A new id each time the backend starts: per-worker values are cached
        # on workers under it, so a closed-and-reopened backend never reuses
        # values built before it closed.
        self.id = ""
        self._lock = threading.RLock()
        self._shared: OrderedDict[str, SharedRef] = OrderedDict()
        # The median row time of each function's last call, by qualified name:
        # its next call is chunked at once (see Dispatch).
        self.row_seconds: dict[str, float] = {}

    def flag(self, name: str) -> Any:
        """A capability flag, with the protocol's default for plain classes."""
        return getattr(self.backend, name, getattr(ExecutionBackend, name))

    def _optional(self, name: str) -> Any:
        own = getattr(self.backend, name, None)
        if own is not None:
            return own
        return getattr(ExecutionBackend, name).__get__(self.backend)

    # -- lifecycle -------------------------------------------------------------
    def ensure_started(self) -> None:
        with self._lock:
            if not self.started:
                self.backend.__enter__()
                self.started = True
                self.id = uuid.uuid4().hex
                _live_sessions.add(self)
                _run_our_exit_first()

    def close(self, interrupted: KeyboardInterrupt | None = None) -> None:
        """Stop the backend if it was started; safe to call twice.

        After Ctrl-C the backend's ``__exit__`` gets the KeyboardInterrupt, as
        a ``with`` block would pass it: work still running is unwanted.
        """
        with self._lock:
            self._shared.clear()
            if self.started:
                self.started = False
                forget_session(self.id)  # values built in this process for it
                _live_sessions.discard(self)
                if interrupted is None:
                    self.backend.__exit__(None, None, None)
                else:
                    self.backend.__exit__(type(interrupted), interrupted, None)

    # -- one call --------------------------------------------------------------
    def run_call(self, call: Any, body: Callable[[Callable, int], Any]) -> Any:
        """Run ``body(submit, parallelism)`` in the backend's scope for ``call``.

        ``submit(fn, items)`` returns one ``concurrent.futures.Future`` per
        item, whatever the backend's handles are.
        """
        gather = self.backend.gather

        def body_on_futures(map_: Callable, parallelism: int) -> Any:
            def submit(fn: Any, items: list[Any]) -> list[Any]:
                handles = list(map_(fn, items))
                if len(handles) != len(items):
                    raise RuntimeError(
                        f"backend {self.name!r}: map() returned {len(handles)} handles "
                        f"for {len(items)} items"
                    )
                return as_futures(handles, gather)

            return body(submit, max(1, int(parallelism)))

        try:
            return self._optional("run_call")(call, body_on_futures)
        finally:
            # Engines register exit handlers lazily (Prefect's event sender
            # on a call's first event): ours must still run before theirs.
            _run_our_exit_first()

    def is_worker_lost(self, exc: BaseException) -> bool:
        try:
            return bool(self._optional("is_worker_lost")(exc))
        except Exception:
            return False

    def describe(self) -> Any:
        try:
            return self.backend.describe()
        except Exception as exc:  # provenance must not fail a finished call
            return {"describe_error": repr(exc)}

    def share(self, value: Any, key: str) -> SharedRef:
        """The backend's handle for ``value``, reused while content ``key`` is cached."""
        with self._lock:
            if key in self._shared:
                self._shared.move_to_end(key)
                return self._shared[key]
        ref = self._optional("share")(value, key)
        with self._lock:
            self._shared[key] = ref
            while len(self._shared) > _SHARE_CACHE_SIZE:
                self._shared.popitem(last=False)
        return ref

    def share_once(self, value: Any, key: str) -> SharedRef:
        """A handle for a value used by one call only (not cached)."""
        return self._optional("share")(value, key)


_sessions: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()
_sessions_by_id: dict[int, Session] = {}
_live_sessions: weakref.WeakSet[Session] = weakref.WeakSet()
_sessions_lock = threading.Lock()


def session_for(backend: Any) -> Session:
    """The one session of a backend object (created on first use)."""
    with _sessions_lock:
        try:
            session = _sessions.get(backend)
        except TypeError:  # not weak-referenceable
            session = _sessions_by_id.get(id(backend))
        if session is None:
            session = Session(backend)
            try:
                _sessions[backend] = session
            except TypeError:
                _sessions_by_id[id(backend)] = session
        return session


def _run_our_exit_first() -> None:
    """Make :func:`close_all_sessions` the next exit handler to run.

    atexit runs handlers last-in first-out: re-registering after an engine
    registered its own makes our orderly stop (which flushes what the engine
    still holds, then stops it) run before the engine's teardown.
    """
    atexit.unregister(close_all_sessions)
    atexit.register(close_all_sessions)


def close_all_sessions() -> None:
    """Stop every started backend (registered with atexit)."""
    for session in list(_live_sessions):
        with contextlib.suppress(Exception):
            session.close()


atexit.register(close_all_sessions)


def new_call_id() -> str:
    return uuid.uuid4().hex[:12]


def big_enough_to_share(value: Any) -> bool:
    """Whether a constant is worth a separate shared handle (arrays above ~1 MB)."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes >= _SHARE_THRESHOLD
    from ._record import Record

    if isinstance(value, Record):
        return sum(getattr(value[f], "nbytes", 0) for f in value.fields) >= _SHARE_THRESHOLD
    if isinstance(value, (bytes, bytearray)):
        return len(value) >= _SHARE_THRESHOLD
    return False
