"""Choosing the backend: ``use_backend``, ``current_backend`` and precedence.

Precedence, highest first: the function's ``backend=`` option, the innermost
``use_backend``, the environment variable ``PROBPIPE_BACKEND``, ``"sequential"``.

``use_backend(name, **options)`` takes effect at once, process-wide. Used as a
context manager it is scoped instead: on entry the process-wide choice goes
back to what it was (the scoped one lives in a ContextVar, so threads and
asyncio tasks that did not enter the block are unaffected) and on exit the
previous backend is restored and the scoped one stopped.

Asking again for the process-wide backend with the same name and options (a
notebook's setup cell run twice) returns that same backend: nothing
restarts, and leaving a ``with`` block of it stops nothing. Different options
make a new backend; the one it replaces is stopped before the new one starts
(at the next call), and stops only what it started itself.
"""

from __future__ import annotations

import contextvars
import os
import threading
from typing import Any

from ._registry import BackendInfo, registry
from ._session import session_for

ENV_VAR = "PROBPIPE_BACKEND"
DEFAULT_BACKEND = "sequential"

_scoped: contextvars.ContextVar[Any | None] = contextvars.ContextVar(
    "probpipe_backend", default=None
)
_lock = threading.RLock()
_process_wide: Any | None = None
_entered: set[int] = set()  # ids of backends whose use_backend(...) block was entered
_replaced: list[Any] = []  # replaced process-wide backends, stopped once truly unused
_by_name: dict[str, Any] = {}  # backends made from a bare name, shared per process


def create_backend(name: str, **options: Any) -> Any:
    """Instantiate backend ``name`` (validating its options); nothing is started."""
    cls = registry.lookup(name)
    backend = cls(**options)
    if not isinstance(getattr(backend, "options", None), dict):
        try:
            backend.options = dict(options)
        except AttributeError:
            pass
    return backend


def backend_by_name(name: str) -> Any:
    """The process's shared instance of ``name`` with default options."""
    with _lock:
        if name not in _by_name:
            _by_name[name] = create_backend(name)
        return _by_name[name]


class BackendChoice:
    """What :func:`use_backend` returns: the chosen backend, usable as a context manager.

    ``reused``: the backend was already active (same name and options), so
    this choice owns nothing and its ``with`` block stops nothing.
    """

    def __init__(self, backend: Any, previous: Any, token: contextvars.Token, reused: bool = False):
        self.backend = backend
        self.reused = reused
        self._previous = previous
        self._token = token

    def __getattr__(self, item: str) -> Any:
        return getattr(self.backend, item)

    def __enter__(self) -> Any:
        global _process_wide
        if self.reused:
            return self.backend  # already active: nothing to hand back or restore
        with _lock:
            # Scoped after all: the process-wide choice goes back to what it was.
            if _process_wide is self.backend:
                _process_wide = self._previous
                if self._previous in _replaced:
                    _replaced.remove(self._previous)
            _entered.add(id(self.backend))
        return self.backend

    def __exit__(self, *exc_info: Any) -> None:
        _scoped.reset(self._token)
        if self.reused:
            return  # it belongs to the choice that made it; that one stops it
        with _lock:
            _entered.discard(id(self.backend))
        session_for(self.backend).close()

    def __repr__(self) -> str:
        return f"use_backend({self.backend!r})"


def use_backend(name: str, **options: Any) -> BackendChoice:
    """Select backend ``name`` with ``options``, at once and process-wide.

    Unknown names raise an error listing the known ones; missing packages an
    error with the install command; bad options a TypeError/ValueError. The
    engine itself starts on first use. As a context manager the choice is
    scoped to the block, and the backend is stopped on exit. A backend
    replaced by a later ``use_backend`` is stopped too.

    The same name and options as the active backend (a re-run notebook cell)
    give back the active backend itself: nothing restarts.
    """
    global _process_wide
    backend = create_backend(name, **options)  # validates, starts nothing
    with _lock:
        active = _process_wide
        if active is None:  # the environment's choice, if a call already made it
            active = _by_name.get(os.environ.get(ENV_VAR) or DEFAULT_BACKEND)
        if active is not None and _same_backend(active, backend):
            # A re-run setup cell: keep the running backend (process-wide now,
            # if it was the environment's choice).
            previous = _process_wide
            _process_wide = active
            return BackendChoice(active, previous, _scoped.set(active), reused=True)
        previous = _process_wide
        _process_wide = backend
        token = _scoped.set(backend)
        if previous is not None:
            _replaced.append(previous)
    return BackendChoice(backend, previous, token)


def _same_backend(a: Any, b: Any) -> bool:
    """Same class and equal options (after defaults)."""
    if type(a) is not type(b):
        return False
    try:
        return bool(getattr(a, "options", None) == getattr(b, "options", None))
    except Exception:  # options that cannot be compared (arrays): treat as different
        return False


def _stop_replaced() -> None:
    with _lock:
        stale = [b for b in _replaced if b is not _process_wide and id(b) not in _entered]
        _replaced[:] = [b for b in _replaced if b not in stale]
    for backend in stale:
        session_for(backend).close()


def current_backend() -> Any:
    """The backend calls would use now (ignoring a function's own ``backend=``)."""
    _stop_replaced()
    scoped = _scoped.get()
    if scoped is not None and (scoped is _process_wide or id(scoped) in _entered):
        return scoped
    if _process_wide is not None:
        return _process_wide
    from_env = os.environ.get(ENV_VAR)
    if from_env and from_env not in _by_name:
        # A typo in the environment says it came from there.
        registry.lookup(from_env, source=f"environment variable {ENV_VAR}")
    return backend_by_name(from_env or DEFAULT_BACKEND)


def resolve_backend(option: Any) -> Any:
    """The backend for a call whose ``backend=`` option is ``option``."""
    if option is None:
        return current_backend()
    _stop_replaced()
    if isinstance(option, str):
        return backend_by_name(option)
    return option


def available_backends() -> dict[str, BackendInfo]:
    """Every registered backend, installed or not: ``{name: BackendInfo}``."""
    return registry.info()


def reset_for_tests() -> None:
    """Forget the process-wide choice and the named instances (stopping them)."""
    global _process_wide
    with _lock:
        backends = [*_by_name.values(), *_replaced, _process_wide]
        _by_name.clear()
        _replaced.clear()
        _process_wide = None
    for backend in backends:
        if backend is not None:
            session_for(backend).close()
