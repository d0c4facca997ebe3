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
    assert proc.returncode == 2
    assert "argument --backend: unknown backend 'prefect-rey'. Did you mean 'prefect-ray'?" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr


# -- mistakes on the command line: one line on stderr, exit status 2 ------------

MISTAKES = [
    # (argv, what the one line must say)
    (
        ["demo", "-o", "addres=auto"],
        "argument --option/-o: unknown option 'addres': backend 'sequential' takes no options.",
    ),
    (
        ["demo", "--backend", "dask"],
        "argument --backend: unknown backend 'dask'. Did you mean 'prefect-dask'?",
    ),
    (
        ["demo", "--backend", "prefect-ray", "-o", "adress=auto"],
        "argument --option/-o: "
        "backend 'prefect-ray': unknown option 'adress'. Did you mean 'address'?",
    ),
    (
        ["demo", "--backend", "prefect-dask", "-o", "address=127.0.0.1:8786"],
        "argument --option/-o: Dask address must be",
    ),
    (["demo", "-o", "address"], "argument --option/-o: expected KEY=VALUE, got 'address'"),
    (["demo", "-o", "=1"], "argument --option/-o: expected KEY=VALUE, got '=1' (no key)"),
    (["demo", "--replicates", "0"], "argument --replicates: replicates must be a positive int"),
    (["demo", "--replicates", "2.5"], "argument --replicates: expected a positive int, got '2.5'"),
    (["demo", "--replicates", "1000000000"], "replicates must be at most 100,000,000"),
    (["demo", "--bogus"], "probpipe demo: error: unrecognized arguments: --bogus"),
    (["backends", "--jsn"], "probpipe backends: error: unrecognized arguments: --jsn"),
    (["demos"], "unknown command 'demos'. Did you mean 'demo'?"),
    ([], "the following arguments are required"),
    (["bench", "--bogus"], "probpipe bench: error: unrecognized arguments: --bogus"),
    (["bench", "--repeats", "x"], "argument --repeats: invalid int value: 'x'"),
    (["bench", "--timeout", "-1"], "--timeout must be > 0 seconds"),
    (["bench", "--workloads", "W9"], "unknown workload(s) ['W9']"),
]


@pytest.mark.parametrize(("argv", "expected"), MISTAKES, ids=[" ".join(m[0]) for m in MISTAKES])
def test_a_mistake_is_one_line_and_exit_2(argv, expected, capsys):
    from probpipe.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    out, err = capsys.readouterr()
    assert stop.value.code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err
    assert err.startswith("probpipe"), err


def test_the_installed_command_reports_a_mistake_without_a_traceback():
    proc = probpipe("demo", "-o", "addres=auto", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (
        "probpipe demo: error: argument --option/-o: unknown option 'addres': backend "
        "'sequential' takes no options. (see 'probpipe demo --help')\n"
    )


def test_version_lists_probpipe_and_each_installed_engine():
    import importlib.metadata

    proc = probpipe("--version", timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"probpipe {importlib.metadata.version('probpipe')}"
    for name in ("prefect", "prefect-dask", "dask", "distributed", "prefect-ray", "ray"):
        assert f"  {name} {importlib.metadata.version(name)}" in lines
    plugin = importlib.metadata.version("probpipe-ray")
    assert f"  probpipe-ray {plugin} (backend plugin)" in lines


def test_version_imports_no_engine():
    code = (
        "import sys\n"
        "from probpipe.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0\n"
        "print(sorted(m for m in ('prefect', 'ray', 'dask', 'distributed') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [str(VENV_BIN / "python"), "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
