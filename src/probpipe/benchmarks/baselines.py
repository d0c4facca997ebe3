"""Raw-engine baselines: the same rows, written the way an expert uses each engine.

Each baseline is a context manager (enter starts the engine, exit stops it)
with one method, ``map(fn, items, const)``, returning
``[fn(item, **const) for item in items]`` computed on the engine. Engines are
imported on enter, so the W4 first call includes the import, as it does for
probpipe (which imports engines lazily too).

Large constants (W3's array) travel the way each engine recommends, once per
call: ``ray.put`` then refs for Ray, ``client.scatter`` for Dask. The process
pool and Prefect have no such mechanism: the pool pickles the constant with
every task, Prefect passes it as an ``unmapped`` task parameter.

The Prefect baselines use Prefect's own task runners, on an engine started
once per process (a LocalCluster the DaskTaskRunner attaches to, a Ray the
RayTaskRunner reuses): otherwise every flow run would start a new cluster,
which measures cluster start-up, not Prefect. Each call is one flow run with
``task.map`` inside and ``cache_policy=NO_CACHE``, against Prefect's default
temporary API (no ``PREFECT_API_URL``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

# Constants at least this big are shipped once per call by engines that can.
LARGE_BYTES = 1 << 20


def _is_large(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.nbytes >= LARGE_BYTES


class Baseline:
    """A raw engine; ``map`` runs ``fn(item, **const)`` for every item."""

    name = ""
    description = ""
    requires: tuple[str, ...] = ()  # modules the engine needs

    def __enter__(self) -> Baseline:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        pass

    def map(self, fn: Callable[..., Any], items: list[Any], const: dict[str, Any]) -> list[Any]:
        raise NotImplementedError


class PlainLoop(Baseline):
    name = "raw-loop"
    description = "a plain Python loop in the driver"

    def map(self, fn, items, const):
        return [fn(item, **const) for item in items]


class ProcessPool(Baseline):
    name = "raw-pool"
    description = "ProcessPoolExecutor(2).map (fork, chunksize 1)"

    def __enter__(self):
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(2)
        return self

    def __exit__(self, *exc_info):
        self.pool.shutdown(wait=True, cancel_futures=True)

    def map(self, fn, items, const):
        # partial is pickled with every task: the pool has no shared store.
        return list(self.pool.map(functools.partial(fn, **const) if const else fn, items))


def _start_ray() -> Any:
    import ray

    # address="local": always a private Ray, never a cluster someone left
    # running. No dashboard, as probpipe's Ray backends (fair start-up times).
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the environment keeps it on loopback.
    ray.init(address="local", include_dashboard=False)
    return ray


def _start_dask() -> Any:
    from distributed import LocalCluster

    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)


class RayBaseline(Baseline):
    name = "raw-ray"
    description = "ray.get([f.remote(...)]); large constants ray.put once per call"
    requires = ("ray",)

    def __enter__(self):
        self.ray = _start_ray()
        self.remote: dict[Callable[..., Any], Any] = {}
        return self

    def __exit__(self, *exc_info):
        self.ray.shutdown()

    def map(self, fn, items, const):
        if fn not in self.remote:
            self.remote[fn] = self.ray.remote(fn)
        # The ray.put-once pattern: one copy in the object store, a ref per task.
        args = {k: self.ray.put(v) if _is_large(v) else v for k, v in const.items()}
        return self.ray.get([self.remote[fn].remote(item, **args) for item in items])


class DaskBaseline(Baseline):
    name = "raw-dask"
    description = (
        "client.gather(client.map(..., pure=False)) on LocalCluster(2 workers x 1 thread); "
        "large constants scattered once per call"
    )
    requires = ("distributed",)

    def __enter__(self):
        from distributed import Client

        self.cluster = _start_dask()
        self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc_info):
        self.client.close()
        self.cluster.close()

    def map(self, fn, items, const):
        args = {k: self.client.scatter(v) if _is_large(v) else v for k, v in const.items()}
        return self.client.gather(self.client.map(fn, items, pure=False, **args))


# What the current Prefect flow run should map. The flow function is
# module-level and reads its job from here: Prefect pickles the flow into
# every task's context, and a closure would drag the job's data along.
_job: dict[str, Any] = {}


def _flow_body() -> list[Any]:
    from prefect import task, unmapped
    from prefect.cache_policies import NO_CACHE

    fn, items, const = _job["fn"], _job["items"], _job["const"]
    row_task = task(fn, cache_policy=NO_CACHE, persist_result=False)
    futures = row_task.map(items, **{k: unmapped(v) for k, v in const.items()})
    return futures.result()


class PrefectThreads(Baseline):
    name = "raw-prefect"
    description = "Prefect task.map in a flow, ThreadPoolTaskRunner (default)"
    requires = ("prefect",)
    stop_engine: Callable[[], Any] | None = None  # the engine the task runner attaches to

    def task_runner(self) -> Any:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner()

    def __enter__(self):
        from prefect import flow

        self.flow = flow(
            _flow_body,
            name=f"bench-{self.name}",
            task_runner=self.task_runner(),
            persist_result=False,
            log_prints=False,
        )
        return self

    def __exit__(self, *exc_info):
        if self.stop_engine is not None:
            self.stop_engine()

    def map(self, fn, items, const):
        _job.update(fn=fn, items=items, const=const)
        try:
            return self.flow()
        finally:
            _job.clear()


class PrefectDask(PrefectThreads):
    name = "raw-prefect-dask"
    description = "Prefect task.map in a flow, DaskTaskRunner on a LocalCluster started once"
    requires = ("prefect", "prefect_dask", "distributed")

    def task_runner(self):
        from prefect_dask import DaskTaskRunner

        cluster = _start_dask()  # once: a DaskTaskRunner of its own would start one per flow run
        self.stop_engine = cluster.close
        return DaskTaskRunner(address=cluster.scheduler_address)


class PrefectRay(PrefectThreads):
    name = "raw-prefect-ray"
    description = "Prefect task.map in a flow, RayTaskRunner on a Ray started once"
    requires = ("prefect", "prefect_ray", "ray")

    def task_runner(self):
        from prefect_ray import RayTaskRunner

        self.stop_engine = _start_ray().shutdown  # RayTaskRunner reuses an initialized Ray
        return RayTaskRunner()


BASELINES: dict[str, type[Baseline]] = {
    cls.name: cls
    for cls in (
        PlainLoop,
        ProcessPool,
        RayBaseline,
        DaskBaseline,
        PrefectThreads,
        PrefectDask,
        PrefectRay,
    )
}
