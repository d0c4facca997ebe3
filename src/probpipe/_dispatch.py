"""Dispatching one call's rows: chunks in, results back, in row order.

:class:`Dispatch` owns the loop between the core and a backend. It submits
chunks with ``backend.map``, takes them back in completion order with
``as_completed``/``gather``, and puts every row in its place. All policy
lives here, once, for every backend:

* chunk sizes (``"auto"``: probe one row per worker, then size chunks so each
  carries well above the backend's per-task overhead, with at least one
  chunk per worker);
* retries (a failed row re-runs with the same seed);
* fail fast (with ``on_error="raise"``, chunks whose rows all lie above the
  lowest failure are cancelled);
* lost workers (a chunk whose process died is split and re-run; a single row
  is blamed only if it dies again when run alone);
* telling observers which rows finished (once per row and attempt, whether
  a worker's beacon or the returning chunk says so first).
"""

from __future__ import annotations

import itertools
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._backend import Session, iter_chunks
from ._errors import WorkerLostError
from ._worker import Chunk, ChunkResult, RowFailure, RowTask, WorkItem, run_item

# Auto chunking: each chunk should carry at least this much work, and at
# least this many multiples of the backend's per-task overhead (joblib's rule
# of thumb: 0.2 to 2 s of work per batch).
MIN_CHUNK_SECONDS = 0.2
OVERHEAD_MULTIPLE = 20


@dataclass
class CallInfo:
    """What observer hooks see of a running call."""

    call_id: str
    func: str
    backend: str
    n_rows: int
    n_cells: int
    options: dict[str, Any]
    started: float = field(default_factory=time.time)
    rows_done: int = 0
    rows_failed: int = 0


@dataclass
class Failure:
    """A row that failed for good (after its retries)."""

    row: int
    exception: BaseException
    traceback: str
    attempts: int
    worker: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "type": f"{type(self.exception).__module__}.{type(self.exception).__qualname__}",
            "message": str(self.exception),
            "attempts": self.attempts,
        }


def auto_chunksize(n_rows: int, parallelism: int, row_seconds: float, overhead: float) -> int:
    """Rows per chunk: enough work per task to dwarf the overhead, at least one task per worker.

    Chunks are sized to carry the target amount of work, so the number of
    chunks grows with the work: long calls get many chunks per worker (good
    balance), short ones one per worker. Cutting a short call finer would buy
    no balance, only more per-task overhead (on Prefect, a task run each).
    """
    target = max(MIN_CHUNK_SECONDS, OVERHEAD_MULTIPLE * overhead)
    by_cost = math.ceil(target / max(row_seconds, 1e-7))
    one_per_worker = math.ceil(n_rows / max(parallelism, 1))
    return max(1, min(by_cost, one_per_worker))


# ---------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------


def even_chunks(tasks: list[Any], size: int, parallelism: int) -> list[list[Any]]:
    """Split ``tasks`` into chunks of at most ``size``, as equal as possible,
    their number a multiple of ``parallelism`` so the last round keeps every
    worker busy (14 rows, size 2, 2 workers: 8 chunks of 2 or 1, not 7 of 2)."""
    if not tasks:
        return []
    n_chunks = math.ceil(len(tasks) / size)
    n_chunks = min(len(tasks), parallelism * math.ceil(n_chunks / parallelism))
    bounds = np.linspace(0, len(tasks), n_chunks + 1).round().astype(int)
    parts = [tasks[a:b] for a, b in itertools.pairwise(bounds)]
    return sorted(parts, key=len, reverse=True)  # the long ones first


class Dispatch:
    """One call's dispatch loop: submit chunks, take them back as they finish."""

    def __init__(
        self,
        session: Session,
        spec_ref: Any,
        refs: tuple,
        tasks: list[RowTask],
        *,
        chunksize: int | str,
        on_error: str,
        retries: int,
        info: CallInfo,
        hook: Any,
        fname: str,
        backend_name: str,
        n_rows: int,
        on_success: Any = None,
    ):
        self.session = session
        self.spec_ref = spec_ref
        self.refs = refs
        self.tasks = tasks
        self.chunksize = chunksize
        self.on_error = on_error
        self.retries = retries
        self.info = info
        self.hook = hook
        self.fname = fname
        self.backend_name = backend_name
        self.values: list[Any] = [None] * n_rows
        self.done = np.zeros(n_rows, dtype=bool)
        self.on_success = on_success
        self.failures: dict[int, Failure] = {}
        self.attempts: dict[int, int] = {}
        self.pending: dict[int, tuple[Any, Chunk]] = {}
        self.n_chunks = 0
        self.stop_row: int | None = None  # fail fast: rows above this are not needed
        self.suspects: list[tuple[RowTask, int]] = []  # rows whose worker died once
        self._reported: set[tuple[int, int]] = set()  # (row, attempt) told to observers
        self._report_lock = threading.Lock()
        self.row_seconds: list[float] = []
        self.resolved_chunksize: int | None = chunksize if isinstance(chunksize, int) else None
        self._waiting_for_probe: list[RowTask] = []

    # -- submitting -----------------------------------------------------------
    def _submit(self, chunks: list[Chunk]) -> None:
        chunks = [c for c in chunks if c.rows]
        if not chunks:
            return
        map_ = self.session.method("map")
        handles = map_(run_item, [WorkItem(self.spec_ref, c, self.refs) for c in chunks])
        if len(handles) != len(chunks):
            raise RuntimeError(
                f"backend {self.backend_name!r}: map() returned {len(handles)} handles "
                f"for {len(chunks)} items"
            )
        for handle, chunk in zip(handles, chunks):
            self.pending[id(handle)] = (handle, chunk)
        self.n_chunks += len(chunks)

    def _chunks_of(self, tasks: list[RowTask], size: int, attempt: int = 0) -> list[Chunk]:
        return [Chunk(tuple(part), attempt) for part in iter_chunks(tasks, size)]

    def start(self) -> None:
        tasks = self.tasks
        if self.chunksize != "auto":
            self._submit(self._chunks_of(tasks, self.chunksize))
            return
        parallelism = max(1, int(self.session.method("parallelism")()))
        if len(tasks) <= 2 * parallelism:
            self.resolved_chunksize = 1
            self._submit(self._chunks_of(tasks, 1))
            return
        # Probe: one row per worker; size the rest once the first comes back.
        probes = self._chunks_of(tasks[:parallelism], 1)
        self._probes = {id(chunk) for chunk in probes}
        self._submit(probes)
        self._waiting_for_probe = list(tasks[parallelism:])
        self._parallelism = parallelism

    def _after_probe(self) -> bool:
        if not self._waiting_for_probe:
            return False
        probing = any(id(chunk) in self._probes for _, chunk in self.pending.values())
        if not self.row_seconds and probing:
            return False  # no timing yet; wait for another probe
        rest, self._waiting_for_probe = self._waiting_for_probe, []
        # With no timing at all (every probe failed as a whole task), size
        # for balance alone; those rows will most likely fail the same way.
        row_seconds = statistics.median(self.row_seconds) if self.row_seconds else 0.0
        self.resolved_chunksize = auto_chunksize(
            len(rest),
            self._parallelism,
            row_seconds,
            float(self.session.flag("task_overhead")),
        )
        if self.stop_row is not None:
            rest = [t for t in rest if t.row < self.stop_row]
        self._submit(
            [
                Chunk(tuple(part))
                for part in even_chunks(rest, self.resolved_chunksize, self._parallelism)
            ]
        )
        return True

    # -- taking results back -------------------------------------------------
    def run(self) -> None:
        if not self.tasks:
            return
        self.start()
        try:
            while self.pending or self.suspects:
                if not self.pending:
                    self._run_next_suspect_alone()
                    continue
                handles = [h for h, _ in self.pending.values()]
                for handle in self.session.method("as_completed")(handles):
                    entry = self.pending.pop(id(handle), None)
                    if entry is None:
                        continue  # cancelled meanwhile
                    submitted = self._take(handle, entry[1])
                    submitted = self._after_probe() or submitted
                    if submitted:
                        break  # restart as_completed over the new set
        except BaseException:
            self.cancel_pending()
            raise
        self._check_every_row_accounted_for()

    def _check_every_row_accounted_for(self) -> None:
        """Nothing is lost: each row ended done or failed (or fail-fast skipped it)."""
        limit = self.stop_row if self.stop_row is not None else len(self.done)
        missing = [
            t.row
            for t in self.tasks
            if t.row < limit and not self.done[t.row] and t.row not in self.failures
        ]
        if missing:
            raise RuntimeError(
                f"probpipe lost track of rows {missing[:10]} of {self.fname}() on backend "
                f"{self.backend_name!r}; this is a bug, please report it"
            )

    def cancel_pending(self) -> None:
        if self.pending:
            handles = [h for h, _ in self.pending.values()]
            self.pending.clear()
            try:
                self.session.method("cancel")(handles)
            except Exception:
                pass

    def _take(self, handle: Any, chunk: Chunk) -> bool:
        """Record one finished chunk; returns True if it submitted new work."""
        try:
            result: ChunkResult = self.session.method("gather")([handle])[0]
        except Exception as exc:
            return self._chunk_lost(chunk, exc)
        retry: list[RowTask] = []
        failed_rows = []
        good_rows, good_values = [], []
        by_row = {t.row: t for t in chunk.rows}
        for row, value, seconds in zip(result.rows, result.values, result.seconds):
            self.row_seconds.append(seconds)
            self.attempts[row] = chunk.attempt + 1
            failure = result.failures.get(row)
            if failure is None:
                self.values[row] = value
                self.done[row] = True
                self.failures.pop(row, None)
                good_rows.append(row)
                good_values.append(value)
            else:
                failed_rows.append(row)
                if self._row_failed(by_row[row], failure, chunk.attempt):
                    retry.append(by_row[row])
        if self.on_success is not None:
            self.on_success(good_rows, good_values)
        self._report(chunk, failed_rows)
        return self._retry(retry, chunk.attempt)

    def _run_next_suspect_alone(self) -> None:
        task, attempt = self.suspects.pop(0)
        if self.stop_row is not None and task.row > self.stop_row:
            return  # failing fast: the call raises anyway
        self._submit([Chunk((task,), attempt, alone=True)])

    def _chunk_lost(self, chunk: Chunk, exc: Exception) -> bool:
        """The engine failed a whole chunk: its worker died, or the task itself failed.

        A row's own exception never gets here (``run_chunk`` catches it), so
        a failure that is not a lost worker (the workers cannot import the
        function, say) is the same for every row: all of them get it.
        """
        if not self.session.method("is_worker_lost")(exc):
            failure = RowFailure(exc, _format_tb(exc))
            retry = [t for t in chunk.rows if self._row_failed(t, failure, chunk.attempt)]
            self._report(chunk, [t.row for t in chunk.rows])
            return self._retry(retry, chunk.attempt)
        if len(chunk.rows) > 1:
            # Split and re-run: isolates the row that broke the worker, and
            # costs no retry, so the innocent rows are never lost.
            half = len(chunk.rows) // 2
            self._submit(
                [
                    Chunk(chunk.rows[:half], chunk.attempt),
                    Chunk(chunk.rows[half:], chunk.attempt),
                ]
            )
            return True
        task = chunk.rows[0]
        if not chunk.alone:
            # A dying worker can take down the other tasks queued on it (Dask),
            # so a lost row is only a suspect: it is re-run once more alone,
            # after everything else, and blamed only if it dies again.
            self.suspects.append((task, chunk.attempt))
            return False
        lost = WorkerLostError(
            f"row {task.row} of {self.fname}(): its worker process died on backend "
            f"{self.backend_name!r} ({type(exc).__name__}: {exc})"
        )
        lost.__cause__ = exc
        retry = (
            [task]
            if self._row_failed(task, RowFailure(lost, _format_tb(lost)), chunk.attempt)
            else []
        )
        self._report(chunk, [task.row])
        return self._retry(retry, chunk.attempt)

    def _row_failed(self, task: RowTask, failure: RowFailure, attempt: int) -> bool:
        """Record a failed attempt; True if the row should be retried."""
        self.attempts[task.row] = attempt + 1
        if attempt < self.retries and (self.stop_row is None or task.row < self.stop_row):
            return True
        self.failures[task.row] = Failure(
            task.row, failure.exception, failure.traceback, attempt + 1, failure.host
        )
        if self.on_error == "raise":
            self._fail_fast(task.row)
        return False

    def _fail_fast(self, row: int) -> None:
        """Cancel every pending chunk whose rows all lie above the failing row."""
        if self.stop_row is not None and self.stop_row <= row:
            return
        self.stop_row = row
        doomed = [(key, h) for key, (h, c) in self.pending.items() if c.rows[0].row > row]
        for key, _ in doomed:
            del self.pending[key]
        if doomed:
            try:
                self.session.method("cancel")([h for _, h in doomed])
            except Exception:
                pass
        if self._waiting_for_probe:
            self._waiting_for_probe = [t for t in self._waiting_for_probe if t.row < row]

    def _retry(self, tasks: list[RowTask], attempt: int) -> bool:
        if not tasks:
            return False
        size = self.resolved_chunksize or 1
        self._submit(self._chunks_of(tasks, size, attempt + 1))
        return True

    def _report(self, chunk: Chunk, failed_rows: list[int]) -> None:
        """Tell observers about the chunk's rows no beacon has reported yet."""
        failed = set(failed_rows)
        with self._report_lock:
            rows = [t.row for t in chunk.rows if (t.row, chunk.attempt) not in self._reported]
            self._reported.update((row, chunk.attempt) for row in rows)
        self._announce(rows, [row for row in rows if row in failed])

    def row_reported(self, row: int, attempt: int, failed: bool) -> None:
        """A worker's beacon: one row finished (called on the beacon thread)."""
        with self._report_lock:
            if (row, attempt) in self._reported:
                return
            self._reported.add((row, attempt))
        self._announce([row], [row] if failed else [])

    def _announce(self, rows: list[int], failed: list[int]) -> None:
        if not rows:
            return
        with self._report_lock:
            self.info.rows_done += len(rows) - len(failed)
            self.info.rows_failed += len(failed)
        self.hook.probpipe_rows_finished(call=self.info, rows=rows, failed=failed)


def _format_tb(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
