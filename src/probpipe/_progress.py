"""Progress: per-row beacons from workers, and the progress bar built on the hooks.

Rows run in chunks, but a chunk of 500 rows should not move the bar in one
jump. When progress is on, each worker sends a tiny UDP datagram to the
calling process as each row finishes (``RowBeacon``: 127.0.0.1 only, best
effort). The engine turns beacons into ``probpipe_rows_finished`` hook calls
the moment they arrive, and reports the rest of a chunk's rows when the chunk
comes back (workers on other machines cannot reach the beacon, so they fall
back to per-chunk updates).

``ProgressBar`` is an ordinary observer plugin on those hooks. It is on by
default when stderr is a terminal or in a notebook, off when output goes to
a file or pipe; ``progress=False`` (or True) on the workflow function decides
for one function.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from typing import Any

from ._hookspecs import hookimpl

# -- worker side --------------------------------------------------------------

_sockets = threading.local()


def send_beacon(
    address: tuple[str, int] | None, call_id: str, row: int, attempt: int, failed: bool
) -> None:
    """Tell the caller that a row finished (never raises, never blocks)."""
    if address is None:
        return
    sock = getattr(_sockets, "sock", None)
    if sock is None:
        sock = _sockets.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.sendto(f"{call_id} {row} {attempt} {int(failed)}".encode(), address)


# -- caller side --------------------------------------------------------------


class RowBeacon:
    """Receives row beacons for one call on 127.0.0.1 and passes them on."""

    def __init__(self, call_id: str, on_row: Any):
        self.call_id = call_id
        self.on_row = on_row
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="probpipe-beacon", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(256)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                call_id, row, attempt, failed = data.decode().split()
            except ValueError:
                continue
            if call_id == self.call_id:
                self.on_row(int(row), int(attempt), failed == "1")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython() if hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def progress_wanted(option: bool | None) -> bool:
    """The ``progress`` option resolved: auto means a terminal or a notebook."""
    if option is not None:
        return option
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) or in_notebook()


class ProgressBar:
    """The observer plugin that draws one tqdm bar per call (rows done of total)."""

    def __init__(self) -> None:
        self._bars: dict[str, tuple[Any, set[int], set[int]]] = {}
        self._lock = threading.Lock()

    @hookimpl
    def probpipe_map_started(self, call):
        if not progress_wanted(call.options.get("progress")):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional: pip install 'probpipe[progress]'
            return
        bar = tqdm(
            total=call.n_rows,
            desc=f"{call.func} [{call.backend}]",
            unit="row",
            leave=True,
            file=sys.stderr,
            **_screen(sys.stderr),
        )
        with self._lock:
            self._bars[call.call_id] = (bar, set(), set())

    @hookimpl
    def probpipe_rows_finished(self, call, rows, failed):
        with self._lock:
            entry = self._bars.get(call.call_id)
            if entry is None:
                return
            bar, seen, failing = entry
            new = [row for row in rows if row not in seen]  # a retried row counts once
            seen.update(new)
            failing.difference_update(rows)  # a retry that succeeded
            failing.update(failed)
            bar.update(len(new))
            if failing:
                bar.set_postfix(failed=len(failing), refresh=False)

    @hookimpl
    def probpipe_map_finished(self, call, n_failed, error):
        with self._lock:
            entry = self._bars.pop(call.call_id, None)
        if entry is not None:
            entry[0].close()


def _screen(stream: Any) -> dict[str, int]:
    """Size hints for tqdm: a fresh pty reports 0x0, where tqdm would draw nothing."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return {}
    if size.columns >= 20 and size.lines >= 2:
        return {}  # a real size: let tqdm follow it
    return {"ncols": 80, "nrows": 24}


def wants_beacon(call_options: dict[str, Any]) -> bool:
    return progress_wanted(call_options.get("progress"))
