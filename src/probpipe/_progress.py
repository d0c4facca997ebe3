"""Progress: batched row beacons from workers, and the progress bar built on the hooks.

Rows run in chunks, but a chunk of 500 rows should not move the bar in one
jump. When progress is on, each worker thread keeps a :class:`RowReporter`
that collects the rows it finishes and, at most every ``BEACON_INTERVAL_S``,
sends them to the calling process in one tiny UDP datagram (``RowBeacon``:
127.0.0.1 only, best effort; one socket and thread per process, shared by
every call). The engine turns each datagram into one
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
    """How far one worker thread is in its chunk, and what it has told the caller.

    A batch goes out once ``BEACON_INTERVAL_S`` has passed since the last one
    (checked as each row finishes, so an idle worker sends nothing). When a
    chunk ends, what is left is dropped: the chunk's own return reports every
    row of it, so a datagram per chunk would only repeat that (and with one
    row per chunk, as on ``sequential``, be one datagram per row again).
    """

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.chunk: Any = None  # the chunk being run, or None between chunks
        self.done = 0  # its rows finished so far (they finish in order)
        self.sent = 0  # ... and already sent
        self.failed: list[int] = []  # failed rows among those not sent yet
        self.last_sent = time.monotonic()

    def send(self, address: tuple[str, int], call_id: str) -> None:
        """Send the rows finished since the last batch (never raises, never blocks)."""
        rows = [task.row for task in self.chunk.rows[self.sent : self.done]]
        if self.sock is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.setblocking(False)
            # Bound to loopback: an unbound sender would be bound to 0.0.0.0.
            self.sock.bind(("127.0.0.1", 0))
        for data in datagrams(call_id, self.chunk.attempt, rows, self.failed):
            with contextlib.suppress(OSError):
                self.sock.sendto(data, address)
        self.sent, self.failed = self.done, []
        self.last_sent = time.monotonic()


_reporters = threading.local()


def _reporter() -> RowReporter:
    try:
        return _reporters.reporter
    except AttributeError:  # this thread's first chunk
        _reporters.reporter = RowReporter()
        return _reporters.reporter


def row_finished(address: tuple[str, int] | None, call_id: str, chunk: Any, failed: bool) -> None:
    """A worker finished the next row of ``chunk``: tell the caller soon, in a batch.

    Runs once per row, so it does as little as it can: nothing when nobody
    listens or when the chunk is one row (its return reports it at once).
    """
    if address is None or len(chunk.rows) == 1:
        return
    reporter = _reporter()
    if chunk is not reporter.chunk:
        reporter.chunk, reporter.done, reporter.sent, reporter.failed = chunk, 0, 0, []
    reporter.done += 1
    if failed:
        reporter.failed.append(chunk.rows[reporter.done - 1].row)
    if time.monotonic() - reporter.last_sent >= BEACON_INTERVAL_S:
        reporter.send(address, call_id)


def chunk_ended(address: tuple[str, int] | None) -> None:
    """A worker finished its chunk: the chunk's return reports what is left."""
    if address is not None:
        _reporter().chunk = None


# -- caller side --------------------------------------------------------------


class _Listener:
    """The process's one beacon socket and thread, shared by every open call.

    Started with the first call that shows progress and kept (a daemon thread
    blocked on its socket), so a call pays no thread start or join.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.calls: dict[str, Callable[[list[int], int, list[int]], Any]] = {}
        # Held while a batch is passed on, so a call that stops listening
        # gets no batch afterwards.
        self.lock = threading.Lock()
        thread = threading.Thread(target=self._listen, name="probpipe-beacon", daemon=True)
        thread.start()

    def _listen(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            try:
                call_id, attempt, rows, failed = data.decode().split()
                batch = (decode_rows(rows), int(attempt), decode_rows(failed))
            except ValueError:
                continue  # not one of ours
            with self.lock:
                on_rows = self.calls.get(call_id)
                if on_rows is not None:  # else a late batch of a finished call
                    on_rows(*batch)


_listener: _Listener | None = None
_listener_lock = threading.Lock()


class RowBeacon:
    """Where the workers of one call send their finished rows (127.0.0.1).

    ``on_rows(rows, attempt, failed_rows)`` is called once per datagram, on
    the listener's thread, until :meth:`close`.
    """

    def __init__(self, call_id: str, on_rows: Callable[[list[int], int, list[int]], Any]):
        global _listener
        with _listener_lock:
            if _listener is None or _listener.pid != os.getpid():  # none yet, or forked
                _listener = _Listener()
            self._listener = _listener
        self.call_id = call_id
        self.address = self._listener.address
        with self._listener.lock:
            self._listener.calls[call_id] = on_rows

    def close(self) -> None:
        with self._listener.lock:
            self._listener.calls.pop(self.call_id, None)


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


class _Bar:
    """One call's tqdm bar, and what it has been told."""

    def __init__(self, tqdm_bar: Any):
        self.tqdm = tqdm_bar
        self.failed_before: set[int] = set()  # rows reported failed at least once
        self.failing: set[int] = set()  # ... and not (yet) done by a retry
        self.pending = 0  # rows not yet passed to tqdm
        self.last_update = 0.0

    def flush(self) -> None:
        self.tqdm.update(self.pending)
        self.pending = 0
        self.last_update = time.monotonic()


# The bar is passed new counts at most this often (tqdm redraws at most every
# 0.1 s anyway; each update costs about as much as a trivial row).
BAR_UPDATE_S = 0.1


class ProgressBar:
    """The observer plugin that draws one tqdm bar per call (rows done of total)."""

    def __init__(self) -> None:
        self._bars: dict[str, _Bar] = {}
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
            self._bars[call.call_id] = _Bar(bar)

    @hookimpl
    def probpipe_rows_finished(self, call, rows, failed):
        # Called once per chunk or batch (once per row on ``sequential``): kept
        # lean. The core reports a row once per attempt, and only a failed
        # attempt is retried, so a row seen before is one that failed before.
        bar = self._bars.get(call.call_id)
        if bar is None:
            return
        with self._lock:
            bar.pending += len(rows)
            if bar.failed_before:
                bar.pending -= sum(1 for row in rows if row in bar.failed_before)  # a retry
                bar.failing.difference_update(rows)  # ... that may have succeeded
            if failed:
                bar.failed_before.update(failed)
                bar.failing.update(failed)
            if bar.failed_before:
                bar.tqdm.set_postfix(failed=len(bar.failing), refresh=False)
            if time.monotonic() - bar.last_update >= BAR_UPDATE_S:
                bar.flush()

    @hookimpl
    def probpipe_map_finished(self, call, n_failed, error):
        with self._lock:
            bar = self._bars.pop(call.call_id, None)
            if bar is not None:
                bar.flush()
                bar.tqdm.close()


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
