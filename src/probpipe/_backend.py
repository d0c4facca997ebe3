"""The execution-backend protocol, its base class, and the core's session wrapper.

A backend only translates "run this function on these items" to an engine.
Everything else (ordering, chunking, seeds, retries, the error policy,
progress, checkpoints) lives in the core, once.

Required by the protocol (API.md section 6): ``name``, ``provenance_tag``,
``__init__(**options)``, ``__enter__``, ``__exit__``, ``map``, ``gather``,
``describe``. Everything else below is optional: the core reads capability
flags with defaults, so a plain class with the required members works.
Subclassing :class:`ExecutionBackend` gives those defaults, option checking
and documentation for free.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from ._options import unknown_name_message
from ._worker import LocalRef, SharedRef


class ExecutionBackend:
    """Base class of execution backends; subclass it and fill in the engine calls.

    Class attributes:

    ``name``
        What :func:`probpipe.use_backend` takes.
    ``provenance_tag``
        Recorded as ``metadata["orchestrate"]`` (``"task"`` for Prefect).
    ``description`` / ``install_hint`` / ``requires``
        Shown by :func:`probpipe.available_backends`; ``requires`` lists the
        importable modules the backend needs (checked without importing).
    ``option_defaults``
        Every option the backend accepts, with its default. Unknown options
        are rejected by ``__init__`` with a suggestion.

    Capability flags (read by the core, all optional):

    ``ships_to_processes``
        Items and functions are pickled to other processes; the core checks
        every argument is picklable before anything is dispatched.
    ``default_chunksize``
        What ``chunksize=None`` means here (``"auto"`` or an int).
    ``task_overhead``
        Rough seconds of overhead per engine task; auto chunking sizes chunks
        to be well above it.
    ``supports_timeout``
        Rows run on a process's main thread, so ``timeout=`` interrupts them
        even inside blocking calls. Without it the core still enforces
        timeouts, cooperatively (between Python bytecodes), and says so once.
    """

    name: ClassVar[str] = ""
    provenance_tag: ClassVar[str] = "task"
    description: ClassVar[str] = ""
    install_hint: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    option_defaults: ClassVar[dict[str, Any]] = {}

    ships_to_processes: ClassVar[bool] = True
    default_chunksize: ClassVar[int | str] = "auto"
    task_overhead: ClassVar[float] = 0.005
    supports_timeout: ClassVar[bool] = False

    def __init__(self, **options: Any):
        for key in options:
            if key not in self.option_defaults:
                raise TypeError(
                    unknown_name_message(
                        "option", key, list(self.option_defaults), owner=f"backend {self.name!r}"
                    )
                )
        self.options: dict[str, Any] = {**self.option_defaults, **options}
        self.validate_options()

    def validate_options(self) -> None:
        """Check ``self.options``; raise TypeError/ValueError naming the bad one.

        Called by ``__init__``, so it runs when ``use_backend`` is called,
        before any engine is started.
        """

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> ExecutionBackend:
        """Start, or attach to, whatever the backend needs. Called once, lazily."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Stop only what ``__enter__`` started; leave attached clusters running."""

    # -- the narrow interface ------------------------------------------------
    def map(self, fn: Any, items: list[Any]) -> list[Any]:
        """Submit ``fn(item)`` for every item; return one handle per item, in order.

        Must not block until the items finish. ``fn`` is a module-level
        function (picklable by reference); items are small.
        """
        raise NotImplementedError

    def gather(self, handles: list[Any]) -> list[Any]:
        """Block until ``handles`` finish; return their results in handle order.

        If an item failed, raise its exception (the original type where the
        engine keeps it). The core passes one handle at a time in completion
        order, so a failure never hides another item's result.
        """
        raise NotImplementedError

    def as_completed(self, handles: list[Any]) -> Iterator[Any]:
        """Yield ``handles`` as they finish (default: in the order given)."""
        return iter(handles)

    def cancel(self, handles: list[Any]) -> None:
        """Best effort: stop items not yet started (and running ones, if possible)."""

    def share(self, value: Any, key: str) -> SharedRef:
        """Make ``value`` available to workers once; return a handle to ship instead.

        The default ships the value with the call, which is correct but
        sends it again with every task. ``key`` is a content fingerprint.
        """
        return LocalRef(value, key)

    def call_scope(self, call: Any) -> contextlib.AbstractContextManager:
        """Bracket one probpipe call; every map and gather of the call runs inside.

        ``call`` is the :class:`probpipe.CallInfo` (function name, rows, and the
        call's options such as ``resources``). Prefect opens its flow run here.
        The default does nothing.
        """
        return contextlib.nullcontext()

    def parallelism(self) -> int:
        """How many items can run at once (workers x slots). Called after start."""
        return 1

    def is_worker_lost(self, exc: BaseException) -> bool:
        """True if ``exc`` from :meth:`gather` means the item's process died."""
        return False

    def describe(self) -> dict[str, Any]:
        """JSON-safe details for provenance (options, addresses, versions)."""
        return dict(self.options)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"<{type(self).__name__} {self.name!r} {opts}>"


# ---------------------------------------------------------------------------
# The core's view of a backend: lifecycle, capabilities, shared-value cache.
# ---------------------------------------------------------------------------

_SHARE_THRESHOLD = 1 << 20  # values above ~1 MB are shared separately
_SHARE_CACHE_SIZE = 32


class Session:
    """Wraps any backend object: starts it once, stops it once, fills in defaults."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.started = False
        self._lock = threading.RLock()
        self._shared: OrderedDict[str, SharedRef] = OrderedDict()

    # capability flags, with the protocol's defaults for plain classes
    def flag(self, name: str) -> Any:
        return getattr(self.backend, name, getattr(ExecutionBackend, name))

    def method(self, name: str) -> Any:
        own = getattr(self.backend, name, None)
        if own is not None:
            return own
        return getattr(ExecutionBackend, name).__get__(self.backend)

    def ensure_started(self) -> None:
        with self._lock:
            if not self.started:
                self.backend.__enter__()
                self.started = True
                _live_sessions.add(self)
                # atexit runs handlers last-in first-out: re-registering after
                # the engine has started (and registered its own handlers)
                # makes our orderly stop run before the engine's teardown.
                atexit.unregister(close_all_sessions)
                atexit.register(close_all_sessions)

    def close(self) -> None:
        """Stop the backend if it was started; safe to call twice."""
        with self._lock:
            self._shared.clear()
            if self.started:
                self.started = False
                _live_sessions.discard(self)
                self.backend.__exit__(None, None, None)

    def share(self, value: Any, key: str) -> SharedRef:
        """The backend's handle for ``value``, reused while content ``key`` is cached."""
        with self._lock:
            if key in self._shared:
                self._shared.move_to_end(key)
                return self._shared[key]
        ref = self.method("share")(value, key)
        with self._lock:
            self._shared[key] = ref
            while len(self._shared) > _SHARE_CACHE_SIZE:
                self._shared.popitem(last=False)
        return ref


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


def iter_chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
