"""The benchmark workloads: row functions, sizes, and the calls each case times.

The row functions are module-level and depend on NumPy (and probpipe.models)
only, so every engine's worker processes import them by reference from the
installed package instead of receiving pickled code.

A workload row has two spellings:

* ``name(item, **const)`` for the raw-engine baselines: ``item`` is the row's
  index or seed, ``const`` the values every row shares (see baselines.py);
* ``name_row(...)`` for probpipe: a broadcast argument drawn from a
  distribution (and ``rng`` where the row needs randomness), so the call goes
  through probpipe's whole path (sampling, planning, chunking, assembly).

Both spellings do the same work per row. A :class:`Job` is one call in both
spellings; a workload prepares its warm-up jobs and its timed steps (a named
series of jobs: W1 has one series, W8 one per size, W7 one per way of
building the rows' setup).
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
    """The trivial row (W1, W4, W8): everything measured around it is overhead."""
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


def slow_setup(seconds: float, tag: int = 0) -> dict[str, float]:
    """W7: what every row needs first, e.g. a model loaded from disk.

    It waits rather than computes (loading is mostly I/O), so the 2 cores
    stay free for the rows' work. ``tag`` makes a fresh value (a new
    fingerprint) for each call that should build it again.
    """
    time.sleep(seconds)
    return {"offset": 1.0}


def _busy(seconds: float) -> None:
    """Hold the CPU for ``seconds`` of wall time (a row's work, W7)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def setup_in_row(x: float, setup_s: float, work_s: float) -> float:
    """W7 without per-worker values: every row builds its setup itself."""
    model = slow_setup(setup_s)
    _busy(work_s)
    return x + model["offset"]


def setup_given(x: float, model: dict[str, float], work_s: float) -> float:
    """W7 with ``pp.per_worker``: the row receives the setup its worker built."""
    _busy(work_s)
    return x + model["offset"]


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
# Jobs: one call in both spellings
# ---------------------------------------------------------------------------


# Warm-up calls run at most this many rows: enough to start the engine and
# every worker (2 here), cheap enough not to double a case's run time.
WARMUP_ROWS = 8


@dataclass
class Job:
    """One call: ``probpipe(i)`` on the active backend, or ``raw(i)`` -> (fn, items, const).

    ``i`` numbers the case's calls (warm-up 0); W3 uses it to give every
    call new data. ``raw`` is None where no raw baseline applies.
    """

    rows: int
    probpipe: Callable[[int], Any]
    raw: Callable[[int], tuple[Callable[..., Any], list[Any], dict[str, Any]]] | None = None


@dataclass
class Prepared:
    """A workload at concrete sizes: the warm-up jobs, then the timed (series, job) steps."""

    warmup: list[Job]
    steps: list[tuple[str, Job]]
    # seconds each row took, measured inside the row (W2), or None
    row_seconds: Callable[[Any], list[float] | None] = lambda result: None
    # the part of a result that must be identical on every backend
    comparable: Callable[[Any], Any] = lambda result: result


def repeated(job: Job, repeats: int, series: str = "") -> list[tuple[str, Job]]:
    return [(series, job)] * repeats


def _broadcast(func: Callable[..., Any], rows: int, **options: Any) -> Any:
    import probpipe as pp

    # A fixed seed: every runner computes the very same rows.
    return pp.WorkflowFunction(func, n_broadcast_samples=rows, seed=2026, **options)


def trivial_job(rows: int, **options: Any) -> Job:
    """``rows`` trivial rows (``inc``); ``options`` go to the workflow function."""
    import probpipe as pp

    wf = _broadcast(inc, rows, **options)
    x = pp.Uniform(0.0, 1.0)
    return Job(rows, lambda i: wf(x), lambda i: (inc, list(range(rows)), {}))


def _light(rows: int) -> int:
    return min(rows, WARMUP_ROWS)


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------


def _prepare_w1(sizes: dict[str, Any], runner: str, repeats: int) -> Prepared:
    # Raw Prefect task.map runs one task run per row: out of process ~60 ms
    # each, and thousands of thread-runner tasks at once overload Prefect's
    # temporary API (503 Service Unavailable). These run fewer rows; the
    # metric is per row.
    rows = int(sizes["raw_prefect_rows" if runner in RAW_PREFECT_RUNNERS else "rows"])
    return Prepared([trivial_job(_light(rows))], repeated(trivial_job(rows), repeats))


def _prepare_w1p(sizes: dict[str, Any], runner: str, repeats: int) -> Prepared:
    # Off and on alternate in one process: both meet the same engine, the same
    # warm caches and (nearly) the same machine load.
    rows = int(sizes["rows"])
    off, on = (trivial_job(rows, progress=flag) for flag in (False, True))
    pairs = [step for _ in range(int(sizes["pairs"])) for step in (("off", off), ("on", on))]
    warmup = [trivial_job(_light(rows), progress=flag) for flag in (False, True)]
    return Prepared(warmup, pairs)


def _prepare_w2(sizes: dict[str, Any], runner: str, repeats: int) -> Prepared:
    import probpipe as pp

    rows, n_iter = int(sizes["rows"]), int(sizes["n_iter"])
    wf = _broadcast(mcmc_row, rows)
    start = pp.Normal(0.0, 1.0)

    def job(n: int) -> Job:
        return Job(
            rows, lambda i: wf(start, n_iter=n), lambda i: (mcmc, list(range(rows)), {"n_iter": n})
        )

    def samples(result: Any) -> np.ndarray:
        return np.asarray(getattr(result, "samples", result))

    return Prepared(
        # Every row, so every worker starts; each row 20x shorter.
        [job(max(1000, n_iter // 20))],
        repeated(job(n_iter), repeats),
        row_seconds=lambda result: samples(result)[:, 3].tolist(),
        comparable=lambda result: samples(result)[:, :3],  # not the row's own time
    )


def _prepare_w3(sizes: dict[str, Any], runner: str, repeats: int) -> Prepared:
    import probpipe as pp

    arr = np.random.default_rng(0).random(int(sizes["mb"] * 2**20) // 8)
    x = pp.Uniform(0.0, 1.0)

    def fresh(i: int) -> np.ndarray:
        # New content for every call, so every call ships the array (probpipe
        # would otherwise reuse the copy it shared for equal content).
        arr[0] = float(i)
        return arr

    def job(rows: int) -> Job:
        wf = _broadcast(touch_row, rows)
        return Job(
            rows,
            lambda i: wf(x, arr=fresh(i)),
            lambda i: (touch, list(range(rows)), {"arr": fresh(i)}),
        )

    rows = int(sizes["rows"])
    return Prepared([job(_light(rows))], repeated(job(rows), repeats))


def _prepare_w4(sizes: dict[str, Any], runner: str, repeats: int) -> Prepared:
    # No warm-up: the first call pays for starting the engine, and counts.
    return Prepared([], repeated(trivial_job(int(sizes["rows"])), int(sizes["calls"])))


def _prepare_w5(sizes: dict[str, Any], runner: str, repeats: int) -> Prepared:
    import probpipe as pp

    rows, n_iter = int(sizes["replicates"]), int(sizes["n_iter"])
    X, y = challenger_standardized()
    boot = pp.BootstrapReplicateDistribution(pp.Record(name="challenger", X=X, y=y))
    wf = _broadcast(fit_row, rows)

    def job(n: int) -> Job:
        def call(i: int) -> Any:
            result = wf(boot["X"], boot["y"], n_iter=n)
            if not isinstance(result, pp.MixtureDistribution):
                raise TypeError(f"expected a MixtureDistribution, got {type(result).__name__}")
            return result

        return Job(
            rows, call, lambda i: (fit_replicate, list(range(rows)), {"X": X, "y": y, "n_iter": n})
        )

    return Prepared([job(max(200, n_iter // 10))], repeated(job(n_iter), repeats))


def _prepare_w7(sizes: dict[str, Any], runner: str, repeats: int) -> Prepared:
    import probpipe as pp

    rows, setup_s, work_s = int(sizes["rows"]), float(sizes["setup_s"]), float(sizes["work_s"])
    x = pp.Uniform(0.0, 1.0)
    in_row = _broadcast(setup_in_row, rows)
    given = _broadcast(setup_given, rows)

    def per_worker(tag: Callable[[int], int]) -> Job:
        return Job(
            rows,
            lambda i: given(x, model=pp.per_worker(slow_setup, setup_s, tag=tag(i)), work_s=work_s),
        )

    return Prepared(
        [trivial_job(WARMUP_ROWS)],  # starts the engine and its workers; builds nothing
        [
            *repeated(
                Job(rows, lambda i: in_row(x, setup_s=setup_s, work_s=work_s)),
                repeats,
                "in every row",
            ),
            # A new tag each call (the call's number): each call builds once per worker.
            *repeated(per_worker(lambda i: i), repeats, "per_worker, built"),
            # The tag of the last call above: the values its workers built are reused.
            *repeated(per_worker(lambda i: 2 * repeats), repeats, "per_worker, reused"),
        ],
    )


def _prepare_w8(sizes: dict[str, Any], runner: str, repeats: int) -> Prepared:
    steps = []
    for rows in sorted(int(n) for n in sizes["rows"] if int(n) <= int(sizes["max_rows"])):
        # One call at the largest sizes: 1M trivial rows take long enough to time once.
        steps += repeated(trivial_job(rows), repeats if rows <= 100_000 else 1, str(rows))
    return Prepared([trivial_job(WARMUP_ROWS)], steps)


# Raw baselines with one Prefect task run per row.
RAW_PREFECT_RUNNERS = ("raw-prefect", "raw-prefect-dask", "raw-prefect-ray")
# Those whose per-task cost is tens of milliseconds and whose start-up (a
# temporary Prefect API in every worker process) takes about a minute.
SLOW_RAW_RUNNERS = ("raw-prefect-dask", "raw-prefect-ray")


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    measures: str
    sizes: dict[str, Any]
    quick: dict[str, Any]
    prepare: Callable[[dict[str, Any], str, int], Prepared] = field(repr=False)
    # raw baselines that apply
    raw: tuple[str, ...] = tuple(BASELINES)
    # probpipe backends it runs on by default: "all", "parallel" (those that
    # run rows in other processes), or names (others only when named in --runners)
    backends: str | tuple[str, ...] = "all"
    # the probpipe function it needs, for a probpipe that may predate it
    needs: str | None = None
    # seconds a case may take at least, whatever --timeout says
    min_timeout_s: float = 0.0


WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload(
            key="W1",
            title="per-row overhead",
            measures=(
                "500 trivial rows (x + 1) in one call; per-row overhead in ms = "
                "(T_runner - T_plain_loop) / rows"
            ),
            sizes={"rows": 500, "raw_prefect_rows": 200},
            quick={"rows": 200, "raw_prefect_rows": 50},
            prepare=_prepare_w1,
        ),
        Workload(
            key="W1P",
            title="progress bar cost",
            measures=(
                "W1's 500 trivial rows with progress=False and progress=True, calls "
                "alternating in one process; cost = median on / median off - 1"
            ),
            sizes={"rows": 500, "pairs": 10},
            quick={"rows": 200, "pairs": 3},
            prepare=_prepare_w1p,
            raw=(),
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
            prepare=_prepare_w3,
        ),
        Workload(
            key="W4",
            title="repeated calls",
            measures=(
                "the same 4 trivial rows called 5 times on one backend: the first "
                "call (engine start included) and the later calls"
            ),
            sizes={"rows": 4, "calls": 5},
            quick={"rows": 4, "calls": 3},
            prepare=_prepare_w4,
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
            prepare=_prepare_w5,
            raw=("raw-loop",),
        ),
        Workload(
            key="W7",
            title="per-worker setup",
            measures=(
                "16 rows that each need a 2 s setup (sleep) and 0.25 s of CPU work: the "
                "setup built in every row, with pp.per_worker (built once per worker), "
                "and with pp.per_worker values reused by later calls"
            ),
            sizes={"rows": 16, "setup_s": 2.0, "work_s": 0.25},
            quick={"rows": 4, "setup_s": 0.5, "work_s": 0.05},
            prepare=_prepare_w7,
            raw=(),
            backends="parallel",
            needs="per_worker",
        ),
        Workload(
            key="W8",
            title="scale",
            measures=(
                "1k, 10k, 100k and 1M trivial rows in one call each (sizes above "
                "max_rows left out): time per row and the driver's peak RSS"
            ),
            sizes={"rows": [1000, 10_000, 100_000, 1_000_000], "max_rows": 1_000_000},
            quick={"rows": [1000, 10_000], "max_rows": 10_000},
            prepare=_prepare_w8,
            raw=("raw-loop",),
            backends=("sequential", "ray", "prefect-ray"),
            min_timeout_s=1200.0,
        ),
    )
}
