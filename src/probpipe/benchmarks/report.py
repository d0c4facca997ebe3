"""Turn a run's results into results.md (targets, tables) and one PNG per workload.

Every ratio is computed from cases measured in the same run: speedups against
the ``sequential`` backend, W3 against the raw ``ray.put``-once pattern, W1
overhead against the plain loop. Nothing here measures anything.

What each workload reports is declared once, as :class:`Figure` s in
``FIGURES``: the summary table, the workload's own table and its plot are all
drawn from them. The goals of the issues are declared once, in ``TARGETS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .workloads import WORKLOADS

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
    """Lookup and derived metrics over one run's cases (None when an input is missing).

    Every metric takes ``(workload, runner, ...)``, so a :class:`Figure` can name it.
    """

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
        if not case or case.get("status") != "ok":
            return False
        speed = self.cpu_speed(case)
        busy = (case.get("other_cpu_cores") or 0.0) > NOISY_CORES
        return busy or (speed is not None and speed < SLOW_CPU)

    def case(self, workload: str, runner: str) -> dict[str, Any] | None:
        return self.cases.get((workload, runner))

    def ran(self, workload: str, runner: str) -> bool:
        """The case was run (it may have failed); not n/a, skipped or absent."""
        case = self.case(workload, runner)
        return case is not None and case["status"] not in ("n/a", "skipped")

    def all_series(self, workload: str, runner: str) -> dict[str, dict[str, Any]]:
        case = self.case(workload, runner)
        return case.get("series", {}) if case and case.get("status") == "ok" else {}

    # -- metrics --------------------------------------------------------------
    def median(self, workload: str, runner: str, series: str = "") -> float | None:
        s = self.all_series(workload, runner).get(series)
        return s["median_s"] if s else None

    def per_row_ms(self, workload: str, runner: str, series: str = "") -> float | None:
        s = self.all_series(workload, runner).get(series)
        return s["median_s"] / s["rows"] * 1e3 if s else None

    def overhead_ms(self, workload: str, runner: str) -> float | None:
        """Per-row time above the plain loop's, in ms."""
        loop = self.per_row_ms(workload, "raw-loop")
        mine = self.per_row_ms(workload, runner)
        return mine - loop if mine is not None and loop is not None else None

    def ratio(self, workload: str, runner: str, reference: str) -> float | None:
        """Per-row time of ``runner`` / that of ``reference`` (W1 rows differ by runner)."""
        return _div(self.per_row_ms(workload, runner), self.per_row_ms(workload, reference))

    def speedup(self, workload: str, runner: str) -> float | None:
        return _div(1.0, self.ratio(workload, runner, "sequential"))

    def series_ratio(self, workload: str, runner: str, top: str, bottom: str) -> float | None:
        return _div(self.median(workload, runner, top), self.median(workload, runner, bottom))

    def cost_pct(self, workload: str, runner: str, on: str, off: str) -> float | None:
        ratio = self.series_ratio(workload, runner, on, off)
        return (ratio - 1.0) * 100 if ratio is not None else None

    def first_call_s(self, workload: str, runner: str) -> float | None:
        s = self.all_series(workload, runner).get("")
        return s["times_s"][0] + self.case(workload, runner).get("enter_s", 0.0) if s else None

    def slowest_later_call_s(self, workload: str, runner: str) -> float | None:
        s = self.all_series(workload, runner).get("")
        return max(s["times_s"][1:]) if s and len(s["times_s"]) > 1 else None

    def sizes(
        self, workload: str, runner: str, partial: bool = False
    ) -> list[tuple[int, dict[str, Any]]]:
        """(rows, series) by size, for a workload whose series are sizes (W8).

        ``partial``: also the sizes a case measured before it failed (for the plot).
        """
        case = self.case(workload, runner) or {}
        series = case.get("series", {}) if partial else self.all_series(workload, runner)
        return sorted((int(name), s) for name, s in series.items())

    def spread(self, workload: str, runner: str) -> float | None:
        """Slowest per-row time over the fastest, across sizes."""
        per_row = [s["median_s"] / rows for rows, s in self.sizes(workload, runner)]
        return _div(max(per_row), min(per_row)) if len(per_row) > 1 else None

    def at_largest(self, workload: str, runner: str, key: str) -> float | None:
        """``key`` of the largest size's series; "ms_per_row" and "rss_limit_mb" derived."""
        points = self.sizes(workload, runner)
        if not points:
            return None
        rows, s = points[-1]
        if key == "ms_per_row":
            return s["median_s"] / rows * 1e3
        if key == "rss_limit_mb":
            return 2.0 * s.get("result_mb", 0.0) + 300.0
        return s.get(key)

    def goal_of_raw_ray(self, workload: str, runner: str) -> float | None:
        """W2's goal: 92 % of raw Ray's speedup in the same run."""
        raw = self.speedup(workload, "raw-ray")
        return 0.92 * raw if raw is not None else None


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _sig(value: float) -> str:
    """Three significant digits, without scientific notation for the usual range."""
    if value == 0 or abs(value) >= 100 or math.isnan(value):
        return f"{value:.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


# ---------------------------------------------------------------------------
# What each workload reports, and the goals (issue 14, and earlier ones that hold)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """``runners``: names, "parallel" or "backends"; ``limit``: a number or (metric, *args)."""

    runners: tuple[str, ...] | str
    limit: float | tuple[str, ...]
    at_least: bool = False  # the value must reach the limit, not stay under it


@dataclass(frozen=True)
class Figure:
    """One number per runner: a column of the tables, a panel of the plot, maybe a goal."""

    label: str
    metric: str  # a Results method, called with (workload, runner, *args)
    args: tuple[Any, ...] = ()
    unit: str = ""
    log: bool = False  # log scale in the plot
    in_summary: bool = True
    goal: Goal | None = None

    def value(self, res: Results, workload: str, runner: str) -> float | None:
        return getattr(res, self.metric)(workload, runner, *self.args)

    def text(self, res: Results, workload: str, runner: str) -> str:
        value = self.value(res, workload, runner)
        return "-" if value is None else _sig(value) + self.unit


PREFECT_ENGINES = ("prefect-ray", "prefect-dask")
SCALED = ("sequential", "ray", "prefect-ray")
_MEDIAN = Figure("median s", "median", unit=" s", in_summary=False)

FIGURES: dict[str, tuple[Figure, ...]] = {
    "W1": (
        Figure("time per row", "per_row_ms", unit=" ms", log=True, in_summary=False),
        Figure("overhead per row", "overhead_ms", unit=" ms", goal=Goal(PREFECT_ENGINES, 0.5)),
        Figure("x raw ray.get", "ratio", ("raw-ray",), "x", goal=Goal(("ray",), 1.5)),
    ),
    "W1P": (
        Figure("off: time per row", "per_row_ms", ("off",), " ms", in_summary=False),
        Figure("on: time per row", "per_row_ms", ("on",), " ms", in_summary=False),
        Figure("cost of the bar", "cost_pct", ("on", "off"), " %", goal=Goal("backends", 5.0)),
    ),
    "W2": (
        _MEDIAN,
        Figure("speedup", "speedup", unit="x", goal=Goal("parallel", ("goal_of_raw_ray",), True)),
    ),
    "W3": (
        Figure("median s", "median", unit=" s", log=True, in_summary=False),
        Figure(
            "x raw ray.put-once", "ratio", ("raw-ray",), "x", goal=Goal(("prefect-ray", "ray"), 2.0)
        ),
    ),
    "W4": (
        Figure("first call", "first_call_s", unit=" s", goal=Goal(PREFECT_ENGINES, 6.0)),
        Figure(
            "slowest later call", "slowest_later_call_s", unit=" s", goal=Goal(PREFECT_ENGINES, 0.4)
        ),
    ),
    "W5": (_MEDIAN, Figure("speedup", "speedup", unit="x")),
    "W7": (
        Figure("setup in every row", "median", ("in every row",), " s", in_summary=False),
        Figure("per_worker, built", "median", ("per_worker, built",), " s", in_summary=False),
        Figure("per_worker, reused", "median", ("per_worker, reused",), " s", in_summary=False),
        Figure("per_worker speedup", "series_ratio", ("in every row", "per_worker, built"), "x"),
    ),
    "W8": (
        Figure("time per row, largest size", "at_largest", ("ms_per_row",), " ms", log=True),
        Figure("per-row time, slowest / fastest size", "spread", unit="x", goal=Goal(SCALED, 2.0)),
        Figure(
            "peak driver RSS, largest size",
            "at_largest",
            ("peak_rss_mb",),
            " MB",
            in_summary=False,
            goal=Goal(SCALED, ("at_largest", "rss_limit_mb")),  # 2x the result + 300 MB
        ),
    ),
}


def _goal_runners(res: Results, goal: Goal) -> list[str]:
    if goal.runners == "parallel":
        return [r for r in res.meta.get("parallel_backends", []) if r in res.runners]
    if goal.runners == "backends":
        return [r for r in res.runners if not r.startswith("raw-")]
    return list(goal.runners)


def target_rows(res: Results) -> list[list[str]]:
    """[target, runner, measured, limit, result] for every goal of every figure."""
    installed = set(res.meta.get("installed_backends", []))
    rows = []
    for key, figures in FIGURES.items():
        for f in (f for f in figures if f.goal):
            goal = f.goal
            for runner in _goal_runners(res, goal):
                value = f.value(res, key, runner)
                limit = goal.limit
                if isinstance(limit, tuple):
                    limit = getattr(res, limit[0])(key, runner, *limit[1:])
                text = f"{key} {f.label} {'>=' if goal.at_least else '<='} limit"
                shown = [f"`{runner}`", "-", "-" if limit is None else _sig(limit) + f.unit]
                if key not in res.workloads or runner not in res.runners:
                    verdict = "not installed" if runner not in installed else "not selected"
                elif value is None or limit is None:
                    case = res.case(key, runner) or {"status": "not run"}
                    verdict = "not measured" + (
                        f" ({case['status']})" if case["status"] != "ok" else ""
                    )
                else:
                    shown[1] = _sig(value) + f.unit
                    passed = value >= limit if goal.at_least else value <= limit
                    verdict = "**pass**" if passed else "**MISS**"
                rows.append([text, *shown, verdict])
    return rows + identical_rows(res)


def identical_rows(res: Results) -> list[list[str]]:
    """Per workload: do all probpipe backends' results (last call of each series) agree?"""
    rows = []
    for key in res.workloads:
        digests: dict[str, dict[str, list[str]]] = {}  # series -> digest -> runners
        for runner in (r for r in res.runners if not r.startswith("raw-")):
            for name, s in res.all_series(key, runner).items():
                if s.get("digest"):
                    digests.setdefault(name, {}).setdefault(s["digest"], []).append(runner)
        if not digests:
            continue
        split = {n: d for n, d in digests.items() if len(d) > 1}
        groups = "; ".join(
            f"{name or key}: " + " vs ".join(", ".join(rs) for rs in d.values())
            for name, d in split.items()
        )
        agree = {r for d in digests.values() for rs in d.values() for r in rs}
        rows.append(
            [
                f"{key} results identical on every backend",
                groups or f"{len(agree)} backends",
                "-",
                "-",
                "**MISS**" if split else "**pass**",
            ]
        )
    return rows


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _status(res: Results, workload: str, runner: str) -> str | None:
    """The cell for a case without figures ('n/a', 'error', ...), else None."""
    case = res.case(workload, runner)
    if case is None:
        return "not run"
    if case["status"] in ("n/a", "skipped"):
        return case["status"]
    if case["status"] != "ok":
        return "**error**"
    return None


def _cell(res: Results, workload: str, runner: str, figures: tuple[Figure, ...]) -> str:
    status = _status(res, workload, runner)
    if status:
        return status
    text = " / ".join(f.text(res, workload, runner) for f in figures)
    return text + (NOISY_MARK if res.noisy(res.case(workload, runner)) else "")


def summary_table(res: Results) -> list[str]:
    def summary(key: str) -> tuple[Figure, ...]:
        return tuple(f for f in FIGURES[key] if f.in_summary)

    headers = [
        "runner",
        *(f"{k}: " + " / ".join(f.label for f in summary(k)) for k in res.workloads),
    ]
    rows = [[f"`{r}`", *(_cell(res, k, r, summary(k)) for k in res.workloads)] for r in res.runners]
    return _table(headers, rows)


def figures_table(res: Results, workload: str) -> list[str]:
    figures = FIGURES[workload]
    rows = [
        [f"`{r}`", *(_cell(res, workload, r, (f,)) for f in figures)]
        for r in res.runners
        if res.ran(workload, r)
    ]
    return _table(["runner", *(f.label for f in figures)], rows)


def _notes(s: dict[str, Any]) -> str:
    notes = []
    if s.get("parallelism") is not None:
        notes.append(f"rows ran {s['parallelism']:.2f} at a time, {s['row_mean_s']:.2f} s each")
    if s.get("result_mb"):
        notes.append(f"result {s['result_mb']:.2f} MB, peak RSS {s['peak_rss_mb']:.0f} MB")
    return "; ".join(notes)


def _case_notes(res: Results, case: dict[str, Any]) -> str:
    notes = []
    if case.get("warmup_s") is not None:
        notes.append(f"warm-up {case['warmup_s']:.2f} s")
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
    return "; ".join(notes)


def calls_table(res: Results, workload: str) -> list[str]:
    """Every timed call: one line per (runner, series), then the case's notes."""
    headers = [
        "runner",
        "series",
        "rows",
        "median s",
        "timed calls s",
        "chunksize (chunks)",
        "notes",
    ]
    rows = []
    for runner in res.runners:
        case = res.case(workload, runner)
        if not res.ran(workload, runner):
            continue
        if case["status"] != "ok":  # with the calls it made before the error, if any
            error = (case.get("error") or "?").splitlines()[0].replace("|", "\\|")[:150]
            rows.append([f"`{runner}`", "", "", "", "", "", f"error: {error}"])
        for name, s in case.get("series", {}).items():
            chunks = f"{s['chunksize']} ({s.get('n_chunks', '?')})" if "chunksize" in s else ""
            times = ", ".join(f"{t:.3f}" for t in s["times_s"])
            rows.append(
                [
                    f"`{runner}`",
                    name,
                    str(s["rows"]),
                    f"{s['median_s']:.3f}",
                    times,
                    chunks,
                    _notes(s),
                ]
            )
        rows.append([f"`{runner}`", "", "", "", "", "", _case_notes(res, case)])
    return _table(headers, rows)


def machine_lines(meta: dict[str, Any]) -> list[str]:
    m = meta["machine"]
    load = " / ".join(f"{x:.2f}" for x in meta.get("load_average_start", []))
    load_end = " / ".join(f"{x:.2f}" for x in meta.get("load_average_end", []))
    rows = [
        ["CPU", f"{m['cpu']}, {m['logical_cores']} logical cores"],
        ["RAM", f"{m['ram_gib']} GiB"],
        ["OS", m["os"]],
        ["Python", m["python"]],
        ["packages", ", ".join(f"{k} {v}" for k, v in m["versions"].items())],
        ["load average (1/5/15 min)", f"start {load}; end {load_end}"],
    ]
    return _table(["item", "value"], rows)


def write_markdown(res: Results, path: Path) -> None:
    meta = res.meta
    flagged = [c for c in res.cases.values() if res.noisy(c)]
    n_ok = sum(1 for c in res.cases.values() if c.get("status") == "ok")
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
        "The machine is shared. While each case runs, the harness measures the CPU used "
        "by other processes (*other load*, in cores); before each case it times a fixed "
        "bit of Python (*CPU speed*, 1.00 = the fastest seen in this run; lower means "
        f"the VM's host was busy). Cases marked `{NOISY_MARK.strip()}` had other load "
        f"above {NOISY_CORES} cores or CPU speed below {SLOW_CPU}: their times are "
        f"inflated, and ratios involving them are unreliable. This run: {len(flagged)} of "
        f"{n_ok} cases flagged.",
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
    if warm and warm.get("seconds") is not None:
        lines += [
            f"Prefect database created before timing ({warm['seconds']:.1f} s, "
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
        "Key figures per workload (each workload's section has all of them); *n/a*: "
        "does not apply to the workload; *skipped*: left out (see the workload's section).",
        "",
        *summary_table(res),
        "",
    ]
    for key in res.workloads:
        w = WORKLOADS[key]
        sizes = ", ".join(f"{k}={v}" for k, v in meta["sizes"][key].items())
        skipped = sorted(
            {c["why"] for c in res.cases.values() if c["workload"] == key and c.get("why")}
        )
        lines += [
            f"## {key}: {w.title}",
            "",
            f"{w.measures}. Sizes: {sizes}." + "".join(f" Skipped: {why}." for why in skipped),
            "",
            *figures_table(res, key),
            "",
            *calls_table(res, key),
            "",
        ]
        if any(res.ran(key, r) for r in res.runners):
            lines += [f"![{key}]({key}.png)", ""]
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
    stopped = sum(len(c.get("stragglers_stopped", [])) for c in res.cases.values())
    lines += [
        "## Processes",
        "",
        f"Processes left running after their case and stopped by the harness: {stopped}. "
        f"Still alive at the end of the run: {len(meta.get('leftover_processes') or [])}.",
        "",
    ]
    path.write_text("\n".join(lines))


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def _bars(ax: Any, res: Results, workload: str, figure: Figure) -> None:
    """One horizontal bar per runner that ran this workload; errors marked in place."""
    runners = [r for r in res.runners if res.ran(workload, r)]
    values = [figure.value(res, workload, r) for r in runners]
    shown = [v for v in values if v is not None and v > 0]
    floor = min(shown, default=1.0) / 3 if figure.log else 0.0
    heights = [max(v, floor) if v is not None else 0.0 for v in values]
    ys = list(range(len(runners)))
    ax.barh(
        ys, heights, color=[RAW_COLOR if r.startswith("raw-") else PROBPIPE_COLOR for r in runners]
    )
    ax.set_yticks(ys, runners)
    ax.invert_yaxis()
    top = max(heights, default=1.0) or 1.0
    if figure.log:
        ax.set_xscale("log")
        ax.set_xlim(right=top * 8)
    else:
        ax.set_xlim(min(0.0, *heights), top * 1.3)
    for y, r, v, h in zip(ys, runners, values, heights):
        x = h * 1.05 if figure.log else max(h, 0.0) + top * 0.01
        color = "black" if v is not None else "#b00020"
        ax.text(
            x,
            y,
            figure.text(res, workload, r) if v is not None else "error",
            va="center",
            fontsize=8,
            color=color,
        )
    ax.set_xlabel(figure.label)
    ax.grid(axis="x", alpha=0.3)


def _scale_lines(axes: Any, res: Results) -> None:
    """W8: time per row and peak driver RSS against the number of rows (log-log)."""
    for runner in res.runners:
        points = res.sizes("W8", runner, partial=True)
        if not points:
            continue
        rows = [n for n, _ in points]
        stopped = res.case("W8", runner)["status"] != "ok"
        style = {
            "marker": "o",
            "label": runner + (" (stopped: see the table)" if stopped else ""),
            "linestyle": "--" if runner.startswith("raw-") else "-",
        }
        axes[0].plot(rows, [s["median_s"] / n * 1e3 for n, s in points], **style)
        axes[1].plot(rows, [s["peak_rss_mb"] for _, s in points], **style)
    for ax, label in zip(axes, ("median time per row, ms", "peak driver RSS so far, MB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows in the call")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)


def write_plots(res: Results, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    written = []
    for key in res.workloads:
        n = sum(res.ran(key, r) for r in res.runners)
        if not n:
            continue
        if key == "W8":
            fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), squeeze=False)
            _scale_lines(axes[0], res)
        else:
            figures = FIGURES[key]
            ncols = min(2, len(figures))
            nrows = math.ceil(len(figures) / ncols)
            height = nrows * (1.2 + 0.42 * max(n, 2))
            fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, height), squeeze=False)
            for ax, figure in zip(axes.flat, figures):
                _bars(ax, res, key, figure)
            for ax in list(axes.flat)[len(figures) :]:
                ax.axis("off")
            fig.text(
                0.01,
                0.005,
                "blue: probpipe backends, orange: raw engines",
                fontsize=7,
                color="#555555",
            )
        fig.suptitle(f"{key}: {WORKLOADS[key].title}", fontsize=11)
        fig.tight_layout(rect=(0, 0.02, 1, 1))
        path = out_dir / f"{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(data: dict[str, Any], out_dir: Path) -> None:
    res = Results(data)
    write_markdown(res, out_dir / "results.md")
    write_plots(res, out_dir)
    print(f"wrote {out_dir / 'results.md'}, {out_dir / 'results.json'} and the plots")
