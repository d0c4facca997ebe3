"""Smoke test of the benchmark harness: tiny sizes, the two cheapest runners.

Runs the real harness end to end (fresh subprocess per case, JSON, markdown,
PNGs) on ``sequential`` and the plain-loop baseline. It checks that the
outputs exist and hold medians; it never asserts a timing.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("psutil")

from probpipe.benchmarks import main

TINY = [
    "--size=W1.rows=20",
    "--size=W2.rows=4",
    "--size=W2.n_iter=2000",  # skips the calibration
    "--size=W6.rows=200",
]


def test_harness_writes_table_plots_and_medians(tmp_path):
    out = tmp_path / "results"
    code = main(
        [
            "--quick",
            "--runners",
            "sequential,raw-loop",
            "--workloads",
            "W1,W2,W6",
            "--out",
            str(out),
            "--quiet-wait=0",  # a shared test machine is never quiet; do not wait for it
            *TINY,
        ]
    )
    assert code == 0

    data = json.loads((out / "results.json").read_text())
    cases = {(c["workload"], c["runner"]): c for c in data["cases"]}
    assert set(cases) == {(w, r) for w in ("W1", "W2", "W6") for r in ("sequential", "raw-loop")}
    for case in cases.values():
        assert case["status"] == "ok", case.get("error")
        assert isinstance(case["median_s"], float)
        assert len(case["times_s"]) == 1  # --quick: one timed repeat
    assert cases[("W6", "sequential")]["rows"] == 200
    assert cases[("W6", "sequential")]["peak_rss_mb"] > 0
    assert data["meta"]["leftover_processes"] == []

    table = (out / "results.md").read_text()
    assert "## Targets" in table
    assert "| `sequential` |" in table
    assert "W6 peak RSS" in table
    for key in ("W1", "W2", "W6"):
        png = out / f"{key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_help_documents_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--quick", "--repeats", "--workloads", "--runners", "--out"):
        assert option in text
