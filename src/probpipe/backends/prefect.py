"""Prefect adapters: ``prefect``, ``prefect-dask`` and ``prefect-ray``.

Each probpipe call is one Prefect flow run named after the function, and each
chunk of rows one task run in it (``task.map`` over the chunks), so calls show
up in the Prefect UI. The adapters only translate: ordering, chunking, seeds,
retries and the error policy stay in the core.

* ``run_call`` runs the core's loop as the body of the call's flow, on the
  calling thread: submitting is plain ``task.map`` inside a running flow.
* Each task run's Prefect future becomes a ``concurrent.futures.Future`` for
  the core (:func:`probpipe._futures.follow`); cancelling it stops the
  engine's task.
* One Prefect API per process (:mod:`probpipe.engines.prefect`); the engine
  (Ray, a Dask cluster) is started once when the backend opens and reused by
  every flow run.
* Tasks use no cache policy and persist nothing: inputs are never hashed, and
  large arguments travel as references (object store / scatter).
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from .._backend import ExecutionBackend
from .._futures import TaskFuture, follow
from .._options import check_positive_int
from ..engines import dask as dask_engine
from ..engines import prefect as prefect_engine
from ..engines import ray as ray_engine
from ..engines._logs import own_run, quiet_this_process

# What a worker needs to run a chunk as a Prefect task run; imported while the
# API starts (1-2 s per fresh worker otherwise spent in the first call).
_TASK_RUN_MODULES = ("prefect.task_engine", "probpipe._worker")


class _RunsHereOnly:
    """A flow function that runs only in this process, where the call is.

    Prefect pickles the flow (its function included) into every task run's
    context; this one pickles to an inert stand-in instead of dragging the
    whole call (and the backend) to each worker. Slots, not a ``__dict__``:
    Prefect copies the function's ``__dict__`` onto the flow object.
    """

    __slots__ = ("__name__", "__qualname__", "_run")

    def __init__(self, run: Any, name: str):
        self._run = run
        self.__name__ = self.__qualname__ = name

    def __call__(self) -> Any:
        if self._run is None:
            raise RuntimeError("a probpipe call's flow function runs only where the call is")
        return self._run()

    def __reduce__(self):
        return (_RunsHereOnly, (None, self.__name__))


class _PrefectBackend(ExecutionBackend):
    """What the three Prefect adapters share: the API, the flow run per call."""

    provenance_tag = "task"
    install_hint = "pip install 'probpipe[prefect]'"
    requires = ("prefect",)
    _api_url: str | None = None

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self):
        # Quiet before any engine (and with it prefect) is imported.
        quiet_this_process()
        # The API server's process boots while the engine starts (both take
        # seconds); a wrong engine address still fails fast and stops it.
        prefect_engine.launch_api()
        try:
            self._start_engine()
        except BaseException:
            prefect_engine.abandon_api()
            raise
        try:
            self._api_url = prefect_engine.acquire_api()
        except BaseException:
            self._stop_engine()
            raise
        return self

    def __exit__(self, exc_type=None, *exc_info):
        try:
            self._stop_engine(interrupted=exc_type is KeyboardInterrupt)
        finally:
            prefect_engine.release_api()

    def _start_engine(self) -> None:
        """Start or attach to the engine (subclasses)."""

    def _stop_engine(self, interrupted: bool = False) -> None:
        """Stop what ``_start_engine`` started (subclasses); ``interrupted``: after Ctrl-C."""

    def _task_runner(self) -> Any:
        raise NotImplementedError

    # -- per call ------------------------------------------------------------
    def run_call(self, call, body):
        """Run the core's loop as the body of the call's flow run, on this thread.

        Inside the user's own flow this is a subflow run of it. The flow run
        ends Completed (its message says how many rows failed, if any),
        Failed with the call's exception, or Cancelled on Ctrl-C, with the
        task runs that never finished Cancelled too.
        """
        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE

        hints = self._call_hints(call)
        name = call.func
        tasks: dict[Any, Any] = {}  # one Prefect task per function the core maps
        submitted: list[Any] = []  # Prefect futures, to cancel their task runs on Ctrl-C

        def submit(fn: Any, items: list[Any]) -> list[TaskFuture]:
            if fn not in tasks:
                tasks[fn] = task(
                    fn,
                    name=name,
                    task_run_name=name + "[{item.label}]",  # the rows each task run carries
                    cache_policy=NO_CACHE,
                    persist_result=False,
                    retries=0,  # the core decides about retries
                )
            futures = self._map(tasks[fn], items, hints)
            submitted.extend(futures)
            return [self._follow(future) for future in futures]

        def running_here() -> list[Any]:
            """Task runs a thread of this process is running (their server record may lag)."""
            return [
                f.task_run_id
                for f in submitted
                if isinstance(f.wrapped_future, concurrent.futures.Future)
                and f.wrapped_future.running()
            ]

        outcome: dict[str, Any] = {}
        flow_run_id = None

        def flow_body() -> Any:
            from prefect.artifacts import create_markdown_artifact
            from prefect.context import FlowRunContext
            from prefect.states import Cancelled, Completed

            nonlocal flow_run_id
            flow_run_id = FlowRunContext.get().flow_run.id
            try:
                summary = outcome["summary"] = body(submit, self._parallelism(hints))
            except KeyboardInterrupt:
                outcome["interrupted"] = True
                # Rows running on this process's threads are known; workers in
                # other processes may still be reporting "Running".
                prefect_engine.cancel_unfinished_task_runs(
                    flow_run_id,
                    running_here(),
                    settle_seconds=1.0 if self.ships_to_processes else 0.0,
                )
                return Cancelled(message=f"probpipe call of {name}() stopped by Ctrl-C")
            except BaseException as exc:
                outcome["error"] = exc
                prefect_engine.cancel_unfinished_task_runs(flow_run_id, running_here())
                raise
            create_markdown_artifact(markdown=summary.markdown(), description=summary.headline())
            return Completed(message=summary.headline())

        call_flow = flow(
            _RunsHereOnly(flow_body, name),
            name=name,
            flow_run_name=name,
            task_runner=self._task_runner(),
            persist_result=False,
            validate_parameters=False,
            log_prints=False,
        )
        with prefect_engine.settings_for_flows(self._api_url), own_run():
            state = call_flow(return_state=True)
        prefect_engine.flush_before_prefect_exits()
        if "error" in outcome:
            raise outcome["error"]
        if outcome.get("interrupted"):
            raise KeyboardInterrupt
        if "summary" not in outcome:  # Prefect failed before the flow's body ran
            state.result(raise_on_failure=True)
            raise RuntimeError(f"Prefect ended the flow run of {name}() as {state!r}")
        return outcome["summary"]

    def _call_hints(self, call: Any) -> Any:
        """Per-call engine settings, checked before the flow run opens (Ray)."""
        return None

    def _map(self, chunk_task: Any, items: list[Any], hints: Any) -> Any:
        return chunk_task.map(item=items)

    def _parallelism(self, hints: Any) -> int:
        return self.parallelism()

    def _follow(self, future: Any) -> TaskFuture:
        """The core's future for one task run; cancelling it stops the engine's task."""
        engine_future = future.wrapped_future
        return follow(
            future.add_done_callback, future.result, stop=lambda: self._stop_task(engine_future)
        )

    def _stop_task(self, engine_future: Any) -> None:
        engine_future.cancel()  # a concurrent or a Dask future

    def map(self, fn, items):
        raise RuntimeError(
            f"backend {self.name!r} submits work only inside a call's flow run (run_call)"
        )

    def gather(self, handles):
        return [handle.result() for handle in handles]

    def describe(self):
        return {
            **self.options,
            "prefect_api": "started by probpipe" if prefect_engine.owns_server() else "external",
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
        return prefect_engine.thread_pool_runner_class()(max_workers=self.options["max_workers"])

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
        self._cluster = None

    def _start_engine(self):
        self._cluster = dask_engine.DaskCluster(
            self.options["address"],
            self.options["n_workers"],
            self.options["threads_per_worker"],
            client_class=dask_engine.prefect_client_class,  # imported after the address check
        ).start()
        self._cluster.preimport(_TASK_RUN_MODULES)

    def _stop_engine(self, interrupted=False):
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            if not interrupted:
                # The workers' last task-run events go to the API now, while it
                # is up; a closing worker would send them at its exit, printing
                # Prefect's "Still processing items" in the user's terminal.
                cluster.run_on_workers(prefect_engine.drain_events)
            cluster.close(kill_workers=interrupted)

    def _task_runner(self):
        return dask_engine.prefect_runner_on(self._cluster.client)

    def _map(self, chunk_task, items, hints):
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
        scheduler = self._cluster.scheduler_address() if self._cluster else None
        return {**super().describe(), "scheduler": scheduler}


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
        self._hints = ray_engine.check_resource_hints(
            {k: v for k, v in remote.items() if k in ray_engine.HINT_KEYS},
            "backend 'prefect-ray' remote_options",
        )

    def _start_engine(self):
        ray_engine.acquire(self.options["address"], self.options["init_options"])
        ray_engine.preimport(_TASK_RUN_MODULES)

    def _stop_engine(self, interrupted=False):
        ray_engine.release()

    def _task_runner(self):
        from prefect_ray import RayTaskRunner

        # Ray is already initialized, so the runner reuses the connection and
        # never shuts it down.
        return RayTaskRunner(address=self.options["address"])

    def _call_hints(self, call):
        return ray_engine.call_hints(self._hints, call)

    def _map(self, chunk_task, items, hints):
        from prefect_ray.context import remote_options

        # max_retries=0: the core decides about retries; Ray must not re-run
        # a crashed task.
        options = {"max_retries": 0, **(self.options["remote_options"] or {}), **hints}
        with remote_options(**options):
            return chunk_task.map(item=items)

    def _parallelism(self, hints):
        return ray_engine.parallelism(hints)

    def parallelism(self):
        return ray_engine.parallelism(self._hints)

    def _stop_task(self, engine_future):
        ray_engine.stop(engine_future)

    def share(self, value, key):
        return ray_engine.put(value, key)

    def is_worker_lost(self, exc):
        return ray_engine.is_worker_lost(exc)

    def describe(self):
        # The cluster actually used (which head "auto" found), as `ray` records it.
        return {**super().describe(), **ray_engine.connection_details()}
