"""The ASGI app probpipe's own Prefect server runs: Prefect's API, two additions.

1. On a 503 (Prefect's answer when SQLite is momentarily locked by its own
   background services) it adds ``Retry-After: 0.1``. Without it Prefect's
   client backs off 2 s before retrying, which showed up as 2-2.7 s flow-run
   starts whenever the previous call's task-run events were still being
   written.
2. It exits when the process that started it is gone, so a server is never
   left behind even if its parent was killed without cleaning up.

Started by :mod:`probpipe.engines.prefect` as ``uvicorn --factory``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

RETRY_AFTER_SECONDS = b"0.1"


class _RetrySoon:
    """ASGI middleware: a short Retry-After on 503 responses."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_retry_after(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = [*message.get("headers", []), (b"retry-after", RETRY_AFTER_SECONDS)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_retry_after)


def _exit_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(2.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def create_app() -> Any:
    from prefect.server.api.server import create_app as prefect_create_app

    parent = int(os.environ.get("PROBPIPE_PARENT_PID", "0"))
    if parent:
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    return _RetrySoon(prefect_create_app())
