"""The pluggy hooks of probpipe: backend registration and call observers.

Plugins are modules (or objects) with functions marked ``@probpipe.hookimpl``.
Hooks are called with keyword arguments only, so an implementation may accept
any subset of a hook's arguments.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "probpipe"
hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks probpipe's hook specifications (for probpipe itself)."""
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's hook implementations: ``@probpipe.hookimpl``."""


@hookspec
def probpipe_register_backends(register: Any) -> None:
    """Register execution backends: call ``register(BackendClass)`` once per backend.

    Called the first time backends are looked up. Keep the module light:
    import engine packages inside the backend's methods, not at the top.
    """


@hookspec
def probpipe_map_started(call: Any) -> None:
    """A call is about to dispatch its rows. ``call`` is a :class:`probpipe.CallInfo`."""


@hookspec
def probpipe_rows_finished(call: Any, rows: list[int], failed: list[int]) -> None:
    """Some rows of ``call`` finished: ``rows`` all of them, ``failed`` those that failed.

    Called in the calling process, once per row and attempt: as a worker's
    progress beacon arrives (on a probpipe thread, so implementations must be
    thread-safe), when its chunk comes back, or once for all rows restored
    from a checkpoint. A row retried later is reported again.
    """


@hookspec
def probpipe_map_finished(call: Any, n_failed: int, error: BaseException | None) -> None:
    """``call`` finished; ``error`` is the exception it raises, if any."""
