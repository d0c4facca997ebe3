"""One Prefect API per process, shared by every Prefect backend.

Without a reachable API, Prefect starts a temporary server in *each* process
that runs a flow or a task, and out-of-process workers (Dask, Ray) would each
start their own (~3 s each, all writing one sqlite file). Instead probpipe
runs one server on 127.0.0.1 for as long as a Prefect backend is open, runs
flows with ``PREFECT_API_URL`` pointing at it, and Prefect hands that setting
to every task it ships to a worker.

If ``PREFECT_API_URL`` is already set (say, to your own ``prefect server
start``), that server is used and never stopped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any

from ._logs import quiet_this_process

_lock = threading.Lock()
_users = 0
_server: Any = None  # the SubprocessASGIServer probpipe started, if any
_url: str | None = None


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def import_prefect() -> Any:
    """Import prefect with probpipe's quiet defaults applied first."""
    quiet_this_process()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    import prefect

    return prefect


def acquire_api(timeout: float = 120.0) -> str:
    """The API URL to use, starting the shared server on first use."""
    global _users, _server, _url
    with _lock:
        if _url is None:
            import_prefect()
            external = os.environ.get("PREFECT_API_URL")
            if external:
                _url = external.rstrip("/")
            else:
                from prefect.server.api.server import SubprocessASGIServer

                server = SubprocessASGIServer(port=_free_port())
                server.start(timeout=int(timeout))
                _server, _url = server, server.api_url
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
        # Prefect keys servers by port; forget ours so a later start is fresh.
        type(server)._instances.pop(server.port, None)


def api_url() -> str | None:
    """The URL of the API in use, or None when no Prefect backend is open."""
    return _url


def owns_server() -> bool:
    return _server is not None


def server_pid() -> int | None:
    process = getattr(_server, "server_process", None)
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
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    return temporary_settings(
        updates={PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    )
