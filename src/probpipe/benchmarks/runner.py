"""Run every (workload, runner) case in a fresh subprocess and collect the results.

Parent side (:func:`run_benchmarks`): plans the cases, calibrates W2, starts
one subprocess per case (``python -m probpipe.benchmarks.runner CASE.json``)
with a timeout, and after each one makes sure every process it started is
gone. Engines never share a process, so one engine's threads, caches or
leftovers cannot slow another down, and a crash costs one cell of the table.

Child side (:func:`child_main`): starts the backend or raw engine, runs a
warm-up call and ``repeats`` timed calls (W4: ``calls`` calls, the first one
timed from before the engine starts), and writes a JSON result. Timing
happens in the child, around the call only.

Every process started for a run carries ``PROBPIPE_BENCH_TAG`` in its
environment (engines pass the environment on to their workers and servers),
so stragglers can be found with psutil and stopped by pid: those of one case
when it ends, and those of the whole run at the end (with a warning).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from datetime import UTC, datetime
from importlib import metadata, util
from pathlib import Path
from typing import Any

TAG_VAR = "PROBPIPE_BENCH_TAG"

# Display order of probpipe's own backends; plugins' come after them.
PROBPIPE_ORDER = ("sequential", "prefect", "prefect-dask", "prefect-ray", "ray")

# Seconds to let an engine's processes exit by themselves after its case ends.
EXIT_GRACE = 20.0
# How often the harness samples the machine's load while a case runs.
LOAD_SAMPLE_S = 1.0
# Metropolis iterations of the CPU speed probe (~40 ms).
CPU_PROBE_ITERATIONS = 200_000


# ---------------------------------------------------------------------------
# Child: one case
# ---------------------------------------------------------------------------


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _call_details(result: Any) -> dict[str, Any]:
    """Chunking as probpipe resolved it, from the result's provenance."""
    meta = getattr(getattr(result, "provenance", None), "metadata", None) or {}
    return {k: meta[k] for k in ("chunksize", "n_chunks") if k in meta}


def _n_rows(result: Any) -> int:
    for attr in ("samples", "components", "items"):
        if hasattr(result, attr):
            return len(getattr(result, attr))
    return len(result)


def digest(value: Any) -> str:
    """A short hash of a result's numbers: equal digests, bit-identical results."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if hasattr(obj, "components"):
            for part in (*obj.components, obj.weights):
                feed(part)
        elif hasattr(obj, "samples"):
            feed(obj.samples)
        elif isinstance(obj, np.ndarray | float | int):
            arr = np.asarray(obj)
            h.update(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes())
        else:
            h.update(repr(getattr(obj, "items", obj)).encode())

    feed(value)
    return h.hexdigest()[:16]


def _run_case(case: dict[str, Any], save: Any) -> dict[str, Any]:
    """Warm-up jobs, then every timed step; one summary per series of steps."""
    from .baselines import BASELINES
    from .workloads import WORKLOADS

    runner = case["runner"]
    out: dict[str, Any] = {"rss_start_mb": round(_rss_mb(), 1)}
    prepared = WORKLOADS[case["workload"]].prepare(case["sizes"], runner, case["repeats"])
    if runner in BASELINES:
        engine = context = BASELINES[runner]()
    else:
        import probpipe as pp

        engine, context = None, pp.use_backend(runner)  # scoped: stops when the block exits

    def call(job: Any, i: int) -> Any:
        result = engine.map(*job.raw(i)) if engine is not None else job.probpipe(i)
        if _n_rows(result) != job.rows:  # a broken runner must not post a fast time
            raise RuntimeError(f"expected {job.rows} rows, got {_n_rows(result)}")
        return result

    t_begin = time.perf_counter()
    with context:
        out["enter_s"] = time.perf_counter() - t_begin
        if prepared.warmup:
            t0 = time.perf_counter()
            for job in prepared.warmup:
                call(job, 0)
            out["warmup_s"] = time.perf_counter() - t0 + out["enter_s"]
        series: dict[str, dict[str, Any]] = {}
        for i, (name, job) in enumerate(prepared.steps, 1):
            t0 = time.perf_counter()
            result = call(job, i)
            seconds = time.perf_counter() - t0
            s = series.setdefault(name, {"times_s": [], "parallelism": [], "row_mean_s": []})
            s["times_s"].append(seconds)
            rows_s = prepared.row_seconds(result)
            if rows_s:
                s["parallelism"].append(sum(rows_s) / seconds)
                s["row_mean_s"].append(statistics.fmean(rows_s))
            # From the series' last call; sizes grow along W8's series, so the
            # peak RSS so far is the peak of the largest call so far.
            s.update(
                rows=job.rows,
                result_mb=_nbytes(result) / 2**20,
                peak_rss_mb=round(_peak_rss_mb(), 1),
                # Raw baselines seed rows their own way: only probpipe's must agree.
                digest=digest(prepared.comparable(result)) if engine is None else None,
                **_call_details(result),
            )
            del result
            # After every call: a case stopped by its timeout (a 1M-row call,
            # say) still shows the calls it made.
            save({**out, "series": _summaries(series), "status": "partial"})
        out["series"] = _summaries(series)
        # Save before the engine stops: a hang on the way out keeps the numbers.
        save({**out, "status": "ok"})
        t_exit = time.perf_counter()
    out["exit_s"] = time.perf_counter() - t_exit
    return out


def _summaries(series: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each series with the medians of its calls."""
    out = {}
    for name, s in series.items():
        out[name] = {**s, "median_s": statistics.median(s["times_s"])}
        for key in ("parallelism", "row_mean_s"):
            out[name][key] = statistics.median(s[key]) if s[key] else None
    return out


def _nbytes(result: Any) -> int:
    samples = getattr(result, "samples", None)
    return int(getattr(samples, "nbytes", 0))


def _prewarm(case: dict[str, Any], save: Any) -> dict[str, Any]:
    """Create and migrate the run's Prefect database once, before anything is timed."""
    import probpipe as pp

    from .workloads import inc

    t0 = time.perf_counter()
    with pp.use_backend("prefect"):
        pp.WorkflowFunction(inc, n_broadcast_samples=2, seed=0)(pp.Uniform(0.0, 1.0))
    return {"seconds": time.perf_counter() - t0}


def child_main(case_file: str) -> int:
    case = json.loads(Path(case_file).read_text())
    result_file = Path(case["result_file"])
    base = {"workload": case["workload"], "runner": case["runner"], "pid": os.getpid()}

    def save(data: dict[str, Any]) -> None:
        tmp = result_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({**base, **data}, default=float))
        tmp.replace(result_file)

    try:
        run = _prewarm if case["workload"] == "prewarm" else _run_case
        out = run(case, save)
    except BaseException as exc:
        measured = json.loads(result_file.read_text()) if result_file.exists() else {}
        if measured.get("status") == "ok":
            # Measured fine, failed while stopping: keep the numbers, say so.
            measured["teardown_error"] = f"{type(exc).__name__}: {exc}"
            save(measured)
        else:  # keeping the calls made before the error, if any
            save(
                {
                    **measured,
                    "status": "error",
                    "error": f"{type(exc).__name__}: {exc}".strip(),
                    "traceback": traceback.format_exc(),
                }
            )
        traceback.print_exc()
        return 1
    save({**out, "status": "ok"})
    return 0


# ---------------------------------------------------------------------------
# Parent: processes we started, and stopping them
# ---------------------------------------------------------------------------


def _tagged(prefix: str) -> list[Any]:
    """Live processes whose environment carries a tag starting with ``prefix``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        if proc.pid == os.getpid():
            continue
        try:
            tag = proc.environ().get(TAG_VAR, "")
            if tag.startswith(prefix) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue  # gone, or not ours to read
    return found


def _describe(proc: Any) -> str:
    try:
        cmd = " ".join(proc.cmdline())[:110]
        return f"pid {proc.pid} {proc.name()}: {cmd}"
    except Exception:
        return f"pid {proc.pid}"


def _stop_tagged(prefix: str, grace: float) -> list[str]:
    """Wait up to ``grace`` s for tagged processes to exit; stop the rest by pid."""
    import psutil

    deadline = time.monotonic() + grace
    left = _tagged(prefix)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _tagged(prefix)
    if not left:
        return []
    names = [_describe(p) for p in left]
    for proc in left:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(left, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return names


class OtherLoad:
    """CPU used by processes that are not part of a case, while the case runs.

    The machine is shared: when another job runs at the same time, a case's
    numbers say little. Every ``LOAD_SAMPLE_S`` the harness compares the
    machine's busy CPU time with the CPU time of the case's own processes
    (found by their tag); the difference, averaged over the case, is the
    other load in cores, recorded with the case and flagged in the report.
    """

    def __init__(self, prefix: str):
        import psutil

        self.prefix = prefix
        self.t0 = self.t_last = time.monotonic()
        self.busy_last = self._busy(psutil.cpu_times())
        self.ours: dict[tuple[int, float], float] = {}  # (pid, create time) -> cpu s
        self.other_s = 0.0

    @staticmethod
    def _busy(times: Any) -> float:
        fields = ("user", "nice", "system", "irq", "softirq")
        return sum(getattr(times, name, 0.0) for name in fields)

    def sample(self) -> None:
        import psutil

        ours_delta = 0.0
        for proc in _tagged(self.prefix):
            try:
                key = (proc.pid, proc.create_time())
                cpu = proc.cpu_times()
                total = cpu.user + cpu.system
            except psutil.Error:
                continue
            ours_delta += total - self.ours.get(key, 0.0)
            self.ours[key] = total
        busy = self._busy(psutil.cpu_times())
        # Our processes that ended between samples are missed, which can only
        # make the other load look larger; never below zero.
        self.other_s += max(0.0, busy - self.busy_last - ours_delta)
        self.busy_last = busy
        self.t_last = time.monotonic()

    def cores(self) -> float | None:
        wall = self.t_last - self.t0
        return round(self.other_s / wall, 2) if wall > 0 else None


def _child_env(run_tag: str, case_tag: str, prefect_home: str) -> dict[str, str]:
    import probpipe

    env = dict(os.environ)
    # Self-contained: no user's server, cluster or default backend.
    for key in ("PREFECT_API_URL", "RAY_ADDRESS", "PROBPIPE_BACKEND"):
        env.pop(key, None)
    package_root = str(Path(probpipe.__file__).resolve().parents[1])
    env.update(
        {
            TAG_VAR: f"{run_tag}/{case_tag}",
            # The same probpipe in the children (and their engines' workers).
            "PYTHONPATH": os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")])),
            "RAY_USAGE_STATS_ENABLED": "0",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_HOME": prefect_home,
            # Ray on 127.0.0.1 (engine-figures P12); probpipe sets it itself too.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            # Engine logs at probpipe's default level for raw baselines too:
            # logging costs time, and both sides should pay the same.
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "RAY_LOGGER_LEVEL": "warning",
            "DASK_LOGGING__DISTRIBUTED": "warning",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def run_case(
    case: dict[str, Any], raw_dir: Path, run_tag: str, prefect_home: str, timeout: float
) -> dict[str, Any]:
    """Run one case in a fresh subprocess; always returns a result dict."""
    case_tag = f"{case['workload']}-{case['runner']}"
    result_file = raw_dir / f"{case_tag}.json"
    log_file = raw_dir / f"{case_tag}.log"
    case_file = raw_dir / f"{case_tag}.case.json"
    result_file.unlink(missing_ok=True)
    case_file.write_text(json.dumps({**case, "result_file": str(result_file)}))
    started = time.perf_counter()
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "probpipe.benchmarks.runner", str(case_file)],
            env=_child_env(run_tag, case_tag, prefect_home),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C reaches the harness, which stops it in order.
            start_new_session=True,
        )
        timed_out = False
        monitor = OtherLoad(f"{run_tag}/{case_tag}")
        try:
            deadline = time.monotonic() + timeout
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                time.sleep(LOAD_SAMPLE_S)
                monitor.sample()
        finally:
            if proc.poll() is None:
                proc.terminate()  # lets the child stop its engines
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    stragglers = _stop_tagged(f"{run_tag}/{case_tag}", EXIT_GRACE)
    try:
        result = json.loads(result_file.read_text())
    except (OSError, ValueError):
        result = {"workload": case["workload"], "runner": case["runner"], "status": "error"}
        result["error"] = f"no result (exit code {proc.returncode}); log: {_log_tail(log_file)}"
    if timed_out and result.get("status") != "ok":
        result["status"] = "error"
        result["error"] = f"timed out after {timeout:.0f} s"
    elif result.get("status") == "partial":  # the child died between two calls
        result["status"] = "error"
        result["error"] = (
            f"stopped after some calls (exit code {proc.returncode}); log: {_log_tail(log_file)}"
        )
    result["subprocess_s"] = time.perf_counter() - started
    result["other_cpu_cores"] = monitor.cores()
    result["log"] = str(log_file)
    if stragglers:
        result["stragglers_stopped"] = stragglers
    return result


# ---------------------------------------------------------------------------
# Parent: the whole run
# ---------------------------------------------------------------------------


class Patience:
    """How much a run may spend on a noisy machine: waiting for quiet, and re-runs.

    Per case at most ``per_case`` seconds of waiting; per run at most
    ``total`` seconds of waiting and ``reruns`` re-runs, so a machine that
    stays busy makes the run noisier (flagged in the report), not endless.
    """

    def __init__(self, per_case: float, total: float = 120.0, reruns: int = 4):
        self.per_case = per_case
        self.wait_left = total if per_case > 0 else 0.0
        self.reruns_left = reruns if per_case > 0 else 0


def cpu_probe() -> float:
    """Seconds for a fixed bit of single-threaded Python (median of 5, ~0.2 s in all).

    This machine is a VM: when the host is busy, the same code runs slower
    and no process here shows why. The probe, taken right before each case,
    lets the report flag cases that ran on a slow CPU.
    """
    from .workloads import mcmc

    times = []
    for seed in range(5):
        t0 = time.perf_counter()
        mcmc(seed, CPU_PROBE_ITERATIONS)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def wait_for_quiet(patience: Patience) -> float:
    """Wait until other processes use little CPU (within ``patience``); returns their load.

    Called between cases, when none of the run's processes are alive, so all
    the CPU in use is someone else's.
    """
    from .report import NOISY_CORES

    start = time.monotonic()
    deadline = start + min(patience.per_case, patience.wait_left)
    announced = False
    while True:
        monitor = OtherLoad("-")  # a prefix no tag starts with: count everything
        time.sleep(1.0)
        monitor.sample()
        load = monitor.cores() or 0.0
        if load <= NOISY_CORES or time.monotonic() >= deadline:
            patience.wait_left -= max(0.0, time.monotonic() - start - 1.0)
            return load
        if not announced:
            print(
                f"(waiting for the machine: other load {load:.2f} cores) ...", end=" ", flush=True
            )
            announced = True


def _run_measured(
    case: dict[str, Any],
    raw_dir: Path,
    run_tag: str,
    prefect_home: str,
    timeout: float,
    patience: Patience,
) -> dict[str, Any]:
    """One case, started on a quiet machine if possible; re-run once if it was disturbed.

    The machine is shared and small: another job starting mid-case can double a
    time. A disturbed case is run a second time and the less disturbed of the
    two attempts is kept (both are in the result).
    """
    from .report import NOISY_CORES

    attempts = []
    while True:
        before = wait_for_quiet(patience) if patience.per_case > 0 else None
        probe = cpu_probe()
        result = run_case(case, raw_dir, run_tag, prefect_home, timeout)
        result["other_cpu_cores_before"] = before
        result["cpu_probe_s"] = probe
        attempts.append(result)
        other = result.get("other_cpu_cores") or 0.0
        if result.get("status") != "ok" or other <= NOISY_CORES:
            break
        if len(attempts) > 1 or patience.reruns_left <= 0:
            break
        patience.reruns_left -= 1
        print(f"(disturbed: other load {other:.2f} cores; again) ...", end=" ", flush=True)
    best = min(attempts, key=lambda r: (r.get("status") != "ok", r.get("other_cpu_cores") or 0.0))
    if len(attempts) > 1:
        best["attempts"] = [{k: r.get(k) for k in ("status", "other_cpu_cores")} for r in attempts]
    return best


def discover_runners() -> tuple[list[str], list[str]]:
    """(installed probpipe backends, raw baselines whose engines are installed)."""
    import probpipe as pp

    infos = pp.available_backends()
    installed = [n for n, info in infos.items() if info.installed]
    backends = [n for n in PROBPIPE_ORDER if n in installed]
    backends += sorted(n for n in installed if n not in PROBPIPE_ORDER)
    from .baselines import BASELINES

    raw = [n for n, cls in BASELINES.items() if all(util.find_spec(m) for m in cls.requires)]
    return backends, raw


def parallel_backends(backends: list[str]) -> list[str]:
    """Backends that run rows in other processes: the ones that can use both cores.

    ``sequential`` and ``prefect`` (Prefect's thread pool, one worker by
    default) run rows in the driver and are not expected to speed anything up.
    """
    from probpipe._registry import registry

    parallel = []
    for name in backends:
        try:
            cls = registry.lookup(name)
        except Exception:
            continue
        if getattr(cls, "ships_to_processes", True):
            parallel.append(name)
    return parallel


def machine_info() -> dict[str, Any]:
    import psutil

    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in (
        *("probpipe", "probpipe-ray", "numpy", "prefect", "prefect-dask", "prefect-ray"),
        *("ray", "dask", "distributed", "cloudpickle", "matplotlib"),
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "cpu": model,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def plan_cases(
    workloads: list[str], runners: list[str], *, trim_slow: bool, named: bool, parallel: list[str]
) -> list[tuple[str, str, str, str]]:
    """(workload, runner, "run" | "n/a" | "skipped", why) for every pair, in run order.

    ``trim_slow`` (--quick without --runners): the two raw Prefect baselines
    with out-of-process runners cost about a minute per case, mostly start-up;
    they run W1 only, where their per-task cost is the point. ``named``: the
    runners were named in --runners, so a workload's default backends do not
    limit them.
    """
    import probpipe as pp

    from .baselines import BASELINES
    from .workloads import SLOW_RAW_RUNNERS, WORKLOADS

    plan = []
    for key in workloads:
        w = WORKLOADS[key]
        for runner in runners:
            what, why = "run", ""
            if runner in BASELINES:
                if runner not in w.raw:
                    what = "n/a"
                elif trim_slow and runner in SLOW_RAW_RUNNERS and key != "W1":
                    what, why = "skipped", "--quick runs the slowest raw baselines on W1 only"
            elif w.needs and not hasattr(pp, w.needs):
                what, why = "skipped", f"this probpipe has no pp.{w.needs}"
            elif w.backends == "parallel" and runner not in parallel:
                what = "n/a"
            elif isinstance(w.backends, tuple) and runner not in w.backends and not named:
                what, why = (
                    "skipped",
                    f"runs on {', '.join(w.backends)} unless --runners names others",
                )
            plan.append((key, runner, what, why))
    return plan


def _fmt_case(result: dict[str, Any]) -> str:
    if result.get("status") != "ok":
        return f"ERROR {result.get('error', '?')}".splitlines()[0][:160]
    series = result.get("series", {})
    parts = [f"{name or 'median'} {s['median_s']:.3f} s" for name, s in series.items()]
    chunks = {s.get("chunksize") for s in series.values()} - {None}
    if chunks:
        parts.append(f"chunksize {', '.join(map(str, sorted(chunks)))}")
    rss = max((s.get("peak_rss_mb") or 0 for s in series.values()), default=0)
    if rss:
        parts.append(f"peak RSS {rss:.0f} MB")
    return ", ".join(parts)


def run_benchmarks(
    *,
    workloads: list[str],
    runners: list[str],
    sizes: dict[str, dict[str, Any]],
    repeats: int,
    quick: bool,
    trim_slow: bool,
    named: bool,
    out_dir: Path,
    timeout: float,
    quiet_wait: float,
    argv: list[str],
) -> dict[str, Any]:
    """Run the plan, write results.json (as it goes) and return the data."""
    from . import report
    from .workloads import WORKLOADS, calibrate_mcmc

    out_dir.mkdir(parents=True, exist_ok=True)
    raw_dir = out_dir / "raw"
    raw_dir.mkdir(exist_ok=True)
    run_tag = uuid.uuid4().hex[:12]
    prefect_home = tempfile.mkdtemp(prefix="probpipe-bench-prefect-")
    known_backends, _ = discover_runners()
    t_run = time.perf_counter()
    data: dict[str, Any] = {
        "meta": {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "probpipe bench " + " ".join(argv),
            "quick": quick,
            "trim_slow": trim_slow,
            "repeats": repeats,
            "timeout_s": timeout,
            "quiet_wait_s": quiet_wait,
            "workloads": workloads,
            "runners": runners,
            "installed_backends": known_backends,
            "parallel_backends": parallel_backends(known_backends),
            "sizes": sizes,
            "machine": machine_info(),
            "load_average_start": list(os.getloadavg()),
        },
        "cases": [],
    }

    def save() -> None:
        (out_dir / "results.json").write_text(json.dumps(data, indent=1, default=float))

    if "W2" in workloads and "n_iter" not in sizes["W2"]:
        print(f"calibrating W2 for {sizes['W2']['row_seconds']} s per row ...", flush=True)
        cal = calibrate_mcmc(float(sizes["W2"]["row_seconds"]))
        sizes["W2"]["n_iter"] = cal["n_iter"]
        data["meta"]["mcmc_calibration"] = cal
        print(
            f"  W2 rows: {cal['n_iter']:,} Metropolis iterations "
            f"= {cal['row_seconds_measured']:.3f} s per row",
            flush=True,
        )

    patience = Patience(quiet_wait)
    plan = plan_cases(
        workloads,
        runners,
        trim_slow=trim_slow,
        named=named,
        parallel=data["meta"]["parallel_backends"],
    )
    todo = [p for p in plan if p[2] == "run"]
    print(
        f"{len(todo)} cases ({len(workloads)} workloads x {len(runners)} runners, "
        f"{sum(p[2] == 'n/a' for p in plan)} n/a, {sum(p[2] == 'skipped' for p in plan)} "
        f"skipped), each in a fresh subprocess; raw logs in {raw_dir}",
        flush=True,
    )
    try:
        if any("prefect" in r for r in runners):
            print("warming up the Prefect database (not timed) ...", flush=True)
            warm = run_case(
                {"workload": "prewarm", "runner": "prefect"},
                raw_dir,
                run_tag,
                prefect_home,
                timeout,
            )
            data["meta"]["prefect_prewarm"] = {
                k: warm.get(k) for k in ("status", "seconds", "error")
            }
            print(f"  {warm.get('status')} {warm.get('seconds') or 0:.1f} s", flush=True)
        done = 0
        for key, runner, what, why in plan:
            if what != "run":
                data["cases"].append(
                    {"workload": key, "runner": runner, "status": what, "why": why}
                )
                continue
            done += 1
            print(f"[{done:>2}/{len(todo)}] {key} {runner:<17} ...", end=" ", flush=True)
            if runner not in known_backends and not runner.startswith("raw-"):
                result = {
                    "workload": key,
                    "runner": runner,
                    "status": "error",
                    "error": f"backend {runner!r} is not installed",
                }
            else:
                case = {"workload": key, "runner": runner, "sizes": sizes[key], "repeats": repeats}
                # A workload may need longer (W8's million rows on a slow backend).
                limit = max(timeout, WORKLOADS[key].min_timeout_s)
                result = _run_measured(case, raw_dir, run_tag, prefect_home, limit, patience)
            data["cases"].append(result)
            wall = result.get("subprocess_s", 0.0)
            other = result.get("other_cpu_cores")
            load = f", other load {other:.2f} cores" if other is not None else ""
            print(f"{_fmt_case(result)}  ({wall:.1f} s{load})", flush=True)
            for line in result.get("stragglers_stopped", []):
                print(f"    warning: stopped a leftover process: {line}", flush=True)
            save()
    finally:
        leftovers = _stop_tagged(run_tag, grace=2.0)
        if leftovers:
            print("WARNING: processes started by this run were still alive; stopped:")
            for line in leftovers:
                print(f"  {line}")
        data["meta"]["leftover_processes"] = leftovers
        data["meta"]["load_average_end"] = list(os.getloadavg())
        data["meta"]["duration_s"] = time.perf_counter() - t_run
        shutil.rmtree(prefect_home, ignore_errors=True)
        save()

    report.write_report(data, out_dir)
    return data


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
