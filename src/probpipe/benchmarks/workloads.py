"""The benchmark workloads: row functions, sizes, and how each runner calls them.

The row functions are module-level and depend on NumPy (and probpipe.models)
only, so every engine's worker processes import them by reference from the
installed package instead of receiving pickled code.

Every row function has two spellings:

* ``name(item, **const)`` for the raw-engine baselines: ``item`` is the row's
  index or seed, ``const`` the values every row shares (see baselines.py);
* ``name_row(...)`` for probpipe: a broadcast argument drawn from a
  distribution (and ``rng`` where the row needs randomness), so the call goes
  through probpipe's whole path (sampling, planning, chunking, assembly).

Both spellings do the same work per row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .baselines import BASELINES

# ---------------------------------------------------------------------------
# Row functions (run on the workers)
# ---------------------------------------------------------------------------


def inc(x: float) -> float:
    """The trivial row (W1, W4, W6): everything measured around it is overhead."""
    return x + 1.0


_RHO = 0.9  # correlation of the 2-D Gaussian target
_BLOCK = 8192  # proposals drawn per NumPy call; keeps memory flat for long chains


def metropolis(rng: np.random.Generator, n_iter: int, start: float = 0.0) -> np.ndarray:
    """Random-walk Metropolis on a correlated 2-D Gaussian (the W2 row).

    Proposals and uniforms are drawn by NumPy in blocks; the accept/reject
    loop is scalar arithmetic in Python, so it holds the GIL the whole time:
    threads cannot run two of these at once, processes can. The loop only
    makes floats, which the cyclic garbage collector does not track, so the
    row costs the same in a small process and in one holding a large object
    graph (Prefect's): W2 measures parallelism, not the collector.
    Returns (mean x, mean y, acceptance rate).
    """
    c = 0.5 / (1.0 - _RHO * _RHO)
    x, y = float(start), -float(start)
    log_p = -c * (x * x - 2.0 * _RHO * x * y + y * y)
    sum_x = sum_y = 0.0
    accepted = 0
    done = 0
    while done < n_iter:
        n = min(_BLOCK, n_iter - done)
        steps = rng.standard_normal((2, n)) * 0.8
        # Flat lists of floats, not a list of pairs: no container per iteration.
        dxs, dys = steps[0].tolist(), steps[1].tolist()
        log_us = np.log(rng.random(n)).tolist()
        for dx, dy, lu in zip(dxs, dys, log_us):
            px = x + dx
            py = y + dy
            log_p_new = -c * (px * px - 2.0 * _RHO * px * py + py * py)
            if lu < log_p_new - log_p:
                x = px
                y = py
                log_p = log_p_new
                accepted += 1
            sum_x += x
            sum_y += y
        done += n
    return np.array([sum_x / n_iter, sum_y / n_iter, accepted / n_iter])


def _timed_metropolis(rng: np.random.Generator, n_iter: int, start: float) -> np.ndarray:
    # The row's own duration rides along as a 4th value: summed over a call
    # and divided by the call's wall time it gives the parallelism the runner
    # achieved, which does not depend on how fast the (shared) CPU was then.
    t0 = time.perf_counter()
    chain = metropolis(rng, n_iter, start)
    return np.append(chain, time.perf_counter() - t0)


def mcmc(seed: int, n_iter: int) -> np.ndarray:
    """W2, raw spelling: one chain seeded by its row number."""
    return _timed_metropolis(np.random.default_rng(seed), n_iter, 0.0)


def mcmc_row(start: float, rng: np.random.Generator, n_iter: int) -> np.ndarray:
    """W2, probpipe spelling: the chain starts at a broadcast draw."""
    return _timed_metropolis(rng, n_iter, start)


def touch(i: int, arr: np.ndarray) -> float:
    """W3, raw spelling: trivial work on a large shared array."""
    return float(arr[i % arr.size]) + i


def touch_row(x: float, arr: np.ndarray) -> float:
    """W3, probpipe spelling."""
    return float(arr[0]) + x


def fit_replicate(seed: int, X: np.ndarray, y: np.ndarray, n_iter: int) -> Any:
    """W5, raw spelling: resample the launches, fit one logistic posterior."""
    from probpipe.models import fit_logistic

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), len(y))
    return fit_logistic(X[idx], y[idx], rng=rng, n_iter=n_iter)


def fit_row(X: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_iter: int) -> Any:
    """W5, probpipe spelling: X and y are one bootstrap replicate's columns."""
    from probpipe.models import fit_logistic

    return fit_logistic(X, y, rng=rng, n_iter=n_iter)


def challenger_standardized() -> tuple[np.ndarray, np.ndarray]:
    """The Challenger launches with temperature standardized (W5's data)."""
    from probpipe.models import load_challenger

    data = load_challenger()
    temp = data["temperature_f"]
    return (temp - temp.mean()) / temp.std(), data["distress"]


def calibrate_mcmc(row_seconds: float) -> dict[str, Any]:
    """Iterations for one W2 row to take about ``row_seconds`` on this machine.

    Times a short chain, scales, then times the scaled chain and corrects once
    more; takes the fastest of three timings each time because the machine is
    noisy and interruptions only ever make a run slower.
    """

    def seconds(n: int) -> float:
        best = float("inf")
        for seed in range(3):
            t0 = time.perf_counter()
            mcmc(seed, n)
            best = min(best, time.perf_counter() - t0)
        return best

    n = 20_000
    n = max(1000, round(n * row_seconds / seconds(n)))
    measured = seconds(n)
    n = max(1000, round(n * row_seconds / measured))
    return {"n_iter": n, "row_seconds_target": row_seconds, "row_seconds_measured": seconds(n)}


# ---------------------------------------------------------------------------
# Workloads: sizes and the two ways to run one call
# ---------------------------------------------------------------------------


# Warm-up calls run at most this many rows: enough to start the engine and
# every worker (2 here), cheap enough not to double a case's run time.
WARMUP_ROWS = 8


@dataclass
class Prepared:
    """One workload at concrete sizes, ready to run in a benchmark subprocess.

    ``probpipe_call(i, light)`` runs call number ``i`` on probpipe's active
    backend; ``raw_args(i, light)`` gives ``(fn, items, const)`` for a raw
    baseline to map. ``light=True`` asks for the warm-up version of the call:
    the same functions and arguments, but less work (fewer rows, or shorter
    rows), since it only has to start the engine, its workers and imports.
    """

    rows: int
    probpipe_call: Callable[[int, bool], Any]
    raw_args: Callable[[int, bool], tuple[Callable[..., Any], list[Any], dict[str, Any]]]
    result_nbytes: Callable[[Any], int] = lambda result: 0
    # seconds each row took, measured inside the row (W2), or None
    row_seconds: Callable[[Any], list[float] | None] = lambda result: None


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    measures: str
    sizes: dict[str, Any]
    quick: dict[str, Any]
    # raw baselines that apply (probpipe backends always apply)
    raw: tuple[str, ...]
    prepare: Callable[[dict[str, Any], str], Prepared] = field(repr=False)
    # W4: the first call is measured, not discarded as a warm-up
    first_call_counts: bool = False


def _n_rows(result: Any) -> int:
    for attr in ("samples", "components", "items"):
        if hasattr(result, attr):
            return len(getattr(result, attr))
    return len(result)


def checked(call: Callable[[int, bool], Any], rows: int) -> Callable[..., Any]:
    """Wrap a call so that a wrong number of rows is an error, not a fast time."""

    def run(i: int, light: bool = False) -> Any:
        result = call(i, light)
        if not light and _n_rows(result) != rows:
            raise RuntimeError(f"expected {rows} rows, got {_n_rows(result)}")
        return result

    return run


class _Broadcast:
    """A workflow function at the workload's size and at the warm-up size."""

    def __init__(self, func: Callable[..., Any], rows: int, light_rows: int | None = None):
        import probpipe as pp

        # A fixed seed: every runner computes the very same rows.
        self.full = pp.WorkflowFunction(func, n_broadcast_samples=rows, seed=2026)
        self.light = self.full.with_options(n_broadcast_samples=light_rows or rows)

    def __call__(self, light: bool, *args: Any, **kwargs: Any) -> Any:
        return (self.light if light else self.full)(*args, **kwargs)


def _trivial(sizes: dict[str, Any], rows_key: str = "rows") -> Prepared:
    import probpipe as pp

    rows = int(sizes[rows_key])
    light_rows = min(rows, WARMUP_ROWS)
    wf = _Broadcast(inc, rows, light_rows)
    x = pp.Uniform(0.0, 1.0)
    return Prepared(
        rows=rows,
        probpipe_call=lambda i, light: wf(light, x),
        raw_args=lambda i, light: (inc, list(range(light_rows if light else rows)), {}),
        result_nbytes=lambda result: int(np.asarray(getattr(result, "samples", result)).nbytes),
    )


def _prepare_w1(sizes: dict[str, Any], runner: str) -> Prepared:
    # Raw Prefect task.map runs one task run per row: out of process ~60 ms
    # each (2,000 rows would take ~2 min per call), and 2,000 thread-runner
    # tasks at once overload Prefect's temporary API (503 Service Unavailable).
    # These run fewer rows; the metric is per row.
    key = "raw_prefect_rows" if runner in RAW_PREFECT_RUNNERS else "rows"
    return _trivial(sizes, key)


def _prepare_w2(sizes: dict[str, Any], runner: str) -> Prepared:
    import probpipe as pp

    rows, n_iter = int(sizes["rows"]), int(sizes["n_iter"])
    wf = _Broadcast(mcmc_row, rows)
    start = pp.Normal(0.0, 1.0)

    def iters(light: bool) -> int:
        # Every row, so every worker starts; each row 20x shorter.
        return max(1000, n_iter // 20) if light else n_iter

    return Prepared(
        rows=rows,
        probpipe_call=lambda i, light: wf(light, start, n_iter=iters(light)),
        raw_args=lambda i, light: (mcmc, list(range(rows)), {"n_iter": iters(light)}),
        row_seconds=lambda result: np.asarray(getattr(result, "samples", result))[:, 3].tolist(),
    )


def _prepare_w3(sizes: dict[str, Any], runner: str) -> Prepared:
    import probpipe as pp

    rows = int(sizes["rows"])
    light_rows = min(rows, WARMUP_ROWS)
    arr = np.random.default_rng(0).random(int(sizes["mb"] * 2**20) // 8)
    wf = _Broadcast(touch_row, rows, light_rows)
    x = pp.Uniform(0.0, 1.0)

    def fresh(i: int) -> np.ndarray:
        # New content for every call, so every call ships the array (probpipe
        # would otherwise reuse the copy it shared for equal content).
        arr[0] = float(i)
        return arr

    return Prepared(
        rows=rows,
        probpipe_call=lambda i, light: wf(light, x, arr=fresh(i)),
        raw_args=lambda i, light: (
            touch,
            list(range(light_rows if light else rows)),
            {"arr": fresh(i)},
        ),
    )


def _prepare_w5(sizes: dict[str, Any], runner: str) -> Prepared:
    import probpipe as pp

    rows, n_iter = int(sizes["replicates"]), int(sizes["n_iter"])
    X, y = challenger_standardized()
    launches = pp.Record(name="challenger", X=X, y=y)
    boot = pp.BootstrapReplicateDistribution(launches)
    wf = _Broadcast(fit_row, rows)

    def iters(light: bool) -> int:
        return max(200, n_iter // 10) if light else n_iter

    def call(i: int, light: bool) -> Any:
        result = wf(light, boot["X"], boot["y"], n_iter=iters(light))
        if not isinstance(result, pp.MixtureDistribution):
            raise TypeError(f"expected a MixtureDistribution, got {type(result).__name__}")
        return result

    return Prepared(
        rows=rows,
        probpipe_call=call,
        raw_args=lambda i, light: (
            fit_replicate,
            list(range(rows)),
            {"X": X, "y": y, "n_iter": iters(light)},
        ),
    )


# Raw baselines with one Prefect task run per row.
RAW_PREFECT_RUNNERS = ("raw-prefect", "raw-prefect-dask", "raw-prefect-ray")
# Those whose per-task cost is tens of milliseconds and whose start-up (a
# temporary Prefect API in every worker process) takes about a minute.
SLOW_RAW_RUNNERS = ("raw-prefect-dask", "raw-prefect-ray")

ALL_RAW = tuple(BASELINES)

WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload(
            key="W1",
            title="per-row overhead",
            measures=(
                "2,000 trivial rows (x + 1) in one call; per-row overhead in ms = "
                "(T_runner - T_plain_loop) / rows"
            ),
            sizes={"rows": 2000, "raw_prefect_rows": 200},
            quick={"rows": 200, "raw_prefect_rows": 50},
            raw=ALL_RAW,
            prepare=_prepare_w1,
        ),
        Workload(
            key="W2",
            title="CPU-bound rows",
            measures=(
                "16 rows of random-walk Metropolis (~0.5 s each, GIL-bound); "
                "speedup over probpipe's sequential backend"
            ),
            sizes={"rows": 16, "row_seconds": 0.5},
            quick={"rows": 8, "row_seconds": 0.1},
            raw=ALL_RAW,
            prepare=_prepare_w2,
        ),
        Workload(
            key="W3",
            title="data shipping",
            measures=(
                "16 rows that all read one 50 MB float64 array passed as a concrete "
                "argument; ratio to the raw ray.put-once pattern"
            ),
            sizes={"rows": 16, "mb": 50},
            quick={"rows": 8, "mb": 10},
            raw=ALL_RAW,
            prepare=_prepare_w3,
        ),
        Workload(
            key="W4",
            title="repeated calls",
            measures=(
                "the same 16 trivial rows called 5 times on one backend: the first "
                "call (engine start included) and the median of calls 2..5"
            ),
            sizes={"rows": 16, "calls": 5},
            quick={"rows": 8, "calls": 3},
            raw=ALL_RAW,
            prepare=lambda sizes, runner: _trivial(sizes),
            first_call_counts=True,
        ),
        Workload(
            key="W5",
            title="bagged posterior",
            measures=(
                "BootstrapReplicateDistribution over the Challenger launches, one "
                "fit_logistic per replicate, 32 replicates -> MixtureDistribution; "
                "speedup over sequential"
            ),
            sizes={"replicates": 32, "n_iter": 4000},
            quick={"replicates": 8, "n_iter": 1000},
            raw=("raw-loop",),
            prepare=_prepare_w5,
        ),
        Workload(
            key="W6",
            title="many rows, memory",
            measures=(
                "100,000 trivial rows in one call: wall time, peak RSS of the driver "
                "process and the result's size (samples.nbytes)"
            ),
            sizes={"rows": 100_000},
            quick={"rows": 10_000},
            raw=("raw-loop",),
            prepare=lambda sizes, runner: _trivial(sizes),
        ),
    )
}
