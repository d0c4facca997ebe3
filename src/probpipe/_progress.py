"""Progress: batched row beacons from workers, and the progress bar built on the hooks.

Rows run in chunks, but a chunk of 500 rows should not move the bar in one
jump. When progress is on, each worker thread keeps a :class:`RowReporter`
that collects the rows it finishes and, at most every ``BEACON_INTERVAL_S``,
sends them to the calling process in one tiny UDP datagram (``RowBeacon``:
127.0.0.1 only, best effort). The engine turns each datagram into one
``probpipe_rows_finished`` hook call, and reports the rest of a chunk's rows
when the chunk comes back (workers on other machines cannot reach the
beacon, so they fall back to per-chunk updates).

Why batches: one datagram and one hook call per row cost more than a
trivial row itself (20,000 rows took +60-150 % with the bar on). A bar is
read by a person; four updates a second per worker are plenty.

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
import time
from collections.abc import Callable, Iterator
from typing import Any

from ._hookspecs import hookimpl

# A worker sends what it finished at most this often (per worker thread).
BEACON_INTERVAL_S = 0.25
# Keep one datagram well below what loopback carries (64 KiB).
MAX_DATAGRAM = 8192

# -- the wire format: "<call id> <attempt> <rows> <failed rows>" -------------
# Rows are ranges and single rows, "0-12,15,17-20"; "-" is no rows. A chunk's
# rows are consecutive, so a batch is usually one range, whatever its size.


def encode_rows(rows: list[int]) -> str:
    parts = []
    i = 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and rows[j + 1] == rows[j] + 1:
            j += 1
        parts.append(str(rows[i]) if i == j else f"{rows[i]}-{rows[j]}")
        i = j + 1
    return ",".join(parts) or "-"


def decode_rows(text: str) -> list[int]:
    rows: list[int] = []
    if text == "-":
        return rows
    for part in text.split(","):
        first, _, last = part.partition("-")
        rows.extend(range(int(first), int(last or first) + 1))
    return rows


def datagrams(call_id: str, attempt: int, rows: list[int], failed: list[int]) -> Iterator[bytes]:
    """The batch as datagrams: one, unless its rows are so scattered that it is too long."""
    failed_set = set(failed)
    step = len(rows)
    while True:
        pieces = [rows[i : i + step] for i in range(0, len(rows), step)]
        encoded = [
            f"{call_id} {attempt} {encode_rows(piece)} "
            f"{encode_rows([r for r in piece if r in failed_set])}".encode()
            for piece in pieces
        ]
        if step == 1 or max(len(d) for d in encoded) <= MAX_DATAGRAM:
            return iter(encoded)
        step = max(1, step // 2)


# -- worker side --------------------------------------------------------------


class RowReporter:
    """Collects the rows one worker thread finishes and sends them in batches.

    A batch goes out once ``BEACON_INTERVAL_S`` has passed since the last one
    (checked as each row finishes, so an idle worker sends nothing). When a
    chunk ends, what is left is dropped: the chunk's own return reports every
    row of it, so a datagram per chunk would only repeat that (and with one
    row per chunk, as on ``sequential``, be one datagram per row again).
    """

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.batch: tuple[tuple[str, int], str, int] | None = None  # (address, call id, attempt)
        self.rows: list[int] = []
        self.failed: list[int] = []
        self.last_sent = time.monotonic()

    def row_finished(
        self, address: tuple[str, int], call_id: str, row: int, attempt: int, failed: bool
    ) -> None:
        batch = (address, call_id, attempt)
        if batch != self.batch:
            self.chunk_ended()
            self.batch = batch
        self.rows.append(row)
        if failed:
            self.failed.append(row)
        if time.monotonic() - self.last_sent >= BEACON_INTERVAL_S:
            self.send()

    def send(self) -> None:
        """Send the batch now (never raises, never blocks)."""
        if self.rows and self.batch is not None:
            address, call_id, attempt = self.batch
            if self.sock is None:
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.sock.setblocking(False)
            for data in datagrams(call_id, attempt, self.rows, self.failed):
                with contextlib.suppress(OSError):
                    self.sock.sendto(data, address)
        self.rows, self.failed = [], []
        self.last_sent = time.monotonic()

    def chunk_ended(self) -> None:
        self.rows, self.failed = [], []


_reporters = threading.local()


def _reporter() -> RowReporter:
    reporter = getattr(_reporters, "reporter", None)
    if reporter is None:
        reporter = _reporters.reporter = RowReporter()
    return reporter


def row_finished(
    address: tuple[str, int] | None, call_id: str, row: int, attempt: int, failed: bool
) -> None:
    """A worker finished ``row``: tell the caller soon, in a batch (when it listens)."""
    if address is not None:
        _reporter().row_finished(address, call_id, row, attempt, failed)


def chunk_ended(address: tuple[str, int] | None) -> None:
    """A worker finished its chunk: the chunk's return reports what is left."""
    if address is not None:
        _reporter().chunk_ended()


# -- caller side --------------------------------------------------------------


class RowBeacon:
    """Receives batches of finished rows for one call on 127.0.0.1 and passes them on.

    ``on_rows(rows, attempt, failed_rows)`` is called once per datagram, on
    the beacon's own thread.
    """

    def __init__(self, call_id: str, on_rows: Callable[[list[int], int, list[int]], Any]):
        self.call_id = call_id
        self.on_rows = on_rows
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
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                continue  # close() waking us up
            try:
                call_id, attempt, rows, failed = data.decode().split()
                if call_id != self.call_id:
                    continue
                batch = (decode_rows(rows), int(attempt), decode_rows(failed))
            except ValueError:
                continue  # not one of ours
            self.on_rows(*batch)

    def close(self) -> None:
        self._stop.set()
        # Wake the listener now rather than at its next timeout: every call
        # with progress on would otherwise wait for it (up to 0.2 s).
        with contextlib.suppress(OSError):
            self.sock.sendto(b"", self.address)
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
