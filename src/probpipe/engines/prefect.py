"""One Prefect API per process, shared by every Prefect backend.

Without a reachable API, Prefect starts a temporary server in *each* process
that runs a flow or a task, and out-of-process workers (Dask, Ray) would each
start their own (~3 s each, all writing one sqlite file). Instead probpipe
runs one server on 127.0.0.1 for as long as a Prefect backend is open, runs
flows with ``PREFECT_API_URL`` pointing at it, and Prefect hands that setting
to every task it ships to a worker.

If ``PREFECT_API_URL`` is already set, in the environment or the active
Prefect profile (say, to your own ``prefect server start``), that server is
used and never stopped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .._errors import BackendConnectionError
from ._logs import quiet_this_process

_lock = threading.Lock()
_users = 0
_server: _Server | None = None  # the server probpipe started, if any
_url: str | None = None


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def import_prefect() -> Any:
    """Import prefect with probpipe's quiet defaults applied first."""
    quiet_this_process()
    import prefect

    return prefect


class _Server:
    """A Prefect API server on 127.0.0.1, run the way Prefect runs its temporary one.

    Its own process session (Ctrl-C in a terminal reaches only the caller,
    which then stops it in order), its log in ``$PREFECT_HOME``, and it exits
    by itself if its parent disappears.
    """

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float) -> None:
        import httpx
        from prefect.settings import get_current_settings

        settings = get_current_settings()
        home = Path(settings.home).expanduser()
        home.mkdir(parents=True, exist_ok=True)
        log = open(home / "probpipe-prefect-server.log", "ab")  # noqa: SIM115
        env = {
            **os.environ,
            **settings.to_environment_variables(exclude_unset=True),
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            "PROBPIPE_PARENT_PID": str(os.getpid()),
        }
        env.pop("PREFECT_API_URL", None)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "probpipe.engines._prefect_app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BackendConnectionError(
                        f"the Prefect API server exited with code {self.process.returncode}; "
                        f"see {home / 'probpipe-prefect-server.log'}"
                    )
                try:
                    if client.get(f"{self.url}/health", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise BackendConnectionError(
            f"the Prefect API server did not answer within {timeout:.0f} s; "
            f"see {home / 'probpipe-prefect-server.log'}"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def acquire_api(timeout: float = 180.0) -> str:
    """The API URL to use, starting the shared server on first use."""
    global _users, _server, _url
    with _lock:
        if _url is None:
            import_prefect()
            from prefect.settings import get_current_settings

            # PREFECT_API_URL from the environment or the active Prefect
            # profile (`prefect config set PREFECT_API_URL=...`).
            external = get_current_settings().api.url
            if external:
                _url = external.rstrip("/")
            else:
                server = _Server()
                server.start(timeout)
                _server, _url = server, server.url
        _users += 1
        return _url


def release_api() -> None:
    """Drop one user; the last one stops the server probpipe started."""
    global _users, _server, _url
    with _lock:
        _users = max(0, _users - 1)
        if _users or _url is None:
            return
        server, _server, _url = _server, None, None
    _drain_workers()
    if server is not None:
        server.stop()


def api_url() -> str | None:
    """The URL of the API in use, or None when no Prefect backend is open."""
    return _url


def owns_server() -> bool:
    return _server is not None


def server_pid() -> int | None:
    process = _server.process if _server is not None else None
    return process.pid if process is not None else None


def _drain_workers() -> None:
    """Flush Prefect's background event and log senders before the API goes away."""
    for module, name in (
        ("prefect.events.worker", "EventsWorker"),
        ("prefect.logging.handlers", "APILogWorker"),
    ):
        with contextlib.suppress(Exception):
            worker_cls = getattr(__import__(module, fromlist=[name]), name)
            worker_cls.drain_all(timeout=5)


def settings_for_flows(url: str) -> Any:
    """``temporary_settings`` for probpipe's flow runs: our API, no heartbeat thread.

    Flow-run heartbeats exist to detect crashed deployments; for an in-process
    flow they only cost time (the sync engine joins the heartbeat thread at
    exit, adding up to 1 s to every flow run).
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_CLIENT_MAX_RETRIES,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    return temporary_settings(
        updates={
            PREFECT_API_URL: url,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            # Our server asks for 0.1 s between retries while SQLite is busy
            # (see _prefect_app); allow enough of them to ride out a burst.
            PREFECT_CLIENT_MAX_RETRIES: 40,
        }
    )
