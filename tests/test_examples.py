"""The scripts in examples/ run, print sensible numbers, and are in the docs.

Each script runs as a user would run it (a subprocess, ``--small``, on
``sequential`` unless said otherwise). The checks are about the statistics,
not about exact digits: ranges that hold for any seed and any backend.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SCRIPTS = [
    "bagged_posterior",
    "bootstrap_ci",
    "parameter_sweep",
    "mcmc_chains",
    "per_worker_sampler",
]
NUMBER = r"([-+]?\d+(?:\.\d+)?)"


def run_example(name: str, *args: str, env: dict | None = None, timeout: float = 240) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("PROBPIPE_BACKEND", "RAY_ADDRESS")}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{name} {args} failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    return proc.stdout


def find(pattern: str, text: str) -> list[float]:
    match = re.search(pattern, text)
    assert match, f"no match for {pattern!r} in:\n{text}"
    return [float(g) for g in match.groups()]


def numbers_without_timing(text: str) -> str:
    """The printed summary with the wall time taken out."""
    return re.sub(r"\d+\.\d s", "<time>", text)


def test_bagged_posterior():
    out = run_example("bagged_posterior", "--small")
    n, distress = find(r"(\d+) launches, (\d+) with distress", out)
    assert (n, distress) == (23, 7)
    slope, sd = find(rf"single posterior: {NUMBER} \(sd {NUMBER}\)", out)
    bag_slope, bag_sd, k = find(
        rf"bagged posterior: {NUMBER} \(sd {NUMBER}\), mixture of (\d+)", out
    )
    # Colder launches had more distress: a clearly negative slope per sd of temperature.
    assert -5 < slope < -0.5 and 0.2 < sd < 2.5
    assert -6 < bag_slope < 0 and k == 8
    assert bag_sd > 0.8 * sd  # bagging adds the between-replicate spread
    for label in ("single", "bagged"):
        mid, lo, hi = find(
            rf"{label} posterior: {NUMBER} \(90% interval {NUMBER} to {NUMBER}\)\n", out
        )
        assert 0 <= lo <= mid <= hi <= 1
        assert mid > 0.5  # 31 F is far colder than any launch; distress is likely
    rows, chunks = find(r"Backend 'sequential': (\d+) fits in (\d+) chunks", out)
    assert rows == 8 and chunks == 8


def test_bootstrap_ci():
    out = run_example("bootstrap_ci", "--small")
    (r,) = find(rf"r = {NUMBER}", out)
    assert abs(r - 0.776) < 0.001  # Efron and Tibshirani's value for these data
    n_boot, se = find(rf"Bootstrap: (\d+) replicates, standard error {NUMBER}", out)
    assert n_boot == 400 and 0.05 < se < 0.25
    for label in ("percentile", "BCa"):
        lo, hi = find(rf"95% {label} interval: +{NUMBER} to {NUMBER}", out)
        assert -1 <= lo < r < hi <= 1, (label, lo, hi)
        assert 0.2 < hi - lo < 1.0
    lo, hi = find(rf"Fisher z\): +{NUMBER} to {NUMBER}", out)
    half = 1.959964 / math.sqrt(15 - 3)
    assert lo == pytest.approx(math.tanh(math.atanh(r) - half), abs=0.002)
    assert hi == pytest.approx(math.tanh(math.atanh(r) + half), abs=0.002)


def test_parameter_sweep_is_one_call_and_shrinks_with_tighter_priors():
    out = run_example("parameter_sweep", "--small")
    rows = re.findall(
        rf"^\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER} \({NUMBER} to {NUMBER}\)$", out, re.M
    )
    table = [[float(x) for x in row] for row in rows]
    assert [row[0] for row in table] == [0.5, 1.0, 2.5, 10.0]
    slopes = [row[1] for row in table]
    assert all(s < 0 for s in slopes)
    # Common random numbers: the same replicates in every cell, so the shrinkage
    # of the slope towards 0 is monotone in the prior scale.
    assert all(abs(a) < abs(b) for a, b in itertools.pairwise(slopes)), slopes
    for _, _, sd, mid, lo, hi in table:
        assert sd > 0 and 0 <= lo <= mid <= hi <= 1
    n_rows, cells, per_cell = find(r"(\d+) rows \((\d+) cells x (\d+)\)", out)
    assert (n_rows, cells, per_cell) == (24, 4, 6)


def test_mcmc_chains_converge():
    out = run_example("mcmc_chains", "--small")
    chains, kept = find(r"(\d+) chains x (\d+) kept draws", out)
    assert chains == 4 and kept == 1000
    lo_acc, hi_acc = find(rf"acceptance {NUMBER}-{NUMBER}", out)
    assert 0.05 < lo_acc <= hi_acc < 0.9
    mean_a, sd_a, rhat_a = find(rf"intercept\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", out)
    mean_b, sd_b, rhat_b = find(rf"slope\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", out)
    assert -3 < mean_a < 0.5 and 0.1 < sd_a < 2
    assert -4 < mean_b < -0.5 and 0.1 < sd_b < 2
    assert 0.99 < rhat_a < 1.1 and 0.99 < rhat_b < 1.1
    assert "converged" in out


def test_per_worker_sampler_is_built_once_and_changes_no_draw():
    out = run_example("per_worker_sampler", "--small")
    (replicates,) = find(r"(\d+) bootstrap replicates", out)
    slope, sd = find(rf"slope per sd of temperature: {NUMBER} \(sd {NUMBER}\)", out)
    assert replicates == 8 and -6 < slope < 0 and sd > 0.2
    # sequential: one process, so one build serves every fit.
    builds, fits = find(r"per_worker: +built (\d+) time\(s\) for (\d+) fits", out)
    assert (builds, fits) == (1, 8)
    assert "same draws: yes" in out


@pytest.mark.prefect
def test_same_seed_same_numbers_on_another_backend(tmp_path):
    """One flag changes the backend, not the numbers (prefect runs in this process)."""
    import probpipe as pp
    from probpipe.engines import prefect as prefect_engine
    from probpipe.testing import shared_backend

    pp.WorkflowFunction(float, backend=shared_backend("prefect"), n_broadcast_samples=2, seed=1)(
        pp.Normal(0, 1)
    )
    env = {"PREFECT_API_URL": prefect_engine.api_url()}
    on_prefect = run_example("bootstrap_ci", "--small", "--backend", "prefect", env=env)
    on_sequential = run_example("bootstrap_ci", "--small")
    body = lambda text: numbers_without_timing(text).splitlines()[:-1]  # noqa: E731
    assert body(on_prefect) == body(on_sequential)
    assert "Backend 'prefect'" in on_prefect


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_and_docs(name):
    out = run_example(name, "--help", timeout=60)
    assert "--backend" in out and "--small" in out
    docs = (REPO / "docs" / "examples.md").read_text(encoding="utf-8")
    assert f'--8<-- "examples/{name}.py"' in docs


@pytest.mark.slow
def test_example_plugin_passes_the_conformance_suite(tmp_path):
    """examples/probpipe-pool, as if pip-installed: on the path, entry point declared."""
    info = tmp_path / "probpipe_pool-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probpipe-pool\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[probpipe]\npool = probpipe_pool\n")
    paths = [str(EXAMPLES / "probpipe-pool" / "src"), str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k not in ("PROBPIPE_BACKEND", "RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(EXAMPLES / "probpipe-pool" / "tests"),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert re.search(r"\d+ passed", proc.stdout) and "failed" not in proc.stdout
