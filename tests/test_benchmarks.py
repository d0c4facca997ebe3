"""Smoke test of the benchmark harness: tiny sizes, the two cheapest runners.

Runs the real harness end to end (fresh subprocess per case, JSON, markdown,
PNGs) on ``sequential`` and the plain-loop baseline. It checks that the
outputs exist and hold medians; it never asserts a timing.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("psutil")

from probpipe.benchmarks import main, report, runner, workloads

TINY = [
    "--size=W1.rows=20",
    "--size=W1P.rows=20",
    "--size=W1P.pairs=2",
    "--size=W2.rows=4",
    "--size=W2.n_iter=2000",  # skips the calibration
    "--size=W8.rows=[100, 300, 1000]",
    "--size=W8.max_rows=300",  # leaves out the 1000-row call
]


def test_harness_writes_table_plots_and_medians(tmp_path):
    out = tmp_path / "results"
    code = main(
        [
            "--quick",
            "--runners",
            "sequential,raw-loop",
            "--workloads",
            "W1,W1P,W2,W7,W8",
            "--out",
            str(out),
            "--quiet-wait=0",  # a shared test machine is never quiet; do not wait for it
            *TINY,
        ]
    )
    assert code == 0

    data = json.loads((out / "results.json").read_text())
    cases = {(c["workload"], c["runner"]): c for c in data["cases"]}
    # W1P has no raw spelling; W7 needs a backend that runs rows in other processes.
    assert cases[("W1P", "raw-loop")]["status"] == "n/a"
    assert cases[("W7", "sequential")]["status"] == "n/a"
    ran = {key: case for key, case in cases.items() if case["status"] not in ("n/a", "skipped")}
    assert set(ran) == {(w, r) for w in ("W1", "W2", "W8") for r in ("sequential", "raw-loop")} | {
        ("W1P", "sequential")
    }
    for case in ran.values():
        assert case["status"] == "ok", case.get("error")
        for s in case["series"].values():
            assert isinstance(s["median_s"], float)
    assert len(cases[("W1", "sequential")]["series"][""]["times_s"]) == 1  # --quick: 1 repeat
    progress = cases[("W1P", "sequential")]["series"]
    assert set(progress) == {"off", "on"} and len(progress["on"]["times_s"]) == 2
    scale = cases[("W8", "sequential")]["series"]
    assert {name: s["rows"] for name, s in scale.items()} == {"100": 100, "300": 300}
    assert all(s["peak_rss_mb"] > 0 for s in scale.values())
    assert data["meta"]["leftover_processes"] == []

    table = (out / "results.md").read_text()
    assert "## Targets" in table
    assert "| `sequential` |" in table
    for key in ("W1", "W2", "W8"):  # sequential's results, compared with nothing else
        assert re.search(rf"\| {key} results identical on every backend \|.*\*\*pass\*\*", table)
    for key in ("W1", "W1P", "W2", "W8"):
        png = out / f"{key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "W7.png").exists() and "W7.png" not in table  # nothing ran


def test_plan_follows_each_workloads_backends(monkeypatch):
    monkeypatch.setitem(
        workloads.WORKLOADS,
        "W99",
        workloads.Workload("W99", "t", "m", {}, {}, workloads._prepare_w1, needs="no_such_api"),
    )

    def plan(named: bool) -> dict[tuple[str, str], str]:
        rows = runner.plan_cases(
            ["W7", "W8", "W99"],
            ["sequential", "prefect", "ray", "raw-pool"],
            trim_slow=False,
            named=named,
            parallel=["ray"],
        )
        return {(w, r): what for w, r, what, _ in rows}

    default = plan(named=False)
    assert default[("W7", "ray")] == "run" and default[("W7", "sequential")] == "n/a"
    assert default[("W8", "sequential")] == "run" and default[("W8", "prefect")] == "skipped"
    assert default[("W8", "raw-pool")] == "n/a"
    assert default[("W99", "sequential")] == "skipped"  # this probpipe lacks what it needs
    assert plan(named=True)[("W8", "prefect")] == "run"  # named in --runners: it runs


def test_report_flags_backends_whose_results_differ():
    def case(runner, digest):
        series = {"": {"median_s": 1.0, "rows": 4, "times_s": [1.0], "digest": digest}}
        return {"workload": "W2", "runner": runner, "status": "ok", "series": series}

    meta = {"runners": ["sequential", "ray", "prefect"], "workloads": ["W2"]}
    same = report.identical_rows(
        report.Results({"meta": meta, "cases": [case("sequential", "a"), case("ray", "a")]})
    )
    assert same[0][-1] == "**pass**"
    cases = [case("sequential", "a"), case("ray", "a"), case("prefect", "b")]
    differ = report.identical_rows(report.Results({"meta": meta, "cases": cases}))
    assert differ[0][-1] == "**MISS**" and "sequential, ray vs prefect" in differ[0][1]


def test_cli_help_documents_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--quick", "--repeats", "--workloads", "--runners", "--out", "max_rows"):
        assert option in text
