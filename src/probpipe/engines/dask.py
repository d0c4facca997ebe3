"""Dask clusters for probpipe backends: start a local one once, or attach to one.

A local cluster uses worker *processes* (the work is Python-level NumPy, which
threads would serialize on the GIL), binds 127.0.0.1 including its dashboard
port, and lets a worker death fail the task at once (``allowed-failures: 0``)
so the core's own retry and isolation logic decides what happens next.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import signal
import sys
from typing import Any

from .._errors import BackendConnectionError
from .._worker import SharedRef
from ._address import check_dask_scheduler
from ._logs import engine_log_level, quiet_logger, quiet_this_process, worker_env

logger = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx)://[^\s/]+(:\d+)?$")


def check_address(address: Any) -> None:
    if address is None:
        return
    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise ValueError(
            "Dask address must be None (start a local cluster) or a scheduler address "
            f"like 'tcp://127.0.0.1:8786', got {address!r}"
        )


class DaskCluster:
    """A Dask client plus, if probpipe started it, the LocalCluster behind it."""

    def __init__(
        self,
        address: str | None,
        n_workers: int,
        threads_per_worker: int,
        extra_env: dict[str, str] | None = None,
        client_class: Any = None,
    ):
        """``client_class``: a zero-argument function returning the Client class to use
        (called after the address check, so a wrong address fails before imports)."""
        check_address(address)
        self.client_class = client_class
        self.address = address
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.extra_env = extra_env or {}
        self.cluster: Any = None
        self.client: Any = None
        self._preimports: list[Any] = []

    def start(self) -> DaskCluster:
        if self.address is not None:
            # First, before importing distributed (seconds): this fails in about a
            # second, naming what answers there, where distributed.Client blocked
            # for 300 s on an HTTP port despite its timeout.
            check_dask_scheduler(self.address)
        quiet_this_process()
        import dask
        import distributed

        level = engine_log_level()
        if self.address is None:
            forget_main_file_that_names_no_file()
            config = {
                "distributed.scheduler.allowed-failures": 0,
                # The statistical profiler samples every thread's stack each
                # 10 ms while holding the GIL: 10-15 % off GIL-bound rows
                # (the W2 MCMC) measured here. Workers inherit this config.
                "distributed.worker.profile.enabled": False,
            }
            try:
                with dask.config.set(config):
                    self.cluster = distributed.LocalCluster(
                        n_workers=self.n_workers,
                        threads_per_worker=self.threads_per_worker,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address="127.0.0.1:0",
                        silence_logs=level,
                        env={**worker_env(), **self.extra_env},
                    )
            except RuntimeError as exc:
                if "failed to start" not in str(exc):
                    raise
                # Most often: a script without the main guard, whose every
                # worker ran the script again and tried to start Dask itself.
                raise BackendConnectionError(
                    "Dask's local worker processes did not start. Dask starts "
                    "them with multiprocessing's 'spawn', which imports your main script "
                    "again in each worker: code that starts work (use_backend, probpipe "
                    'calls) must sit under `if __name__ == "__main__":`. The workers\' own '
                    "errors are printed above."
                ) from exc
            target = self.cluster
        else:
            target = self.address
        try:
            client_class = self.client_class() if self.client_class else distributed.Client
            self.client = client_class(target, set_as_default=False, timeout="10s")
        except (OSError, TimeoutError) as exc:
            self.close()
            raise BackendConnectionError(
                f"could not connect to the Dask scheduler at {self.address!r}: {exc}. "
                "Is `dask scheduler` running there?"
            ) from exc
        return self

    @property
    def owned(self) -> bool:
        return self.cluster is not None

    def parallelism(self) -> int:
        info = self.client.scheduler_info(n_workers=-1) if self.client else {}
        threads = sum(w.get("nthreads", 1) for w in info.get("workers", {}).values())
        return max(1, threads)

    def preimport(self, modules: tuple[str, ...]) -> None:
        """Have every worker import ``modules`` now; nothing waits for it (see
        :func:`probpipe.engines.ray.preimport`)."""
        from .._worker import import_modules

        # Held until close: Dask forgets a task whose futures are all dropped.
        self._preimports = [
            self.client.submit(import_modules, modules, workers=[worker], pure=False)
            for worker in self.client.scheduler_info(n_workers=-1).get("workers", {})
        ]

    def run_on_workers(self, function: Any) -> None:
        """Run ``function()`` on every worker and wait; a failure is only logged."""
        try:
            self.client.run(function)
        except Exception as exc:
            logger.debug("running %r on the Dask workers failed: %s", function, exc)

    def scheduler_address(self) -> str | None:
        return self.client.scheduler.address if self.client else None

    def close(self, kill_workers: bool = False) -> None:
        """Close the client; close the cluster only if probpipe started it.

        ``kill_workers`` (after Ctrl-C): end our workers' processes at once.
        A closing worker would get 4 s to finish its row before being killed,
        and a row still running then is wanted by nobody.
        """
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        self._preimports = []
        if cluster is not None and kill_workers:
            for nanny in list(cluster.workers.values()):
                worker_process = getattr(getattr(nanny, "process", None), "process", None)
                pid = getattr(worker_process, "pid", None)
                if pid:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        if client is not None:
            client.close()
        if cluster is not None:
            # Its workers' shutdown notices are ours, not the user's.
            with quiet_logger("distributed", logging.ERROR):
                cluster.close()


def forget_main_file_that_names_no_file() -> None:
    """Drop ``__main__.__file__`` when it names no file (``'<stdin>'``).

    Dask starts its worker processes with multiprocessing's "spawn", which
    re-runs the parent's main script in every worker when ``__main__`` has a
    ``__file__``. A script piped on stdin (``python - <<EOF``) has
    ``__file__ == '<stdin>'``, so every worker died with FileNotFoundError.
    Without ``__file__`` (as under ``python -c`` or in a notebook) workers
    skip that step; functions defined in ``__main__`` reach them by value
    (cloudpickle) anyway. Workers restarted later by the nanny need the same,
    so the attribute is removed for good, not just while starting.
    """
    from multiprocessing import process

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not isinstance(path, str) or getattr(main, "__spec__", None) is not None:
        return  # no file, or `python -m module`: workers import it by name
    # Relative to where Python started, as multiprocessing resolves it.
    if not os.path.isfile(os.path.join(process.ORIGINAL_DIR or "", path)):
        del main.__file__


class DaskRef(SharedRef):
    """A value scattered to the cluster, delivered by Dask as a task dependency.

    Pass ``{ref.key: ref.future}`` in the task's arguments (see
    :func:`dependencies`): Dask moves the value to each worker once and hands
    it to the task, which finds it by ``key``. Only the key is pickled: a
    Future would drag its client along, and a worker cannot fetch a key it
    was not given as a dependency.
    """

    def __init__(self, client: Any, value: Any, key: str):
        self.key = key
        self._client = client
        self._value = value  # kept here to scatter again if its worker dies
        self.future = self._scatter()

    def _scatter(self) -> Any:
        # hash=False: equal-looking values must never share a key; the core
        # already reuses handles by content fingerprint.
        [future] = self._client.scatter([self._value], hash=False, broadcast=False)
        return future

    def live_future(self) -> Any:
        """The future to depend on, scattered again if the worker holding it died."""
        if self.future.status != "finished":
            self.future = self._scatter()
        return self.future

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key, "future": None, "_client": None, "_value": None}

    def get(self) -> Any:
        raise RuntimeError(
            "a Dask-shared value reached a worker without being passed as a task "
            "dependency; the backend must pass engines.dask.dependencies(item)"
        )


def dependencies(refs: Any) -> dict[str, Any]:
    """``{key: future}`` for the Dask-shared values among ``refs`` (all alive)."""
    return {ref.key: ref.live_future() for ref in refs if isinstance(ref, DaskRef)}


def scatter(client: Any, value: Any, key: str) -> DaskRef:
    return DaskRef(client, value, key)


def is_worker_lost(exc: BaseException) -> bool:
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    return isinstance(exc, (KilledWorker, FutureCancelledError))


# -- Prefect on a Dask cluster probpipe holds --------------------------------------------


@functools.cache
def prefect_client_class() -> type:
    """``PrefectDaskClient`` that never deduplicates submissions (each chunk is new work)."""
    from prefect_dask.client import PrefectDaskClient

    class UniqueKeyPrefectDaskClient(PrefectDaskClient):
        def submit(self, func, *args, **kwargs):
            kwargs["pure"] = False
            return super().submit(func, *args, **kwargs)

    return UniqueKeyPrefectDaskClient


def prefect_runner_on(client: Any) -> Any:
    """A ``DaskTaskRunner`` on ``client``: no cluster or client per flow run."""
    from prefect_dask import DaskTaskRunner

    class SharedClientDaskTaskRunner(DaskTaskRunner):
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

    return SharedClientDaskTaskRunner(client)
