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
hookimpl = pluggy.HookimplMarker(PROJECT)


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

    Called in the calling process as each chunk comes back (and once for rows
    restored from a checkpoint); a row retried later is reported again.
    """


@hookspec
def probpipe_map_finished(call: Any, n_failed: int, error: BaseException | None) -> None:
    """``call`` finished; ``error`` is the exception it raises, if any."""
