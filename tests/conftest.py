"""Test-session set-up: private Prefect home, no telemetry, shared engines.

Engines (the Prefect API, Ray, Dask) are started at most once per session
through ``probpipe.testing.shared_backend`` and stopped at session end by
the ``probpipe.testing`` pytest plugin. External clusters for attach-mode
tests are started by fixtures in ``tests/clusters.py`` and stopped by
process id.
"""

from __future__ import annotations

import os
import tempfile
import time

# Set before anything imports prefect or ray: tests never touch ~/.prefect,
# never talk to a user's server, never send telemetry.
_HOME = tempfile.mkdtemp(prefix="probpipe-tests-prefect-")
os.environ["PREFECT_HOME"] = _HOME
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PROBPIPE_BACKEND", None)
os.environ.pop("RAY_ADDRESS", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import pytest  # noqa: E402

import probpipe as pp  # noqa: E402
from probpipe import _selection  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_backend_choice():
    """Each test starts with no process-wide backend choice (the default is sequential)."""
    yield
    with _selection._lock:
        leftover = _selection._process_wide
    if leftover is not None:
        _selection.reset_for_tests()


@pytest.fixture
def provenance_mode():
    """Restore the provenance mode a test changes."""
    before = pp.provenance_config.mode
    yield pp.provenance_config
    pp.provenance_config.mode = before


# ---------------------------------------------------------------------------
# External clusters for attach-mode tests, started here and stopped by pid.
# ---------------------------------------------------------------------------


def pytest_collection_modifyitems(config, items):
    """Run tests that need a machine with no Ray running first, then attach tests.

    ``address="auto"`` looks for any Ray on the machine, so the "nothing is
    running" test must come before any test starts one.
    """
    order = {"no_ray_running": 0, "ray_attach": 1}

    def rank(item):
        return min((order[m.name] for m in item.iter_markers() if m.name in order), default=2)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def external_ray_head(tmp_path_factory):
    """A Ray head started like a user would (`ray start --head`), on loopback."""
    from support import VENV_BIN, Started, free_port, wait_for_port

    port = free_port()
    # Short path: Ray's unix sockets live under it (108-character limit).
    temp_dir = tempfile.mkdtemp(prefix="pp-rh-")
    head = Started(
        [
            str(VENV_BIN / "ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        tmp_path_factory.mktemp("ray-head") / "ray-head.log",
        env={"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
    )
    wait_for_port(port)
    # `ray start` says so once the raylet is up too (attach needs both).
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in head.log.read_text(errors="replace"):
        if time.monotonic() > deadline or head.proc.poll() is not None:
            head.stop()
            raise RuntimeError(f"ray start failed: {head.log.read_text(errors='replace')}")
        time.sleep(0.2)
    yield {"address": f"127.0.0.1:{port}", "pids": head.pids, "head": head}
    head.stop()


@pytest.fixture(scope="session")
def external_dask_scheduler(tmp_path_factory):
    """A Dask scheduler and two worker processes started from the command line."""
    from support import VENV_BIN, Started, free_port, wait_for_port

    logs = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = Started(
        [
            str(VENV_BIN / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        logs / "scheduler.log",
    )
    wait_for_port(port)
    workers = Started(
        [
            str(VENV_BIN / "dask"),
            "worker",
            address,
            "--nworkers",
            "2",
            "--nthreads",
            "1",
            "--host",
            "127.0.0.1",
            "--no-dashboard",
        ],
        logs / "workers.log",
    )
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    yield {"address": address, "scheduler": scheduler, "workers": workers}
    workers.stop()
    scheduler.stop()
