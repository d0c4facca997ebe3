"""One Prefect API per process, shared with the user's own flows.

Where a call's flow runs report to, in order:

1. Inside the user's running flow: the API that flow uses (the call is a
   subflow of it).
2. ``PREFECT_API_URL`` from the environment or the active Prefect profile
   (your ``prefect server start``): used, never stopped. It is read in the
   calling thread when the backend opens, so a profile switch applies.
3. Otherwise Prefect's temporary server. probpipe starts it as the very
   instance Prefect keeps for this process (:class:`SubprocessASGIServer` is
   a per-port singleton), so the user's own flows in this process use the
   same server instead of starting a second one on the same SQLite file.
   Out-of-process workers (Dask, Ray) get its URL with each task's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from .._errors import BackendConnectionError
from ._logs import quiet_logger, without_info

_lock = threading.Lock()
_users = 0
_url: str | None = None
_server: Any = None  # the temporary server, if probpipe started it
_launched: tuple[int, subprocess.Popen] | None = None  # (port, process) not yet taken over


def _server_process(port: int) -> subprocess.Popen:
    """The temporary server's process, with probpipe's app (see ``_prefect_app``).

    Its own process session (Ctrl-C in a terminal reaches only the caller,
    which stops it in order), its log in ``$PREFECT_HOME``, and it exits by
    itself if its parent disappears.
    """
    import prefect
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    home = settings.home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "probpipe-prefect-server.log", "ab") as log:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--app-dir"),
                str(prefect.__module_path__.parent),
                *("--factory", "probpipe.engines._prefect_app:create_app"),
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--log-level", "error", "--lifespan", "on"),
            ],
            env={
                **os.environ,
                **settings.to_environment_variables(exclude_unset=True),
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
                "PROBPIPE_PARENT_PID": str(os.getpid()),
            },
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@functools.cache
def _server_class() -> type:
    from prefect.server.api.server import SubprocessASGIServer

    class ProbpipeServer(SubprocessASGIServer):
        """Prefect's temporary server run as :func:`_server_process`, which
        ``launch_api`` may have started already."""

        def _run_uvicorn_command(self) -> subprocess.Popen:
            # Prefect's start calls this (again on a new port if the first
            # process found its port taken).
            global _launched
            if _launched is not None and _launched[0] == self.port:
                (_, process), _launched = _launched, None
                return process
            return _server_process(self.port)

    return ProbpipeServer


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` from the environment or the active profile, if any."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return url.rstrip("/") if url else None


def in_user_flow() -> bool:
    """Whether this thread is inside a running Prefect flow (the user's own)."""
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def launch_api() -> None:
    """Start the temporary server's process now if ``acquire_api`` will need it.

    It boots (5-7 s of imports and database checks here) while the engine
    starts, and ``acquire_api`` then only waits for it. Cheap (no import of
    Prefect's server module), so a wrong engine address still fails fast.
    Call ``acquire_api`` or ``abandon_api`` next.
    """
    global _launched
    with _lock:
        if _url is not None or _launched is not None or configured_api_url():
            return
        server_module = sys.modules.get("prefect.server.api.server")
        if server_module and server_module.SubprocessASGIServer._instances.get(None):
            return  # Prefect's own temporary server for this process exists: use it
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        _launched = (port, _server_process(port))


def abandon_api() -> None:
    """Stop what ``launch_api`` started when the backend will not open after all."""
    with _lock:
        _stop_launched()


def _stop_launched() -> None:
    """Kill a launched server process nothing took over (the caller holds ``_lock``)."""
    global _launched
    launched, _launched = _launched, None
    if launched is not None:
        launched[1].kill()
        launched[1].wait()


def acquire_api(timeout: float = 60.0) -> str:
    """The API URL probpipe's flows use, starting the temporary server on first use."""
    global _users, _url, _server
    with _lock:
        if _url is None:
            configured = configured_api_url()
            if configured:
                _check_answers(configured)
                _url = configured
            else:
                server = _server_class()()  # Prefect's own instance, if it already runs
                if not server.running and _launched is not None and server.port is None:
                    server.port = _launched[0]  # its start takes over the launched process
                if not server.running:
                    try:
                        with without_info("prefect"):  # "Starting temporary server"
                            server.start(timeout=int(timeout))
                    except Exception as exc:
                        raise BackendConnectionError(
                            f"the temporary Prefect API server did not start: {exc}. Set "
                            "PREFECT_API_URL to a running `prefect server start` instead."
                        ) from exc
                    _server = server
                _url = server.api_url
        _stop_launched()  # launched, but Prefect's own server was used
        _users += 1
        return _url


def _check_answers(url: str) -> None:
    """Fail in seconds, naming the setting, if the configured API does not answer."""
    import httpx

    try:
        response = httpx.get(f"{url}/health", timeout=5)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise BackendConnectionError(
            f"the Prefect API at PREFECT_API_URL={url!r} (from the environment or the active "
            f"Prefect profile) does not answer: {type(exc).__name__}: {exc}. Start it with "
            "`prefect server start`, or unset PREFECT_API_URL to let probpipe start a "
            "temporary one."
        ) from None


def release_api() -> None:
    """Drop one user; the last one flushes Prefect's senders and stops our server."""
    global _users, _url, _server
    with _lock:
        _users = max(0, _users - 1)
        if _users or _url is None:
            return
        server, _server, _url = _server, None, None
    drain_events()
    if server is not None:
        with without_info("prefect"):  # "Stopping temporary server"
            server.stop()


def api_url() -> str | None:
    """The URL of the API in use, or None when no Prefect backend is open."""
    return _url


def owns_server() -> bool:
    return _server is not None


def server_pid() -> int | None:
    process = getattr(_server, "server_process", None)
    return process.pid if process is not None else None


def drain_events(timeout: float = 5.0) -> None:
    """Send what Prefect's background event and log senders still hold.

    ``drain_all`` only returns an un-awaited coroutine when the calling thread
    runs an event loop (a Jupyter cell does), so there it runs on a helper
    thread, which has none.
    """

    def drain() -> None:
        for module, name in (
            ("prefect.events.worker", "EventsWorker"),
            ("prefect.logging.handlers", "APILogWorker"),
        ):
            # While it sends, the sender logs "Still processing items" under
            # its class name: progress of our own flush, not a problem.
            with contextlib.suppress(Exception), quiet_logger(name, logging.ERROR):
                worker_cls = getattr(__import__(module, fromlist=[name]), name)
                worker_cls.drain_all(timeout=timeout)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        drain()
        return
    helper = threading.Thread(target=drain, name="probpipe-prefect-drain", daemon=True)
    helper.start()
    helper.join()


_flush_registered_for: tuple[int, ...] = ()


def flush_before_prefect_exits() -> None:
    """Send this process's pending events at exit before Prefect's own sender
    stops (it would print "Still processing items" while it sends them).

    Prefect's sender stops in a ``threading`` exit hook, which runs before any
    ``atexit`` handler, in last-registered-first order; the hook is registered
    when a sender starts, so ours is registered (once) after each new sender.
    """
    global _flush_registered_for
    from prefect.events.worker import EventsWorker

    senders = tuple(id(sender) for sender in EventsWorker._instances.values())
    if senders and senders != _flush_registered_for:
        _flush_registered_for = senders
        threading._register_atexit(drain_events)


_flow_settings: tuple[Any, Any, Any] = (None, None, None)  # (base, updates, result)


def settings_for_flows(url: str | None) -> Any:
    """A settings context for probpipe's flow runs: our API, no heartbeat thread.

    Inside the user's flow the API is the flow's own (``url`` is not applied
    when the flow's settings name one). Flow-run heartbeats exist to detect
    crashed deployments; for an in-process flow they only cost time (the
    sync engine joins the heartbeat thread at exit, up to 1 s per flow run).
    What ``temporary_settings`` does, with the derived settings kept while
    the base settings stay the same object (building them: 30 ms per call).
    """
    global _flow_settings
    from prefect.context import SettingsContext, get_settings_context
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_CLIENT_MAX_RETRIES,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    )

    updates: dict[Any, Any] = {
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        # Our server asks for 0.1 s between retries while SQLite is busy
        # (see _prefect_app); allow enough of them to ride out a burst.
        PREFECT_CLIENT_MAX_RETRIES: 40,
    }
    if url and not (in_user_flow() and configured_api_url()):
        updates[PREFECT_API_URL] = url
    context = get_settings_context()
    base, made_for, settings = _flow_settings
    if base is not context.settings or made_for != updates:
        settings = context.settings.copy_with_update(updates=updates)
        _flow_settings = (context.settings, updates, settings)
    return SettingsContext(profile=context.profile, settings=settings)


def cancel_unfinished_task_runs(
    flow_run_id: Any, started: Iterable[Any] = (), settle_seconds: float = 0.0
) -> None:
    """Record the flow run's unfinished task runs as Cancelled (after Ctrl-C or fail fast).

    Their engine tasks were stopped or dropped. The server records task runs
    from the events their workers send, a little after it receives them, so
    this process's pending events are sent first and the list is read again
    until every task run in ``started`` (ids known to be running) has been
    on it, for up to 3 s. Workers in other processes may still be sending their
    "Running": ``settle_seconds`` keeps reading for that long in any case.
    The recorder never replaces a state by an older one, so a late "Running"
    does not undo a cancel.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import TaskRunSort
    from prefect.states import Cancelled

    if flow_run_id is None:
        return
    drain_events(timeout=2.0)
    waiting_for = set(started)
    unfinished = [StateType.PENDING, StateType.SCHEDULED, StateType.RUNNING]
    settled_at = time.monotonic() + settle_seconds
    give_up_at = time.monotonic() + max(3.0, settle_seconds)
    with contextlib.suppress(Exception), get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                task_run_filter=TaskRunFilter(
                    state=TaskRunFilterState(type=TaskRunFilterStateType(any_=unfinished))
                ),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                limit=200,  # at most two chunks per worker are ever in flight
            )
            for run in runs:
                message = "stopped by probpipe (Ctrl-C or fail fast)"
                client.set_task_run_state(run.id, Cancelled(message=message), force=True)
            waiting_for -= {run.id for run in runs}
            now = time.monotonic()
            if (not waiting_for and now >= settled_at) or now >= give_up_at:
                return
            time.sleep(0.2)


@functools.cache
def thread_pool_runner_class() -> type:
    """Prefect's ``ThreadPoolTaskRunner`` on daemon threads that nothing waits for.

    Prefect's runner shuts its pool down with ``wait=True`` and the
    interpreter joins pool threads at exit, so Ctrl-C during a 60 s row
    would wait for it. A row on a thread cannot be stopped; this runner
    lets it finish in the background instead of holding the caller.
    """
    import concurrent.futures.thread as cft
    import weakref

    from prefect.task_runners import ThreadPoolTaskRunner

    class DaemonThreadPool(cft.ThreadPoolExecutor):
        def _adjust_thread_count(self) -> None:  # CPython's, with daemon threads
            if self._idle_semaphore.acquire(timeout=0):
                return

            def wake(_, queue=self._work_queue):
                queue.put(None)

            if len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    name=f"probpipe-prefect-{len(self._threads)}",
                    target=cft._worker,
                    args=(weakref.ref(self, wake), self._work_queue, self._initializer, ()),
                    daemon=True,
                )
                thread.start()
                self._threads.add(thread)

    class DaemonThreadPoolTaskRunner(ThreadPoolTaskRunner):
        def __enter__(self):
            super().__enter__()
            self._executor.shutdown(wait=False)
            self._executor = DaemonThreadPool(
                max_workers=self._max_workers, initializer=self._register_worker_thread
            )
            return self

        def cancel_all(self) -> None:
            for event in self._cancel_events.values():
                event.set()
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

        def __exit__(self, *exc_info: Any) -> None:
            self.cancel_all()
            super().__exit__(*exc_info)

    return DaemonThreadPoolTaskRunner
