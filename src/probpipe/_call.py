"""Running one call: from a plan and a backend to a result with provenance.

``execute`` takes a planned call (see :mod:`probpipe._plan`) and a backend:

1. checks that everything shipped to other processes pickles (naming the
   argument that does not), before anything is dispatched;
2. restores finished rows from a checkpoint, if the call has one;
3. shares large constants and the call spec once (``backend.share``);
4. hands the rows to :class:`~probpipe._dispatch.Dispatch` (chunking, retries,
   fail fast, lost workers, order);
5. raises the lowest failing row's own exception, or assembles the result and
   its provenance.

Because each row's randomness comes from (seed, row) alone, none of this
changes any row's value.
"""

from __future__ import annotations

import platform
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ._callables import display_name, qualified_name
from ._dispatch import CallInfo, CallSummary, Dispatch
from ._per_worker import PerWorker
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
from ._session import Session, big_enough_to_share, new_call_id, session_for
from ._worker import pickle_error


def func_name(func: Any) -> str:
    """The function's module-qualified name for provenance (no memory addresses)."""
    return qualified_name(func)


# ---------------------------------------------------------------------------
# Before dispatch: picklability and sharing
# ---------------------------------------------------------------------------


def check_picklable(plan: CallPlan, fname: str, backend_name: str) -> None:
    """Raise TypeError naming the first argument that cannot be shipped."""
    spec = plan.spec
    fix = (
        "Make it picklable (module-level functions and classes; no open files, locks, "
        "sockets or live connections) or run on backend 'sequential'."
    )
    exc = pickle_error(spec.func)
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
        exc = pickle_error(value)
        if exc is not None:
            raise TypeError(
                f"argument {name!r} of {fname}() cannot be pickled, so backend "
                f"{backend_name!r} cannot send it to its workers: "
                f"{type(exc).__name__}: {exc}. {fix}"
            ) from exc
    for name, marker in plan.per_worker_args:
        exc = pickle_error(marker)
        if exc is not None:
            raise TypeError(
                f"per_worker argument {name!r} of {fname}() cannot be pickled, so backend "
                f"{backend_name!r} cannot send it to its workers: its factory "
                f"{marker.factory_name} or the arguments given to it fail with "
                f"{type(exc).__name__}: {exc}. The factory and its arguments travel to each "
                f"worker (the value it builds does not). {fix}"
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
# The whole call
# ---------------------------------------------------------------------------


def execute(wf: Any, plan: CallPlan, backend: Any) -> Any:
    """Run a planned broadcast/sweep call on ``backend`` and assemble the result."""
    from ._registry import registry

    options = wf.options
    fname = func_name(wf.func)
    # Engines' run names: Prefect refuses "<lambda>" and names holding addresses.
    short_name = display_name(wf.func)
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

    if options["timeout"] is not None and not session.flag("supports_timeout"):
        raise ValueError(
            f"timeout={options['timeout']!r} of {short_name}(): backend {backend_name!r} runs "
            "rows on worker threads, where a running row cannot be stopped safely. Use a "
            "backend that runs rows on a process's main thread (sequential, ray, "
            "prefect-ray), or drop timeout= and bound the work inside the function."
        )
    hook = registry.plugin_manager.hook
    info = CallInfo(
        call_id=new_call_id(),
        func=short_name,
        backend=backend_name,
        n_rows=plan.n_rows,
        n_cells=len(plan.cell_coords),
        options=options,
    )
    plan.spec.call_id = info.call_id
    plan.spec.portable_errors = ships
    plan.spec.timeout = options["timeout"]
    restored = plan.checkpoint.open() if plan.checkpoint is not None else {}
    beacon = None
    if wants_beacon(options):
        beacon = RowBeacon(info.call_id, lambda *batch: dispatch.rows_reported(*batch))
        plan.spec.beacon = beacon.address
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()

    session.ensure_started()
    plan.spec.session_id = session.id  # per-worker values are cached under it
    refs = _share_large_values(plan, session, fp) if ships else []
    spec_ref = session.share_once(plan.spec, f"call:{info.call_id}")
    dispatch = Dispatch(
        spec_ref,
        (*refs, spec_ref),
        [t for t in plan.tasks if t.row not in restored],
        chunksize=chunksize,
        on_error=options["on_error"],
        retries=options["retries"],
        info=info,
        hook=hook,
        n_rows=plan.n_rows,
        task_overhead=float(session.flag("task_overhead")),
        is_worker_lost=session.is_worker_lost,
        on_success=plan.checkpoint.write if plan.checkpoint is not None else None,
        known_row_seconds=session.row_seconds.get(fname),
    )
    for row, value in restored.items():
        dispatch.values[row] = value
        dispatch.done[row] = True
    hook.probpipe_map_started(call=info)
    if restored:
        hook.probpipe_rows_finished(call=info, rows=sorted(restored), failed=[])

    def body(submit: Any, parallelism: int) -> CallSummary:
        dispatch.run(submit, parallelism)
        if options["on_error"] == "raise" and dispatch.failures:
            # Raised inside the backend's scope, so the engine records the
            # call as failed (Prefect: a Failed flow run).
            raise _lowest_failure(dispatch, plan, short_name, backend_name)
        return dispatch.summary(plan.seed, len(restored))

    error: BaseException | None = None
    try:
        session.run_call(info, body)
    except KeyboardInterrupt as exc:
        # Ctrl-C: outstanding work was cancelled. A backend whose rows run in
        # other processes is stopped too (a running row may ignore the
        # cancel); the next call starts it again. Rows on threads of this
        # process cannot be stopped, so closing would only wait for them.
        error = exc
        if ships:
            session.close(interrupted=exc)
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        median = dispatch.median_row_seconds()
        if median is not None:
            session.row_seconds[fname] = median
        if beacon is not None:
            beacon.close()
        hook.probpipe_map_finished(call=info, n_failed=len(dispatch.failures), error=error)

    seconds = time.perf_counter() - t0
    metadata = {
        "orchestrate": session.flag("provenance_tag"),
        "backend": backend_name,
        "backend_options": session.describe(),
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
        "n_retried_rows": int(np.count_nonzero(dispatch.attempts > 1)),
        "failures": [f.to_dict() for f in sorted(dispatch.failures.values(), key=lambda f: f.row)],
        "timeout": options["timeout"],
        "checkpoint": options["checkpoint"],
        "n_rows_restored": len(restored),
        "call_id": info.call_id,
        "started_at": started_at.isoformat(),
        "wall_seconds": round(seconds, 6),
        "versions": _versions(),
    }
    if plan.per_worker_args:
        metadata["per_worker"] = _per_worker_record(plan, dispatch.per_worker_builds)
    return _build_result(plan, dispatch, metadata, parents, mode)


def _per_worker_record(plan: CallPlan, builds: dict[str, int]) -> list[dict[str, Any]]:
    """Provenance of each per-worker argument: name, factory, fingerprint, builds."""
    return [
        {
            "name": name,
            "factory": marker.factory_name,
            "fingerprint": marker.fingerprint,
            "builds": builds.get(marker.fingerprint, 0),
        }
        for name, marker in plan.per_worker_args
    ]


def _lowest_failure(dispatch: Dispatch, plan: CallPlan, fname: str, backend: str) -> BaseException:
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


def _versions() -> dict[str, str]:
    from ._version import __version__

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
        elif isinstance(value, PerWorker):
            kind, digest = "per_worker", value.fingerprint
        else:
            kind, digest = type(value).__qualname__, fp(value)
        ref = value if mode is ProvenanceMode.FULL else None
        parents.append(Parent(name=name, type=kind, fingerprint=digest, ref=ref))
    return parents


def _build_result(
    plan: CallPlan,
    dispatch: Dispatch,
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
