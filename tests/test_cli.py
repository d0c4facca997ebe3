"""The probpipe command line."""

from __future__ import annotations

import json
import subprocess

import pytest

from support import REPO, VENV_BIN


def probpipe(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "probpipe"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


@pytest.mark.parametrize("command", [[], ["backends"], ["demo"], ["bench"]])
def test_help(command):
    proc = probpipe(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: probpipe" in proc.stdout


def test_backends_table_lists_every_backend():
    proc = probpipe("backends")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["name", "tag", "installed", "install", "from"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert {"sequential", "prefect", "prefect-dask", "prefect-ray"} <= set(rows)
    assert rows["sequential"][1:3] == ["off", "yes"]
    assert rows["prefect-ray"][1:3] == ["task", "yes"]


def test_backends_json_matches_the_api():
    import probpipe as pp

    proc = probpipe("backends", "--json")
    data = json.loads(proc.stdout)
    assert data == {name: info.to_dict() for name, info in pp.available_backends().items()}


def test_demo_prints_the_bagged_posterior():
    proc = probpipe("demo", "--replicates", "8")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Challenger O-ring data: 23 launches, 7 with O-ring distress" in out
    assert "mixture of 8 bootstrap posteriors" in out
    assert "Ran 8 fits on backend 'sequential'" in out
    provenance = json.loads(out[out.index("{") :])
    assert provenance["operation"] == "broadcast"
    assert provenance["metadata"]["n_rows"] == 8


def test_demo_rejects_an_unknown_backend_clearly():
    proc = probpipe("demo", "--backend", "prefect-rey")
    assert proc.returncode != 0
    assert "did you mean 'prefect-ray'" in proc.stderr
