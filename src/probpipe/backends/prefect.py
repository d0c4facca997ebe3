"""Prefect adapters: ``prefect``, ``prefect-dask`` and ``prefect-ray``.

Each probpipe call is one Prefect flow run named after the function; each
chunk of rows is one task run in it (``task.map`` over the chunks), so calls
show up in the Prefect UI. The adapters only translate: ordering, chunking,
seeds, retries and the error policy stay in the core.

How the pieces fit:

* One Prefect API per process (:mod:`probpipe.engines.prefect`), started on
  127.0.0.1 when the first Prefect backend opens, or your own server if
  ``PREFECT_API_URL`` is set. Workers get its URL from the task's context.
* The engine (Ray, a Dask cluster) is started once when the backend opens and
  reused by every flow run; Prefect's runners would otherwise build a new
  cluster per flow run.
* Tasks use no cache policy and persist nothing: inputs are never hashed, and
  large arguments travel as references (object store / scatter), not as task
  parameters.
* A flow run needs a thread to live in while the core submits and gathers
  from the calling thread, so :class:`_FlowRun` runs the flow in a helper
  thread that waits until the call is over.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

from .._backend import ExecutionBackend
from .._options import check_positive_int
from ..engines import dask as dask_engine
from ..engines import prefect as prefect_engine
from ..engines import ray as ray_engine

# Flow runs in progress, by token. Prefect pickles the flow (function included)
# into every task's context, so the flow function is a module-level function
# that finds its _FlowRun here instead of a bound method dragging the backend.
_open_flows: dict[str, _FlowRun] = {}


def _probpipe_call(token: str) -> Any:
    """The flow function: holds the flow run open while the core works."""
    return _open_flows[token]._body()


class _FlowRun:
    """One flow run, open for the duration of one probpipe call.

    The flow body captures its context (which holds the flow run and its task
    runner) and waits; ``submit`` maps tasks inside that context from the
    calling thread. On exit the body returns, so Prefect finishes the run
    (Completed, or Failed with the call's error).
    """

    def __init__(self, backend: _PrefectBackend, call: Any):
        self.backend = backend
        self.label = call.func
        self.call = call
        self._context: contextvars.Context | None = None
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._failure: str | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _FlowRun:
        self._thread = threading.Thread(
            target=self._run_flow, name=f"probpipe-flow-{self.label}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._context is None:
            raise RuntimeError(
                f"Prefect could not start a flow run for {self.label}()"
            ) from self._error
        self.backend._local.flow = self
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.backend._local.flow = None
        if exc is not None:
            self._failure = f"{type(exc).__name__}: {exc}"
        self._finished.set()
        self._thread.join()

    def _run_flow(self) -> None:
        from prefect import flow

        token = f"{id(self):x}"
        _open_flows[token] = self
        try:
            with prefect_engine.settings_for_flows(self.backend._api_url):
                run = flow(
                    _probpipe_call,
                    name=self.label,
                    flow_run_name=self.label,
                    task_runner=self.backend._task_runner(),
                    persist_result=False,
                    validate_parameters=False,
                    log_prints=False,
                )
                run(token, return_state=True)
        except BaseException as exc:
            self._error = exc
        finally:
            _open_flows.pop(token, None)
            self._ready.set()

    def _body(self) -> Any:
        self._context = contextvars.copy_context()
        self._ready.set()
        self._finished.wait()
        if self._failure is not None:
            from prefect.states import Failed

            return Failed(message=f"probpipe call failed: {self._failure}")
        return None

    def submit(self, fn: Any, items: list[Any]) -> list[Any]:
        from prefect import task
        from prefect.cache_policies import NO_CACHE

        chunk_task = task(
            fn,
            name=self.label,
            # name each task run by the rows it carries
            task_run_name=self.label + "[{item.label}]",
            cache_policy=NO_CACHE,
            persist_result=False,
            retries=0,
        )
        return list(self._context.run(self.backend._map_in_flow, chunk_task, items, self.call))


class _PrefectBackend(ExecutionBackend):
    """What the three Prefect adapters share: the API, the flow run per call."""

    provenance_tag = "task"
    install_hint = "pip install 'probpipe[prefect]'"
    requires = ("prefect",)

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._api_url: str | None = None
        self._local = threading.local()

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self):
        # Quiet before any engine (and with it prefect) is imported.
        prefect_engine.quiet_this_process()
        # The engine first: a wrong address fails fast, before the API starts.
        self._start_engine()
        try:
            self._api_url = prefect_engine.acquire_api()
        except BaseException:
            self._stop_engine()
            raise
        return self

    def __exit__(self, *exc_info):
        try:
            self._stop_engine()
        finally:
            prefect_engine.release_api()
            self._api_url = None

    def _start_engine(self) -> None:
        """Start or attach to the engine (subclasses)."""

    def _stop_engine(self) -> None:
        """Stop what ``_start_engine`` started (subclasses)."""

    def _task_runner(self) -> Any:
        raise NotImplementedError

    # -- per call ------------------------------------------------------------
    def call_scope(self, call):
        return _FlowRun(self, call)

    def _map_in_flow(self, chunk_task: Any, items: list[Any], call: Any) -> Any:
        return chunk_task.map(item=items)

    def map(self, fn, items):
        flow = getattr(self._local, "flow", None)
        if flow is None:
            raise RuntimeError(f"backend {self.name!r}: map() called outside a call_scope()")
        return flow.submit(fn, items)

    def gather(self, handles):
        return [handle.result() for handle in handles]

    def as_completed(self, handles):
        from prefect.futures import as_completed

        return as_completed(handles)

    def cancel(self, handles):
        for handle in handles:
            cancel = getattr(getattr(handle, "wrapped_future", None), "cancel", None)
            if cancel is not None:
                cancel()

    def describe(self):
        return {
            **self.options,
            "prefect_api": "external"
            if not prefect_engine.owns_server()
            else "started by probpipe",
        }


class PrefectBackend(_PrefectBackend):
    """Prefect ``task.map`` in a flow, on Prefect's thread pool in this process."""

    name = "prefect"
    description = (
        "Prefect flow per call, a task run per chunk, in this process "
        "(one at a time by default; max_workers=N for Prefect's thread pool)."
    )
    option_defaults = {"max_workers": 1}
    ships_to_processes = False
    task_overhead = 0.005

    def validate_options(self):
        check_positive_int("max_workers", self.options["max_workers"])

    def _task_runner(self):
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=self.options["max_workers"])

    def parallelism(self):
        return self.options["max_workers"]


class PrefectDaskBackend(_PrefectBackend):
    """Prefect ``DaskTaskRunner`` on one Dask cluster kept for the backend's lifetime."""

    name = "prefect-dask"
    description = (
        "Prefect flow per call on a DaskTaskRunner; address=None starts a local "
        "cluster of worker processes once, address='tcp://...' attaches to a scheduler."
    )
    install_hint = "pip install 'probpipe[dask]'"
    requires = ("prefect", "prefect_dask", "distributed")
    option_defaults = {"address": None, "n_workers": 2, "threads_per_worker": 1}
    task_overhead = 0.06

    def validate_options(self):
        dask_engine.check_address(self.options["address"])
        check_positive_int("n_workers", self.options["n_workers"])
        check_positive_int("threads_per_worker", self.options["threads_per_worker"])

    def _start_engine(self):
        self._cluster = dask_engine.DaskCluster(
            self.options["address"],
            self.options["n_workers"],
            self.options["threads_per_worker"],
            client_class=_prefect_dask_client_class(),
        ).start()

    def _stop_engine(self):
        cluster, self._cluster = getattr(self, "_cluster", None), None
        if cluster is not None:
            cluster.close()

    def _task_runner(self):
        return _shared_client_runner_class()(self._cluster.client)

    def _map_in_flow(self, chunk_task, items, call):
        from prefect import unmapped

        # Shared values go in as Dask futures among the task's arguments, so
        # Dask moves each to a worker once and hands it to the task.
        delivered = dask_engine.dependencies(items[0].refs) if items else {}
        return chunk_task.map(item=items, delivered=unmapped(delivered))

    def share(self, value, key):
        return dask_engine.scatter(self._cluster.client, value, key)

    def parallelism(self):
        return self._cluster.parallelism()

    def is_worker_lost(self, exc):
        return dask_engine.is_worker_lost(exc)

    def describe(self):
        return {
            **super().describe(),
            "scheduler": self._cluster.scheduler_address()
            if getattr(self, "_cluster", None)
            else None,
        }


class PrefectRayBackend(_PrefectBackend):
    """Prefect ``RayTaskRunner`` on one Ray connection kept for the backend's lifetime."""

    name = "prefect-ray"
    description = (
        "Prefect flow per call on a RayTaskRunner; address=None starts a local Ray "
        "once, 'auto' attaches to a running one (or fails), 'ray://...' uses Ray Client."
    )
    install_hint = "pip install 'probpipe[ray]'"
    requires = ("prefect", "prefect_ray", "ray")
    option_defaults = {"address": None, "init_options": None, "remote_options": None}
    task_overhead = 0.06
    supports_timeout = True  # Ray runs tasks on its workers' main threads

    def validate_options(self):
        ray_engine.check_address(self.options["address"])
        for key in ("init_options", "remote_options"):
            value = self.options[key]
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"backend 'prefect-ray': {key} must be a dict, got {value!r}")
        remote = self.options["remote_options"] or {}
        ray_engine.check_resource_hints(
            {k: v for k, v in remote.items() if k in ray_engine.HINT_KEYS},
            "backend 'prefect-ray' remote_options",
        )

    def call_scope(self, call):
        # Refuse resource hints no node can meet before the flow run opens:
        # Ray would accept such a task and wait for a node forever.
        remote = self.options["remote_options"] or {}
        own = ray_engine.check_resource_hints(
            call.options.get("resources") or {}, f"resources of {call.func}()"
        )
        hints = ray_engine.merge_resource_hints(
            {k: v for k, v in remote.items() if k in ray_engine.HINT_KEYS}, own
        )
        ray_engine.check_feasible(hints, f"{call.func}()", self.name)
        self._local.remote_options = {"max_retries": 0, **remote, **hints}
        return super().call_scope(call)

    def _start_engine(self):
        ray_engine.acquire(self.options["address"], self.options["init_options"])

    def _stop_engine(self):
        ray_engine.release()

    def _task_runner(self):
        from prefect_ray import RayTaskRunner

        # Ray is already initialized, so the runner reuses the connection and
        # never shuts it down.
        return RayTaskRunner(address=self.options["address"])

    def _map_in_flow(self, chunk_task, items, call):
        from prefect_ray.context import remote_options

        # max_retries=0 (set in call_scope): the core decides about retries;
        # Ray must not re-run a crashed task.
        with remote_options(**self._local.remote_options):
            return chunk_task.map(item=items)

    def share(self, value, key):
        return ray_engine.put(value, key)

    def parallelism(self):
        return ray_engine.parallelism()

    def cancel(self, handles):
        import ray

        for handle in handles:
            try:
                ray.cancel(handle.wrapped_future)
            except Exception:
                pass

    def is_worker_lost(self, exc):
        return ray_engine.is_worker_lost(exc)

    def describe(self):
        # The cluster actually used (which head "auto" found), as `ray` records it.
        return {**super().describe(), **ray_engine.connection_details()}


def _prefect_dask_client_class() -> type:
    from prefect_dask.client import PrefectDaskClient

    class UniqueKeyPrefectDaskClient(PrefectDaskClient):
        """Never deduplicate submissions: each chunk is new work (``pure=False``)."""

        def submit(self, func, *args, **kwargs):
            kwargs["pure"] = False
            return super().submit(func, *args, **kwargs)

    return UniqueKeyPrefectDaskClient


def _shared_client_runner_class() -> type:
    from prefect_dask import DaskTaskRunner

    class SharedClientDaskTaskRunner(DaskTaskRunner):
        """A DaskTaskRunner on probpipe's client: no cluster or client per flow run."""

        def __init__(self, client: Any, address: str | None = None):
            super().__init__(address=address or client.scheduler.address)
            self._client = client

        def duplicate(self):
            # In a worker (the client stayed behind) this is a plain runner
            # on the same scheduler, which Prefect creates but never uses.
            return type(self)(self._client, self.address)

        def __getstate__(self):
            # Prefect pickles the flow, runner included, into each task's
            # context; the client stays here.
            return {**self.__dict__, "_client": None}

    return SharedClientDaskTaskRunner
