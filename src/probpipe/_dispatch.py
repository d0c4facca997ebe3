"""Dispatching one call's rows: chunks in, results back, in row order.

:class:`Dispatch` owns the loop between the core and a backend. It submits
chunks with ``backend.map``, takes them back in completion order with
``concurrent.futures.wait`` (see :mod:`probpipe._futures`), and puts every
row in its place. All policy lives here, once, for every backend:

* chunk sizes (``"auto"``: probe one row per worker, then size chunks so each
  carries well above the backend's per-task overhead, with at least one
  chunk per worker; a function that ran on this backend before is sized
  from its last row time at once, without the probe round);
* retries (a failed row re-runs with the same seed);
* fail fast (with ``on_error="raise"``, chunks whose rows all lie above the
  lowest failure are cancelled);
* lost workers (a chunk whose process died is split and re-run; a single row
  is blamed only if it dies again when run alone);
* telling observers which rows finished (once per row and attempt, whether
  a worker's beacon or the returning chunk says so first).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ._chunking import auto_chunksize, even_chunks, fixed_chunks
from ._errors import WorkerLostError
from ._futures import wait_first
from ._worker import Chunk, ChunkResult, RowFailure, RowTask, WorkItem, run_item

Submit = Callable[[Any, list[Any]], list[cf.Future]]


@dataclass(frozen=True)
class CallInfo:
    """One call as observers and backends see it; built once, before dispatch."""

    call_id: str
    func: str
    backend: str
    n_rows: int
    n_cells: int
    options: Mapping[str, Any]
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


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


# ---------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------


class Dispatch:
    """One call's dispatch loop: submit chunks, take them back as they finish.

    Built before the call starts; :meth:`run` is the ``body`` a backend's
    ``run_call`` runs, with the call's ``submit`` and ``parallelism``.
    """

    def __init__(
        self,
        spec_ref: Any,
        refs: tuple,
        tasks: list[RowTask],
        *,
        chunksize: int | str,
        on_error: str,
        retries: int,
        info: CallInfo,
        hook: Any,
        n_rows: int,
        task_overhead: float,
        is_worker_lost: Callable[[BaseException], bool],
        on_success: Any = None,
        known_row_seconds: float | None = None,
    ):
        self.spec_ref = spec_ref
        self.refs = refs
        self.tasks = tasks
        self.chunksize = chunksize
        self.on_error = on_error
        self.retries = retries
        self.info = info
        self.hook = hook
        self.task_overhead = task_overhead
        self.known_row_seconds = known_row_seconds
        self.is_worker_lost = is_worker_lost
        self.values: list[Any] = [None] * n_rows
        self.done = np.zeros(n_rows, dtype=bool)
        self.on_success = on_success
        self.failures: dict[int, Failure] = {}
        self.attempts = np.zeros(n_rows, dtype=np.int32)  # per row, attempts made so far
        self.pending: dict[cf.Future, Chunk] = {}  # in the engine's hands
        self.queued: deque[Chunk] = deque()  # waiting for room in the window
        self.n_chunks = 0
        self.stop_row: int | None = None  # fail fast: rows above this are not needed
        self.suspects: list[tuple[RowTask, int]] = []  # rows whose worker died once
        # Per row, the latest attempt told to observers (-1: none): a set of
        # (row, attempt) pairs would cost over 100 MB at a million rows.
        self._reported = np.full(n_rows, -1, dtype=np.int32)
        self._report_lock = threading.Lock()
        # Per row, the time of its latest attempt (NaN: not run yet); arrays,
        # not dicts and lists of Python numbers: 60 MB less at a million rows.
        self.row_seconds = np.full(n_rows, np.nan)
        self.n_timed = 0
        self.per_worker_builds: dict[str, int] = {}  # values built, by fingerprint
        self.resolved_chunksize: int | None = chunksize if isinstance(chunksize, int) else None
        self._waiting_for_probe: list[RowTask] = []
        self._probes: set[int] = set()
        self._submit_fn: Submit | None = None
        self._parallelism = 1

    # -- submitting -----------------------------------------------------------
    def _submit(self, chunks: list[Chunk]) -> None:
        """Queue chunks; at most two per worker are in the engine's hands at a time.

        The window (joblib's ``pre_dispatch="2*n_jobs"``) keeps every worker
        busy while bounding what is in flight: waiting scans only the window,
        a million one-row chunks never exist as a million futures, and fail
        fast has little to cancel.
        """
        self.queued.extend(c for c in chunks if c.rows)
        self._fill()

    def _fill(self) -> None:
        room = 2 * self._parallelism - len(self.pending)
        if room <= 0 or not self.queued:
            return
        chunks = [self.queued.popleft() for _ in range(min(room, len(self.queued)))]
        futures = self._submit_fn(run_item, [WorkItem(self.spec_ref, c, self.refs) for c in chunks])
        for future, chunk in zip(futures, chunks):
            self.pending[future] = chunk
        self.n_chunks += len(chunks)

    def _chunks_of(self, tasks: list[RowTask], size: int, attempt: int = 0) -> list[Chunk]:
        return [Chunk(tuple(part), attempt) for part in fixed_chunks(tasks, size)]

    def _start(self) -> None:
        tasks = self.tasks
        if self.chunksize != "auto":
            self._submit(self._chunks_of(tasks, self.chunksize))
            return
        if self.known_row_seconds is not None:
            # Sized at once: a probe round costs a serial engine round trip
            # (on Prefect, task runs), most of a short call's time.
            self._submit(self._sized_chunks(tasks, self.known_row_seconds))
            return
        if len(tasks) <= 2 * self._parallelism:
            self.resolved_chunksize = 1
            self._submit(self._chunks_of(tasks, 1))
            return
        # Probe: one row per worker; size the rest once the first comes back.
        probes = self._chunks_of(tasks[: self._parallelism], 1)
        self._probes = {id(chunk) for chunk in probes}
        self._submit(probes)
        self._waiting_for_probe = list(tasks[self._parallelism :])

    def _after_probe(self) -> None:
        if not self._waiting_for_probe:
            return
        probing = any(id(chunk) in self._probes for chunk in self.pending.values())
        if not self.n_timed and probing:
            return  # no timing yet; wait for another probe
        rest, self._waiting_for_probe = self._waiting_for_probe, []
        # With no timing at all (every probe failed as a whole task), size
        # for balance alone; those rows will most likely fail the same way.
        if self.stop_row is not None:
            rest = [t for t in rest if t.row < self.stop_row]
        self._submit(self._sized_chunks(rest, self.median_row_seconds() or 0.0))

    def _sized_chunks(self, tasks: list[RowTask], row_seconds: float) -> list[Chunk]:
        size = auto_chunksize(len(tasks), self._parallelism, row_seconds, self.task_overhead)
        self.resolved_chunksize = size
        return [Chunk(tuple(part)) for part in even_chunks(tasks, size, self._parallelism)]

    def median_row_seconds(self) -> float | None:
        """The median time of the rows run so far (None before any)."""
        return float(np.nanmedian(self.row_seconds)) if self.n_timed else None

    # -- the loop ------------------------------------------------------------
    def run(self, submit: Submit, parallelism: int) -> None:
        """Run every row: the ``body`` of the backend's ``run_call``."""
        if not self.tasks:
            return
        self._submit_fn = submit
        self._parallelism = max(1, int(parallelism))
        self._start()
        try:
            while self.pending or self.queued or self.suspects:
                if not self.pending and not self.queued:
                    self._run_next_suspect_alone()
                    continue
                for future in wait_first(self.pending):
                    chunk = self.pending.pop(future, None)
                    if chunk is not None:  # else cancelled by fail fast meanwhile
                        self._take(future, chunk)
                self._after_probe()
                self._fill()
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
                f"probpipe lost track of rows {missing[:10]} of {self.info.func}() on backend "
                f"{self.info.backend!r}; this is a bug, please report it"
            )

    def cancel_pending(self) -> None:
        self.queued.clear()
        pending, self.pending = list(self.pending), {}
        for future in pending:
            future.cancel()

    def _take(self, future: cf.Future, chunk: Chunk) -> None:
        """Record one finished chunk (submitting retries or splits as needed)."""
        try:
            result: ChunkResult = future.result()
        except Exception as exc:  # the engine failed the whole task (or cancelled it)
            self._chunk_lost(chunk, exc)
            return
        for key, count in result.per_worker_builds.items():
            self.per_worker_builds[key] = self.per_worker_builds.get(key, 0) + count
        retry: list[RowTask] = []
        failed_rows = []
        good_rows, good_values = [], []
        by_row = {t.row: t for t in chunk.rows}
        for row, value, seconds in zip(result.rows, result.values, result.seconds):
            self.row_seconds[row] = seconds
            self.n_timed += 1
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
        self._retry(retry, chunk.attempt)

    def _run_next_suspect_alone(self) -> None:
        task, attempt = self.suspects.pop(0)
        if self.stop_row is not None and task.row > self.stop_row:
            return  # failing fast: the call raises anyway
        self._submit([Chunk((task,), attempt, alone=True)])

    def _chunk_lost(self, chunk: Chunk, exc: Exception) -> None:
        """The engine failed a whole chunk: its worker died, or the task itself failed.

        A row's own exception never gets here (``run_chunk`` catches it), so
        a failure that is not a lost worker (the workers cannot import the
        function, say) is the same for every row: all of them get it.
        """
        if not self.is_worker_lost(exc):
            failure = RowFailure(exc, _format_tb(exc))
            retry = [t for t in chunk.rows if self._row_failed(t, failure, chunk.attempt)]
            self._report(chunk, [t.row for t in chunk.rows])
            self._retry(retry, chunk.attempt)
            return
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
            return
        task = chunk.rows[0]
        if not chunk.alone:
            # A dying worker can take down the other tasks queued on it (Dask),
            # so a lost row is only a suspect: it is re-run once more alone,
            # after everything else, and blamed only if it dies again.
            self.suspects.append((task, chunk.attempt))
            return
        lost = WorkerLostError(
            f"row {task.row} of {self.info.func}(): its worker process died on backend "
            f"{self.info.backend!r} ({type(exc).__name__}: {exc})"
        )
        lost.__cause__ = exc
        failure = RowFailure(lost, _format_tb(lost))
        retry = [task] if self._row_failed(task, failure, chunk.attempt) else []
        self._report(chunk, [task.row])
        self._retry(retry, chunk.attempt)

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
        doomed = [f for f, chunk in self.pending.items() if chunk.rows[0].row > row]
        for future in doomed:
            del self.pending[future]
            future.cancel()
        self.queued = deque(c for c in self.queued if c.rows[0].row <= row)
        if self._waiting_for_probe:
            self._waiting_for_probe = [t for t in self._waiting_for_probe if t.row < row]

    def _retry(self, tasks: list[RowTask], attempt: int) -> None:
        if tasks:
            self._submit(self._chunks_of(tasks, self.resolved_chunksize or 1, attempt + 1))

    # -- telling observers ---------------------------------------------------------
    def _report(self, chunk: Chunk, failed_rows: list[int]) -> None:
        """Tell observers about the chunk's rows no beacon has reported yet."""
        self._announce([t.row for t in chunk.rows], chunk.attempt, failed_rows)

    def rows_reported(self, rows: list[int], attempt: int, failed: list[int]) -> None:
        """A worker's beacon: a batch of rows finished (called on the beacon thread)."""
        self._announce(rows, attempt, failed)

    def _announce(self, rows: list[int], attempt: int, failed: list[int]) -> None:
        """Tell observers about the rows of this attempt not yet told (once each)."""
        with self._report_lock:
            candidates = np.asarray(rows, dtype=np.int64)
            new = candidates[self._reported[candidates] < attempt]
            self._reported[new] = attempt
        if len(new):
            fresh = set(new.tolist())
            self.hook.probpipe_rows_finished(
                call=self.info, rows=new.tolist(), failed=[r for r in failed if r in fresh]
            )

    def summary(self, seed: int | None, n_restored: int) -> CallSummary:
        failures = tuple(
            (f.row, type(f.exception).__name__, str(f.exception))
            for f in sorted(self.failures.values(), key=lambda f: f.row)
        )
        return CallSummary(
            self.info.func,
            self.info.backend,
            seed,
            len(self.done),
            self.n_chunks,
            self.resolved_chunksize,
            n_restored,
            failures,
        )


@dataclass(frozen=True)
class CallSummary:
    """What a finished call did, for engines that show calls (Prefect's final state, artifact)."""

    func: str
    backend: str
    seed: int | None
    n_rows: int
    n_chunks: int
    chunksize: int | None
    n_restored: int
    failures: tuple[tuple[int, str, str], ...]  # (row, exception type, message), by row

    def headline(self) -> str:
        """One line: all rows done, or how many failed and the first failure."""
        if not self.failures:
            return f"{self.n_rows} rows of {self.func}() done on {self.backend!r}"
        row, kind, message = self.failures[0]
        first = f"{kind}: {message}".strip().rstrip(":")
        if len(first) > 160:
            first = first[:157] + "..."
        return f"{len(self.failures)} of {self.n_rows} rows failed: {first} (row {row})"

    def markdown(self) -> str:
        """A small table of the call and its failures by row."""
        lines = [
            f"### probpipe call of `{self.func}()`",
            "",
            "| backend | seed | rows | chunks | chunksize | restored | failed |",
            "|---|---|---|---|---|---|---|",
            f"| {self.backend} | {self.seed} | {self.n_rows} | {self.n_chunks} "
            f"| {self.chunksize} | {self.n_restored} | {len(self.failures)} |",
        ]
        if self.failures:
            lines += ["", "| row | exception | message |", "|---|---|---|"]
            for row, kind, message in self.failures[:50]:
                text = message.replace("|", "\\|").replace("\n", " ")[:200]
                lines.append(f"| {row} | {kind} | {text} |")
            if len(self.failures) > 50:
                lines.append(f"| ... | {len(self.failures) - 50} more | |")
        return "\n".join(lines)


def _format_tb(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
