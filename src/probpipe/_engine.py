"""The execution engine: one place for chunking, dispatch, order, retries and errors.

``execute`` takes a planned call and a backend and:

1. checks that everything shipped to other processes pickles (naming the
   argument that does not), before anything is dispatched;
2. shares large constants and the call spec once (``backend.share``);
3. groups rows into chunks (``chunksize`` int, or ``"auto"``: measure the
   first rows, then size chunks to carry well above the per-task overhead
   while keeping a few chunks per worker);
4. maps chunks on the backend and gathers them in completion order, putting
   every row back in its place;
5. applies the error policy: a failed row is re-run ``retries`` times with
   the same seed; then ``on_error="raise"`` cancels what has not started and
   raises the lowest failing row's own exception, ``"collect"`` keeps the
   good rows and records each failure. A chunk whose worker is lost is split
   and re-run so one bad row cannot take its neighbours down with it;
6. assembles the result and its provenance.

Because each row's randomness comes from (seed, row) alone, none of this
changes any row's value.
"""

from __future__ import annotations

import math
import platform
import statistics
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ._backend import (
    Session,
    big_enough_to_share,
    iter_chunks,
    new_call_id,
    session_for,
)
from ._errors import WorkerLostError
from ._plan import CallPlan
from ._progress import RowBeacon, wants_beacon
from ._provenance import (
    Parent,
    Provenance,
    ProvenanceMode,
    fingerprint,
    provenance_config,
)
from ._results import SweepResult, assemble
from ._worker import Chunk, ChunkResult, RowFailure, RowTask, WorkItem, run_item

# Auto chunking: each chunk should carry at least this much work, and at
# least this many multiples of the backend's per-task overhead ...
MIN_CHUNK_SECONDS = 0.2
OVERHEAD_MULTIPLE = 20
# ... while leaving this many chunks per worker so the load stays balanced.
CHUNKS_PER_WORKER = 4


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


def func_name(func: Any) -> str:
    module = getattr(func, "__module__", None) or "?"
    return f"{module}.{getattr(func, '__qualname__', repr(func))}"


def auto_chunksize(n_rows: int, parallelism: int, row_seconds: float, overhead: float) -> int:
    """Rows per chunk: enough work per task to dwarf overhead, enough tasks to balance."""
    target = max(MIN_CHUNK_SECONDS, OVERHEAD_MULTIPLE * overhead)
    by_cost = math.ceil(target / max(row_seconds, 1e-7))
    by_balance = math.ceil(n_rows / (CHUNKS_PER_WORKER * max(parallelism, 1)))
    return max(1, min(by_cost, by_balance))


# ---------------------------------------------------------------------------
# Before dispatch: picklability and sharing
# ---------------------------------------------------------------------------


def _pickle_error(obj: Any) -> Exception | None:
    import cloudpickle

    try:
        # Out-of-band buffers are not copied, so large arrays cost nothing here.
        cloudpickle.dumps(obj, protocol=5, buffer_callback=lambda buf: None)
    except Exception as exc:
        return exc
    return None


def check_picklable(plan: CallPlan, fname: str, backend_name: str) -> None:
    """Raise TypeError naming the first argument that cannot be shipped."""
    spec = plan.spec
    fix = (
        "Make it picklable (module-level functions and classes; no open files, locks, "
        "sockets or live connections) or run on backend 'sequential'."
    )
    exc = _pickle_error(spec.func)
    if exc is not None:
        raise TypeError(
            f"function {fname}() cannot be pickled, so backend {backend_name!r} cannot "
            f"send it to its workers: {type(exc).__name__}: {exc}. {fix}"
        ) from exc
    candidates: list[tuple[str, Any]] = []
    for name, value in spec.arguments.items():
        candidates.append((name, value))
    for (_slot, root_index, _), name in zip(spec.dist_slots, plan.broadcast_args):
        candidates.append((name, spec.root_shared[root_index]))
        if plan.tasks:
            candidates.append((name, plan.tasks[0].tokens[root_index]))
    for cell in spec.cells:
        for name, value in zip(plan.sweep_args, cell):
            candidates.append((name, value))
    for name, value in candidates:
        exc = _pickle_error(value)
        if exc is not None:
            raise TypeError(
                f"argument {name!r} of {fname}() cannot be pickled, so backend "
                f"{backend_name!r} cannot send it to its workers: "
                f"{type(exc).__name__}: {exc}. {fix}"
            ) from exc


class _Fingerprints:
    """Content fingerprints computed at most once per object per call."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Any, str]] = {}

    def __call__(self, obj: Any) -> str:
        hit = self._memo.get(id(obj))
        if hit is None:
            hit = (obj, fingerprint(obj))
            self._memo[id(obj)] = hit
        return hit[1]


def _share_large_values(plan: CallPlan, session: Session, fp: _Fingerprints) -> list[Any]:
    """Replace large constants and distribution sources by shared handles."""
    spec = plan.spec
    refs = []

    def shared(value: Any) -> Any:
        if not big_enough_to_share(value):
            return value
        refs.append(session.share(value, fp(value)))
        return refs[-1]

    spec.arguments = {name: shared(value) for name, value in spec.arguments.items()}
    spec.root_shared = tuple(shared(value) for value in spec.root_shared)
    spec.cells = tuple(tuple(shared(value) for value in cell) for cell in spec.cells)
    return refs


# ---------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------


class _Dispatch:
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
        self._submit(self._chunks_of(tasks[:parallelism], 1))
        self._waiting_for_probe = list(tasks[parallelism:])
        self._parallelism = parallelism

    def _after_probe(self) -> bool:
        if not self._waiting_for_probe or not self.row_seconds:
            return False
        rest, self._waiting_for_probe = self._waiting_for_probe, []
        self.resolved_chunksize = auto_chunksize(
            len(rest),
            self._parallelism,
            statistics.median(self.row_seconds),
            float(self.session.flag("task_overhead")),
        )
        if self.stop_row is not None:
            rest = [t for t in rest if t.row < self.stop_row]
        self._submit(self._chunks_of(rest, self.resolved_chunksize))
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
        """The engine failed the whole chunk (worker died, result unpicklable...)."""
        lost_worker = self.session.method("is_worker_lost")(exc)
        if lost_worker and len(chunk.rows) == 1 and not chunk.alone:
            # A dying worker can take down the other tasks queued on it (Dask),
            # so a lost row is only a suspect: it is re-run once more alone,
            # after everything else, and blamed only if it dies again.
            self.suspects.append((chunk.rows[0], chunk.attempt))
            return False
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
        if lost_worker:
            lost = WorkerLostError(
                f"row {task.row} of {self.fname}(): its worker process died on backend "
                f"{self.backend_name!r} ({type(exc).__name__}: {exc})"
            )
            lost.__cause__ = exc
            exc = lost
        failure = RowFailure(exc, _format_tb(exc))
        retry = [task] if self._row_failed(task, failure, chunk.attempt) else []
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


# ---------------------------------------------------------------------------
# The whole call
# ---------------------------------------------------------------------------


def execute(wf: Any, plan: CallPlan, backend: Any) -> Any:
    """Run a planned broadcast/sweep call on ``backend`` and assemble the result."""
    from ._registry import registry

    options = wf.options
    fname = func_name(wf.func)
    short_name = getattr(wf.func, "__name__", fname)
    session = session_for(backend)
    backend_name = getattr(backend, "name", type(backend).__name__)
    ships = bool(session.flag("ships_to_processes"))
    if ships:
        check_picklable(plan, short_name, backend_name)

    chunksize = options["chunksize"]
    if chunksize is None:
        chunksize = session.flag("default_chunksize")
    mode = provenance_config.mode
    fp = _Fingerprints()
    parents = _parents(plan, fp, mode)

    hook = registry.plugin_manager.hook
    info = CallInfo(
        call_id=new_call_id(),
        func=short_name,
        backend=backend_name,
        n_rows=plan.n_rows,
        n_cells=len(plan.cell_coords),
        options=dict(options),
    )
    plan.spec.call_id = info.call_id
    plan.spec.portable_errors = ships
    plan.spec.timeout = options["timeout"]
    if options["timeout"] is not None and not session.flag("supports_timeout"):
        _warn_cooperative_timeout(backend_name)
    restored = plan.checkpoint.open() if plan.checkpoint is not None else {}
    beacon = None
    if wants_beacon(options):
        beacon = RowBeacon(info.call_id, lambda *row: dispatch.row_reported(*row))
        plan.spec.beacon = beacon.address
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()

    session.ensure_started()
    refs = _share_large_values(plan, session, fp) if ships else []
    spec_ref = session.method("share")(plan.spec, f"call:{info.call_id}")
    dispatch = _Dispatch(
        session,
        spec_ref,
        (*refs, spec_ref),
        [t for t in plan.tasks if t.row not in restored],
        chunksize=chunksize,
        on_error=options["on_error"],
        retries=options["retries"],
        info=info,
        hook=hook,
        fname=short_name,
        backend_name=backend_name,
        n_rows=plan.n_rows,
        on_success=plan.checkpoint.write if plan.checkpoint is not None else None,
    )
    for row, value in restored.items():
        dispatch.values[row] = value
        dispatch.done[row] = True
    hook.probpipe_map_started(call=info)
    if restored:
        info.rows_done += len(restored)
        hook.probpipe_rows_finished(call=info, rows=sorted(restored), failed=[])
    error: BaseException | None = None
    try:
        with session.method("call_scope")(info):
            dispatch.run()
            if options["on_error"] == "raise" and dispatch.failures:
                # Raised inside the scope, so the engine records the call as
                # failed (Prefect: a Failed flow run).
                raise _lowest_failure(dispatch, plan, short_name, backend_name)
    except KeyboardInterrupt as exc:
        # Ctrl-C: outstanding work was cancelled; stop everything this
        # backend started too. The next call starts it again.
        error = exc
        session.close()
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        if beacon is not None:
            beacon.close()
        hook.probpipe_map_finished(call=info, n_failed=len(dispatch.failures), error=error)

    seconds = time.perf_counter() - t0
    metadata = {
        "orchestrate": session.flag("provenance_tag"),
        "backend": backend_name,
        "backend_options": _describe(session),
        "func": fname,
        "n_samples": options["n_broadcast_samples"],
        "n_rows": plan.n_rows,
        "seed": plan.seed,
        "seed_source": plan.seed_source,
        "chunksize": dispatch.resolved_chunksize,
        "chunksize_requested": options["chunksize"],
        "n_chunks": dispatch.n_chunks,
        "broadcast_args": plan.broadcast_args,
        "sweep_args": plan.sweep_args,
        "on_error": options["on_error"],
        "retries": options["retries"],
        "n_retried_rows": sum(1 for a in dispatch.attempts.values() if a > 1),
        "failures": [f.to_dict() for f in sorted(dispatch.failures.values(), key=lambda f: f.row)],
        "timeout": options["timeout"],
        "checkpoint": options["checkpoint"],
        "n_rows_restored": len(restored),
        "call_id": info.call_id,
        "started_at": started_at.isoformat(),
        "wall_seconds": round(seconds, 6),
        "versions": _versions(),
    }
    return _build_result(plan, dispatch, metadata, parents, mode)


def _lowest_failure(dispatch: _Dispatch, plan: CallPlan, fname: str, backend: str) -> BaseException:
    """The exception to raise: the lowest failing row's own, with a note naming the row."""
    failure = dispatch.failures[min(dispatch.failures)]
    exc = failure.exception
    where = f"row {failure.row} of {fname}()"
    if plan.is_sweep:
        cell = plan.tasks[failure.row].cell
        where += f" (sweep cell {plan.cell_coords[cell]})"
    note = f"probpipe: raised by {where} on backend {backend!r}"
    if failure.attempts > 1:
        note += f" after {failure.attempts} attempts"
    if failure.worker:
        note += f", worker {failure.worker}"
    if exc.__traceback__ is None and failure.traceback:
        note += ".\nWorker traceback:\n" + failure.traceback.rstrip()
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    return exc


_warned_timeout: set[str] = set()


def _warn_cooperative_timeout(backend_name: str) -> None:
    if backend_name in _warned_timeout:
        return
    _warned_timeout.add(backend_name)
    warnings.warn(
        f"backend {backend_name!r} runs rows on worker threads, where timeout= can stop a "
        "row only while it runs Python code: a row blocked inside a C extension call or "
        "time.sleep finishes that call first. Backends that run rows on a process's main "
        "thread (sequential, ray, prefect-ray) interrupt those too.",
        RuntimeWarning,
        stacklevel=4,
    )


def _describe(session: Session) -> Any:
    try:
        return session.method("describe")()
    except Exception as exc:  # provenance must not fail a finished call
        return {"describe_error": repr(exc)}


def _versions() -> dict[str, str]:
    from . import __version__

    return {
        "probpipe": __version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _parents(plan: CallPlan, fp: _Fingerprints, mode: ProvenanceMode) -> list[Parent]:
    if mode is ProvenanceMode.OFF:
        return []
    from ._plan import Sweep

    parents = []
    for name, value in plan.inputs.items():
        if isinstance(value, Sweep):
            kind, digest = "sweep", fingerprint(value.values)
        else:
            kind, digest = type(value).__qualname__, fp(value)
        ref = value if mode is ProvenanceMode.FULL else None
        parents.append(Parent(name=name, type=kind, fingerprint=digest, ref=ref))
    return parents


def _build_result(
    plan: CallPlan,
    dispatch: _Dispatch,
    metadata: dict[str, Any],
    parents: list[Parent],
    mode: ProvenanceMode,
) -> Any:
    off = mode is ProvenanceMode.OFF
    n = plan.n_per_cell
    cells = []
    for c, coords in enumerate(plan.cell_coords):
        rows = range(c * n, (c + 1) * n)
        good = [r for r in rows if dispatch.done[r]]
        if plan.has_distributions:
            cell_meta = (
                metadata
                if not plan.is_sweep
                else {
                    **metadata,
                    "cell": c,
                    "coords": coords,
                    "n_rows": n,
                    "failures": [f for f in metadata["failures"] if f["row"] in rows],
                }
            )
            prov = None if off else Provenance("broadcast", parents, cell_meta)
            cells.append(assemble([dispatch.values[r] for r in good], prov))
        else:  # a sweep of plain calls: each cell is the function's own value
            cells.append(dispatch.values[c] if good else None)
    if not plan.is_sweep:
        return cells[0]
    prov = (
        None
        if off
        else Provenance(
            "sweep",
            parents,
            {
                **metadata,
                "sweep_shape": list(plan.sweep_shape),
                "n_cells": len(cells),
                "coords": plan.cell_coords,
            },
        )
    )
    return SweepResult(cells, plan.cell_coords, plan.sweep_shape, prov)
