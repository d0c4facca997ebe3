"""Turn a run's results into results.md (tables, targets) and one PNG per workload.

Every ratio is computed from cases measured in the same run: speedups against
the ``sequential`` backend, W3 against the raw ``ray.put``-once pattern, W1
overhead against the plain loop. Nothing here measures anything.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .workloads import WORKLOADS

# Targets from the issue.
W1_MAX_MS = 1.0
W1_NATIVE_RAY_MAX_RATIO = 1.5
W2_MIN_SPEEDUP = 1.8
W3_MAX_RATIO = 2.0
W4_MAX_LATER_S = 1.5
W6_RSS_SLACK_MB = 300.0

# A case is flagged when other processes used more than this many cores
# on average while it ran (the machine is shared; see runner.OtherLoad).
NOISY_CORES = 0.3
# ... or when the CPU speed probe before it ran this much slower than the
# run's fastest probe (the host is busy; see runner.cpu_probe).
SLOW_CPU = 0.75
NOISY_MARK = " (!)"

PROBPIPE_COLOR = "#3b75af"
RAW_COLOR = "#e6862e"


class Results:
    """Lookup and derived metrics over one run's cases."""

    def __init__(self, data: dict[str, Any]):
        self.meta = data["meta"]
        self.cases = {(c["workload"], c["runner"]): c for c in data["cases"]}
        self.runners = list(self.meta["runners"])
        self.workloads = list(self.meta["workloads"])
        probes = [c["cpu_probe_s"] for c in self.cases.values() if c.get("cpu_probe_s")]
        self.best_probe = min(probes, default=None)

    def cpu_speed(self, case: dict[str, Any] | None) -> float | None:
        """CPU speed before ``case``, relative to the fastest seen in the run (1.0)."""
        if not case or not case.get("cpu_probe_s") or not self.best_probe:
            return None
        return self.best_probe / case["cpu_probe_s"]

    def noisy(self, case: dict[str, Any] | None) -> bool:
        """Another job used the CPU during the case, or the CPU was slow before it."""
        if not case:
            return False
        speed = self.cpu_speed(case)
        return (case.get("other_cpu_cores") or 0.0) > NOISY_CORES or (
            speed is not None and speed < SLOW_CPU
        )

    def case(self, workload: str, runner: str) -> dict[str, Any] | None:
        return self.cases.get((workload, runner))

    def ok(self, workload: str, runner: str) -> dict[str, Any] | None:
        case = self.case(workload, runner)
        if case and case.get("status") == "ok" and case.get("median_s") is not None:
            return case
        return None

    # -- derived metrics (None when an input is missing) -------------------
    def overhead_ms(self, runner: str) -> float | None:
        """W1: per-row time above the plain loop's, in ms."""
        case, loop = self.ok("W1", runner), self.ok("W1", "raw-loop")
        if not case or not loop:
            return None
        return (case["median_s"] / case["rows"] - loop["median_s"] / loop["rows"]) * 1e3

    def ratio(self, workload: str, runner: str, reference: str) -> float | None:
        """T_runner / T_reference for the same workload."""
        case, ref = self.ok(workload, runner), self.ok(workload, reference)
        if not case or not ref or not ref["median_s"]:
            return None
        # W1 rows differ for the slowest raw runners: compare per row.
        return (case["median_s"] / case["rows"]) / (ref["median_s"] / ref["rows"])

    def speedup(self, workload: str, runner: str) -> float | None:
        ratio = self.ratio(workload, runner, "sequential")
        return 1.0 / ratio if ratio else None

    def rss_limit_mb(self, runner: str) -> float | None:
        case = self.ok("W6", runner)
        if not case:
            return None
        return 2.0 * case.get("result_mb", 0.0) + W6_RSS_SLACK_MB


def _fmt(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:{spec}}{unit}"


def _sig(value: float) -> str:
    """Three significant digits, without scientific notation for the usual range."""
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def _status_cell(res: Results, workload: str, runner: str) -> str | None:
    """'n/a', 'error', 'not run' for cells without a measurement, else None."""
    case = res.case(workload, runner)
    if case is None:
        return "not run"
    if case["status"] in ("n/a", "skipped"):
        return case["status"]
    if case["status"] != "ok":
        return "**error**"
    return None


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def summary_cell(res: Results, workload: str, runner: str) -> str:
    text = _summary_value(res, workload, runner)
    return text + NOISY_MARK if res.noisy(res.ok(workload, runner)) else text


def _summary_value(res: Results, workload: str, runner: str) -> str:
    status = _status_cell(res, workload, runner)
    if status:
        return status
    case = res.ok(workload, runner)
    if workload == "W1":
        if runner == "raw-loop":
            return f"{case['median_s'] * 1e3 / case['rows']:.4f} ms/row (ref)"
        return f"{_fmt(res.overhead_ms(runner), '.3f')} ms/row"
    if workload in ("W2", "W5"):
        return f"{case['median_s']:.2f} s ({_fmt(res.speedup(workload, runner), '.2f')}x)"
    if workload == "W3":
        if runner == "raw-ray":
            return f"{case['median_s']:.3f} s (ref)"
        return f"{case['median_s']:.3f} s ({_fmt(res.ratio('W3', runner, 'raw-ray'), '.2f')}x)"
    if workload == "W4":
        return f"{case['first_call_s']:.2f} s / {case['median_s']:.3f} s"
    if workload == "W6":
        return f"{case['median_s']:.2f} s, {case['peak_rss_mb']:.0f} MB"
    return f"{case['median_s']:.3f} s"


SUMMARY_HEADERS = {
    "W1": "W1 overhead per row",
    "W2": "W2 s (speedup)",
    "W3": "W3 s (x ray.put)",
    "W4": "W4 first / later call",
    "W5": "W5 s (speedup)",
    "W6": "W6 s, peak RSS",
}


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def summary_table(res: Results) -> list[str]:
    headers = ["runner", *(SUMMARY_HEADERS.get(w, w) for w in res.workloads)]
    rows = [[f"`{r}`", *(summary_cell(res, w, r) for w in res.workloads)] for r in res.runners]
    return _table(headers, rows)


def target_rows(res: Results) -> list[list[str]]:
    """[target, runner, measured, limit, result] for every target of the issue."""
    rows: list[list[str]] = []
    installed = set(res.meta.get("installed_backends", []))

    def check(text, workload, runner, measured, limit, passed, unit=""):
        if workload not in res.workloads or runner not in res.runners:
            why = "not installed" if runner not in installed else "not selected"
            rows.append([text, f"`{runner}`", "-", limit, why])
            return
        status = _status_cell(res, workload, runner)
        if status or measured is None:
            rows.append([text, f"`{runner}`", status or "-", limit, "not measured"])
            return
        verdict = "**pass**" if passed else "**MISS**"
        rows.append([text, f"`{runner}`", f"{measured}{unit}", limit, verdict])

    for runner in ("prefect-ray", "prefect-dask"):
        ms = res.overhead_ms(runner)
        check(
            "W1 per-row overhead <= 1 ms",
            "W1",
            runner,
            _fmt(ms, ".3f"),
            "1 ms",
            ms is not None and ms <= W1_MAX_MS,
            " ms",
        )
    ratio = res.ratio("W1", "ray", "raw-ray")
    check(
        "W1 native ray <= 1.5x raw ray.get",
        "W1",
        "ray",
        _fmt(ratio, ".2f"),
        "1.5x",
        ratio is not None and ratio <= W1_NATIVE_RAY_MAX_RATIO,
        "x",
    )
    parallel = [r for r in res.meta.get("parallel_backends", []) if r in res.runners]
    for runner in parallel or ["prefect-dask", "prefect-ray", "ray"]:
        sp = res.speedup("W2", runner)
        check(
            "W2 speedup >= 1.8x over sequential",
            "W2",
            runner,
            _fmt(sp, ".2f"),
            "1.8x",
            sp is not None and sp >= W2_MIN_SPEEDUP,
            "x",
        )
    for runner in ("prefect-ray", "ray"):
        ratio = res.ratio("W3", runner, "raw-ray")
        check(
            "W3 within 2x of raw ray.put-once",
            "W3",
            runner,
            _fmt(ratio, ".2f"),
            "2x",
            ratio is not None and ratio <= W3_MAX_RATIO,
            "x",
        )
    for runner in ("prefect-ray", "prefect-dask"):
        case = res.ok("W4", runner)
        later = max(case["later_calls_s"]) if case and case.get("later_calls_s") else None
        check(
            "W4 every call after the first <= 1.5 s (slowest shown)",
            "W4",
            runner,
            _fmt(later, ".3f"),
            "1.5 s",
            later is not None and later <= W4_MAX_LATER_S,
            " s",
        )
    for runner in [r for r in res.runners if not r.startswith("raw-")]:
        case = res.ok("W6", runner)
        limit = res.rss_limit_mb(runner)
        check(
            "W6 peak RSS <= 2x result + 300 MB",
            "W6",
            runner,
            _fmt(case["peak_rss_mb"] if case else None, ".0f"),
            _fmt(limit, ".0f", " MB"),
            case is not None and limit is not None and case["peak_rss_mb"] <= limit,
            " MB",
        )
    return rows


def _times(case: dict[str, Any]) -> str:
    return ", ".join(f"{t:.3f}" for t in case.get("times_s", []))


def detail_table(res: Results, workload: str) -> list[str]:
    """Runners as rows, everything measured for this workload as columns."""
    metric = {
        "W1": "overhead ms/row",
        "W2": "speedup vs sequential",
        "W3": "x raw ray.put-once",
        "W4": "first call s",
        "W5": "speedup vs sequential",
        "W6": "peak RSS MB (limit)",
    }[workload]
    timed = "median of calls 2.. s" if workload == "W4" else "median s"
    headers = ["runner", "rows", timed, "timed calls s", metric, "chunksize (chunks)", "notes"]
    rows = []
    for runner in res.runners:
        case = res.case(workload, runner)
        status = _status_cell(res, workload, runner)
        if status in ("n/a", "skipped") or case is None:
            continue
        if status:
            error = (case.get("error") or "?").splitlines()[0].replace("|", "\\|")[:150]
            rows.append([f"`{runner}`", "", "", "", "", "", f"error: {error}"])
            continue
        if workload == "W1":
            value = _fmt(res.overhead_ms(runner), ".3f")
        elif workload in ("W2", "W5"):
            value = _fmt(res.speedup(workload, runner), ".2f")
        elif workload == "W3":
            value = _fmt(res.ratio("W3", runner, "raw-ray"), ".2f")
        elif workload == "W4":
            value = _fmt(case.get("first_call_s"), ".2f")
        else:
            value = f"{case['peak_rss_mb']:.0f} ({_fmt(res.rss_limit_mb(runner), '.0f')})"
        chunks = ""
        if case.get("chunksize") is not None:
            chunks = f"{case['chunksize']} ({case.get('n_chunks', '?')})"
        notes = []
        if case.get("warmup_s") is not None:
            notes.append(f"warm-up {case['warmup_s']:.2f} s")
        if workload == "W6":
            notes.append(f"result {case.get('result_mb', 0):.2f} MB")
            notes.append(f"RSS at start {case.get('rss_start_mb', 0):.0f} MB")
        if case.get("parallelism") is not None:
            notes.append(
                f"rows ran {case['parallelism']:.2f} at a time, {case['row_mean_s']:.2f} s each"
            )
        if res.noisy(case):
            notes.append(NOISY_MARK.strip())
        if case.get("other_cpu_cores") is not None:
            notes.append(f"other load {case['other_cpu_cores']:.2f} cores")
        speed = res.cpu_speed(case)
        if speed is not None:
            notes.append(f"CPU speed {speed:.2f}")
        if case.get("teardown_error"):
            notes.append(f"teardown error: {case['teardown_error'][:80]}")
        if case.get("stragglers_stopped"):
            notes.append(f"{len(case['stragglers_stopped'])} leftover processes stopped")
        rows.append(
            [
                f"`{runner}`",
                str(case.get("rows", "")),
                f"{case['median_s']:.3f}",
                _times(case),
                value,
                chunks,
                "; ".join(notes),
            ]
        )
    return _table(headers, rows)


def machine_lines(meta: dict[str, Any]) -> list[str]:
    m = meta["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    load = meta.get("load_average_start", [])
    load_end = meta.get("load_average_end", [])
    rows = [
        ["CPU", f"{m['cpu']}, {m['logical_cores']} logical cores"],
        ["RAM", f"{m['ram_gib']} GiB"],
        ["OS", m["os"]],
        ["Python", m["python"]],
        ["packages", versions],
        [
            "load average (1/5/15 min)",
            f"start {' / '.join(f'{x:.2f}' for x in load)}; "
            f"end {' / '.join(f'{x:.2f}' for x in load_end)}",
        ],
    ]
    return _table(["item", "value"], rows)


def write_markdown(res: Results, path: Path) -> None:
    meta = res.meta
    sizes = meta["sizes"]
    lines = [
        "# probpipe benchmark results",
        "",
        f"`{meta['command']}` started {meta['started']}, took "
        f"{meta.get('duration_s', 0) / 60:.1f} min; "
        f"{'**quick** sizes, ' if meta['quick'] else ''}"
        f"{meta['repeats']} timed repeat(s) per case after a warm-up call, median shown. "
        "Each (workload, runner) ran in a fresh subprocess; all ratios are computed "
        "within this run. See `benchmarks/README.md` for what each workload measures.",
        "",
        "## Machine",
        "",
        *machine_lines(meta),
        "",
    ]
    flagged = [c for c in res.cases.values() if res.noisy(c)]
    lines += [
        "The machine is shared. While each case runs, the harness measures the CPU used "
        "by other processes (*other load*, in cores); before each case it times a fixed "
        "bit of Python (*CPU speed*, 1.00 = the fastest seen in this run; lower means "
        f"the VM's host was busy). Cases marked `{NOISY_MARK.strip()}` had other load "
        f"above {NOISY_CORES} cores or CPU speed below {SLOW_CPU}: their times are "
        f"inflated, and ratios involving them are unreliable. This run: {len(flagged)} of "
        f"{sum(1 for c in res.cases.values() if c.get('status') == 'ok')} cases flagged.",
        "",
    ]
    cal = meta.get("mcmc_calibration")
    if cal:
        lines += [
            f"W2 calibration: {cal['n_iter']:,} Metropolis iterations per row = "
            f"{cal['row_seconds_measured']:.3f} s per row (target {cal['row_seconds_target']} s).",
            "",
        ]
    warm = meta.get("prefect_prewarm")
    if warm:
        lines += [
            f"Prefect database created before timing ({_fmt(warm.get('median_s'), '.1f')} s, "
            f"{warm.get('status')}); every Prefect case then starts with a warm database.",
            "",
        ]
    lines += [
        "## Targets",
        "",
        *_table(["target", "runner", "measured", "limit", "result"], target_rows(res)),
        "",
        "## Summary",
        "",
        "Key figure per workload; *n/a*: the baseline does not apply to the workload; "
        "*skipped*: left out by `--quick` (the slowest raw baselines run W1 only). "
        "W1: time per row above the plain loop's. W2/W5: median time (speedup over "
        "`sequential`). W3: median time (ratio to `raw-ray`, the ray.put-once pattern). "
        "W4: first call incl. engine start / median of later calls. W6: median time, "
        "peak RSS of the driver.",
        "",
        *summary_table(res),
        "",
    ]
    for key in res.workloads:
        w = WORKLOADS[key]
        size_text = ", ".join(f"{k}={v}" for k, v in sizes[key].items())
        lines += [
            f"## {key}: {w.title}",
            "",
            f"{w.measures}. Sizes: {size_text}.",
            "",
            *detail_table(res, key),
            "",
            f"![{key}]({key}.png)",
            "",
        ]
    errors = [c for c in res.cases.values() if c.get("status") == "error"]
    if errors:
        lines += ["## Errors", ""]
        for case in errors:
            first = (case.get("error") or "?").strip().splitlines()
            lines.append(
                f"- {case['workload']} `{case['runner']}`: {first[0][:300] if first else '?'}"
                + (f" (log: `{Path(case['log']).name}`)" if case.get("log") else "")
            )
        lines.append("")
    leftovers = meta.get("leftover_processes") or []
    stopped = sum(len(c.get("stragglers_stopped", [])) for c in res.cases.values())
    lines += [
        "## Processes",
        "",
        f"Processes left running after their case and stopped by the harness: {stopped}. "
        f"Still alive at the end of the run: {len(leftovers)}.",
        "",
    ]
    path.write_text("\n".join(lines))


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def _bars(
    ax: Any,
    res: Results,
    workload: str,
    value: Any,
    label: Any,
    *,
    xlabel: str,
    target: float | None = None,
    target_label: str = "",
    log: bool = False,
) -> None:
    """One horizontal bar per runner that ran this workload; errors marked in place."""
    runners = [
        r
        for r in res.runners
        if res.case(workload, r) is not None
        and _status_cell(res, workload, r) not in ("n/a", "skipped")
    ]
    values = []
    for r in runners:
        v = value(r) if res.ok(workload, r) else None
        values.append(v)
    shown = [v for v in values if v is not None]
    floor = min([v for v in shown if v > 0], default=1.0) / 3 if log else 0.0
    ys = range(len(runners))
    heights = [max(v, floor) if v is not None else 0.0 for v in values]
    colors = [RAW_COLOR if r.startswith("raw-") else PROBPIPE_COLOR for r in runners]
    ax.barh(list(ys), heights, color=colors)
    ax.set_yticks(list(ys), runners)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    top = max([*heights, target or 0.0], default=1.0)
    for y, r, v in zip(ys, runners, values):
        text = label(r, v) if v is not None else "error"
        x = max(v, floor) if v is not None else (floor if log else 0.0)
        ax.text(
            x * (1.05 if log else 1) + (0 if log else top * 0.01),
            y,
            text,
            va="center",
            fontsize=8,
            color="black" if v is not None else "#b00020",
        )
    if target is not None:
        ax.axvline(target, color="#2a9d3a", linestyle="--", linewidth=1.2, label=target_label)
        ax.legend(loc="lower right", fontsize=8)
    if log:
        ax.set_xlim(right=top * 8)
    else:
        ax.set_xlim(0, top * 1.3)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def _parallel_note(case: dict[str, Any] | None) -> str:
    if not case or case.get("parallelism") is None:
        return ""
    return f" ({case['parallelism']:.2f} at a time)"


def write_plots(res: Results, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    written = []

    def figure(key: str, ncols: int = 1):
        n = len([r for r in res.runners if _status_cell(res, key, r) not in ("n/a", "skipped")])
        fig, axes = plt.subplots(
            1, ncols, figsize=(6.5 * ncols, 1.2 + 0.42 * max(n, 2)), squeeze=False
        )
        fig.suptitle(f"{key}: {WORKLOADS[key].title}", fontsize=11)
        return fig, axes[0]

    def save(fig: Any, key: str) -> None:
        fig.text(
            0.01, 0.005, "blue: probpipe backends, orange: raw engines", fontsize=7, color="#555555"
        )
        fig.tight_layout(rect=(0, 0.02, 1, 1))
        path = out_dir / f"{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    def median(key: str) -> Any:
        return lambda r: res.ok(key, r)["median_s"]

    for key in res.workloads:
        if key == "W1":
            fig, (ax,) = figure(key)
            _bars(
                ax,
                res,
                key,
                lambda r: (
                    res.ok("W1", r)["median_s"] / res.ok("W1", r)["rows"] * 1e3
                    if r == "raw-loop"
                    else res.overhead_ms(r)
                ),
                lambda r, v: f"{_sig(v)} ms" + (" (loop itself)" if r == "raw-loop" else ""),
                xlabel="per-row overhead over the plain loop, ms (log scale)",
                target=W1_MAX_MS,
                target_label="target 1 ms",
                log=True,
            )
        elif key in ("W2", "W5"):
            fig, (a1, a2) = figure(key, 2)
            _bars(
                a1,
                res,
                key,
                median(key),
                lambda r, v: f"{_sig(v)} s",
                xlabel="median wall time per call, s",
            )
            _bars(
                a2,
                res,
                key,
                lambda r, k=key: res.speedup(k, r) or 0.0,
                lambda r, v, k=key: f"{v:.2f}x" + _parallel_note(res.ok(k, r)),
                xlabel="speedup over sequential (rows running at a time)",
                target=W2_MIN_SPEEDUP if key == "W2" else None,
                target_label="target 1.8x",
            )
        elif key == "W3":
            fig, (ax,) = figure(key)
            ref = res.ok("W3", "raw-ray")
            _bars(
                ax,
                res,
                key,
                median(key),
                lambda r, v: f"{_sig(v)} s ({_fmt(res.ratio('W3', r, 'raw-ray'), '.2f')}x)",
                xlabel="median wall time per call, s (ratio to raw ray.put-once)",
                target=ref["median_s"] * W3_MAX_RATIO if ref else None,
                target_label="2x raw ray.put-once",
                log=True,
            )
        elif key == "W4":
            fig, (a1, a2) = figure(key, 2)
            _bars(
                a1,
                res,
                key,
                lambda r: res.ok("W4", r)["first_call_s"],
                lambda r, v: f"{_sig(v)} s",
                xlabel="first call incl. engine start, s",
            )
            _bars(
                a2,
                res,
                key,
                lambda r: max(res.ok("W4", r)["later_calls_s"] or [0.0]),
                lambda r, v: f"{_sig(v)} s (median {_sig(res.ok('W4', r)['median_s'])})",
                xlabel="slowest of the later calls, s",
                target=W4_MAX_LATER_S,
                target_label="target 1.5 s",
            )
        elif key == "W6":
            fig, (a1, a2) = figure(key, 2)
            _bars(
                a1,
                res,
                key,
                median(key),
                lambda r, v: f"{_sig(v)} s",
                xlabel="median wall time per call, s",
            )
            limits = [res.rss_limit_mb(r) for r in res.runners if res.ok("W6", r)]
            _bars(
                a2,
                res,
                key,
                lambda r: res.ok("W6", r)["peak_rss_mb"],
                lambda r, v: f"{v:.0f} MB",
                xlabel="peak RSS of the driver, MB",
                target=max(limits) if limits else None,
                target_label="2x result + 300 MB",
            )
        else:
            continue
        save(fig, key)
    return written


def write_report(data: dict[str, Any], out_dir: Path) -> None:
    res = Results(data)
    write_markdown(res, out_dir / "results.md")
    write_plots(res, out_dir)
    print(f"wrote {out_dir / 'results.md'}, {out_dir / 'results.json'} and the plots")
