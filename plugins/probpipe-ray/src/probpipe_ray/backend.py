"""The native Ray backend: one Ray task per chunk of rows.

It only translates. The core (chunking, seeds, order, retries, the error
policy) calls ``run_call`` and the ``submit`` it passes on; this module turns
those into ``f.remote`` and hands back each task's future
(:func:`probpipe.engines.ray.task_future`: ``cancel`` is ``ray.cancel(force=True)``).
The Ray connection itself is the process-wide one of
:mod:`probpipe.engines.ray`, shared with the Prefect-Ray adapter (Ray allows
one connection per process).

Resource hints (``num_cpus``, ``num_gpus``, ``memory``, ``resources``) come
from the backend's options and from a function's ``resources=`` option, the
latter winning. They are checked before anything is dispatched: Ray itself
would accept a task no node can run and wait for such a node forever.
"""

from __future__ import annotations

import json
from typing import Any

import probpipe
from probpipe.engines import ray as ray_engine
from probpipe.engines.ray import HINT_KEYS, check_resource_hints


class RayBackend(probpipe.ExecutionBackend):
    """Each chunk of rows is one Ray task (``ray.remote``) on a shared Ray connection."""

    name = "ray"
    provenance_tag = "ray"
    description = (
        "Native Ray: one task per chunk of rows. address=None starts a private local "
        "Ray once, 'auto' attaches to the Ray running on this machine (or fails), "
        "'ray://host:10001' uses Ray Client; num_cpus/num_gpus/memory/resources "
        "are per-task resource hints."
    )
    install_hint = "pip install probpipe-ray"
    requires = ("ray",)
    option_defaults = {
        "address": None,
        "init_options": None,
        "num_cpus": None,
        "num_gpus": None,
        "memory": None,
        "resources": None,
    }

    ships_to_processes = True
    default_chunksize = "auto"
    task_overhead = 0.001  # measured ~0.5 ms per Ray task
    supports_timeout = True  # ray.cancel(force=True) stops a running task

    def __init__(self, **options: Any):
        super().__init__(**options)  # checks names, then validate_options()
        self._remotes: dict[tuple, Any] = {}  # (fn, hints) -> ray.remote function
        self._connected = False

    def validate_options(self) -> None:
        ray_engine.check_address(self.options["address"])
        init_options = self.options["init_options"]
        if init_options is not None and not isinstance(init_options, dict):
            raise TypeError(
                f"backend 'ray': option init_options must be a dict of ray.init() "
                f"arguments or None, got {init_options!r}"
            )
        # The backend's own hints, normalized: every call's tasks start from them.
        self._hints = check_resource_hints(
            {key: self.options[key] for key in HINT_KEYS}, "backend 'ray' option"
        )

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> RayBackend:
        ray_engine.acquire(self.options["address"], self.options["init_options"])
        self._connected = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._connected:
            self._connected = False
            self._remotes.clear()
            # Stops a Ray probpipe started once its last user is gone; an
            # attached cluster is only disconnected. Never `ray stop`.
            ray_engine.release()

    # -- the narrow interface ------------------------------------------------
    def run_call(self, call: Any, body: Any) -> Any:
        """Submit the call's tasks with its resource hints (refused if no node meets them)."""
        hints = ray_engine.call_hints(self._hints, call)
        return body(lambda fn, items: self._submit(fn, items, hints), ray_engine.parallelism(hints))

    def map(self, fn: Any, items: list[Any]) -> list[Any]:
        """One task per item, with the backend's own hints; futures, without waiting."""
        return self._submit(fn, items, self._hints)

    def _submit(self, fn: Any, items: list[Any], hints: dict[str, Any]) -> list[Any]:
        remote = self._remote_function(fn, hints)
        return [ray_engine.task_future(remote.remote(item)) for item in items]

    def _remote_function(self, fn: Any, hints: dict[str, Any]) -> Any:
        """``ray.remote(fn)`` with these hints, built once and reused for every item."""
        key = (fn, _frozen(hints))
        remote = self._remotes.get(key)
        if remote is None:
            import ray

            # max_retries=0: the core decides whether a lost chunk is re-run.
            remote = ray.remote(max_retries=0, **hints)(fn)
            self._remotes[key] = remote
        return remote

    def gather(self, handles: list[Any]) -> list[Any]:
        """Results in handle order. A failed task raises Ray's ``RayTaskError``,
        which is also an instance of the original exception type."""
        return [future.result() for future in handles]

    def share(self, value: Any, key: str) -> Any:
        return ray_engine.put(value, key)

    def parallelism(self) -> int:
        """Tasks that fit at once: the cluster's CPUs over the CPUs each task takes."""
        return ray_engine.parallelism(self._hints)

    def is_worker_lost(self, exc: BaseException) -> bool:
        return ray_engine.is_worker_lost(exc)

    def describe(self) -> dict[str, Any]:
        out = {key: _json_safe(value) for key, value in self.options.items()}
        return {**out, **ray_engine.connection_details()}


def _frozen(hints: dict[str, Any]) -> tuple:
    """A hashable key for a hints dict."""
    return tuple(
        sorted(
            (key, tuple(sorted(value.items())) if isinstance(value, dict) else value)
            for key, value in hints.items()
        )
    )


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
