"""Reliability on real engines: loopback only, Ctrl-C, crash and resume, checkpoints.

Worker death, timeouts and fail-fast are in the conformance suite (every
backend runs them); these are the checks that need whole processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest

import probpipe as pp
from probpipe.engines import prefect as prefect_engine
from probpipe.testing import _rows, shared_backend
from support import REPO, alive, default_sigint

HAS_RAY_PLUGIN = "ray" in pp.available_backends()
PROCESS_BACKEND = "ray" if HAS_RAY_PLUGIN else "prefect-dask"


def probpipe_processes() -> list[psutil.Process]:
    """This process, what it started in its own session, and probpipe's Prefect server."""
    me = psutil.Process()
    session = os.getsid(0)
    procs = [me]
    for child in me.children(recursive=True):
        try:
            if os.getsid(child.pid) == session:  # fixtures start clusters in new sessions
                procs.append(child)
        except (ProcessLookupError, psutil.Error):
            pass
    server = prefect_engine.server_pid()
    if server:
        procs.append(psutil.Process(server))
        procs.extend(psutil.Process(server).children(recursive=True))
    return procs


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


@pytest.mark.prefect
@pytest.mark.dask
@pytest.mark.ray
def test_everything_probpipe_starts_listens_on_loopback_only():
    names = ["prefect", "prefect-dask", "prefect-ray"] + (["ray"] if HAS_RAY_PLUGIN else [])
    for name in names:
        result = pp.WorkflowFunction(
            _rows.noisy_value, backend=shared_backend(name), n_broadcast_samples=4, seed=1
        )(pp.Normal(0, 1))
        assert result.provenance.metadata["backend"] == name
    pids = {p.pid for p in probpipe_processes()}
    sockets = [
        c
        for c in psutil.net_connections(kind="inet")
        if c.pid in pids and c.laddr and (c.status == psutil.CONN_LISTEN or c.type == 2)
    ]
    kinds = {psutil.Process(c.pid).name() for c in sockets}
    assert len(sockets) >= 5 and {"gcs_server", "raylet"} <= kinds, kinds
    exposed = [
        (psutil.Process(c.pid).name(), c.laddr) for c in sockets if c.laddr.ip not in LOOPBACK
    ]
    assert exposed == [], f"listening beyond loopback: {exposed}"


# ---------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------

INTERRUPTED = """
    import json, os, psutil
    import probpipe as pp
    from probpipe.testing import _rows

    def tree():
        return sorted(p.pid for p in psutil.Process().children(recursive=True)
                      if "resource_tracker" not in " ".join(p.cmdline()))

    before = tree()
    pp.use_backend({name!r})
    f = pp.WorkflowFunction(_rows.marked_value, chunksize=1, seed=1)
    try:
        f(x=pp.sweep(range(40)), marker_dir={markers!r}, seconds=1.0)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    left = tree()
    again = pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=4, seed=3)(pp.Normal(0, 1))
    print(json.dumps({{"interrupted": interrupted, "before": before, "left": left,
                       "again": again.samples.tolist()}}))
"""


def wait_for_files(directory, count, timeout=180, proc=None):
    deadline = time.monotonic() + timeout
    while len(os.listdir(directory)) < count:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"the run ended early:\n{proc.stdout.read()}\n{proc.stderr.read()}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} files in {directory} after {timeout} s")
        time.sleep(0.2)


def start_script(code, env):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, **env},
        preexec_fn=default_sigint,
    )


@pytest.mark.parametrize("name", ["prefect-dask"] + (["ray"] if HAS_RAY_PLUGIN else []))
def test_ctrl_c_cancels_work_and_stops_everything_and_the_next_call_works(tmp_path, name):
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {"PREFECT_API_URL": _session_api()} if name.startswith("prefect") else {}
    proc = start_script(INTERRUPTED.format(name=name, markers=str(markers)), env)
    wait_for_files(markers, 2, proc=proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["interrupted"] is True
    assert result["left"] == result["before"], "processes left running after Ctrl-C"
    ran = len(os.listdir(markers))
    assert ran < 40, "outstanding rows were not cancelled"
    want = pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=4, seed=3)(pp.Normal(0, 1))
    np.testing.assert_array_equal(result["again"], want.samples)


def _session_api() -> str:
    pp.WorkflowFunction(_rows.identity, backend=shared_backend("prefect"), n_broadcast_samples=1)(
        pp.Normal(0, 1)
    )
    return prefect_engine.api_url()


# ---------------------------------------------------------------------------
# Crash and resume
# ---------------------------------------------------------------------------

CRASHING = """
    import probpipe as pp
    from probpipe.testing import _rows
    f = pp.WorkflowFunction(_rows.marked_value, backend={name!r}, chunksize=2, seed=11,
                            checkpoint={checkpoint!r})
    f(x=pp.sweep(range(24)), marker_dir={markers!r}, seconds=0.3)
"""


def test_a_crashed_run_resumes_with_only_the_missing_rows(tmp_path):
    checkpoint, markers = tmp_path / "ckpt", tmp_path / "markers"
    markers.mkdir()
    env = {"PREFECT_API_URL": _session_api()}
    proc = start_script(
        CRASHING.format(name=PROCESS_BACKEND, checkpoint=str(checkpoint), markers=str(markers)), env
    )
    wait_for_files(markers, 1, proc=proc)
    wait_for_files(checkpoint, 4, proc=proc)  # manifest + at least three chunks
    crashed_tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    os.killpg(proc.pid, signal.SIGKILL)  # a crash: no cleanup, no flush
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while alive(crashed_tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(crashed_tree) == [], "processes of the crashed run kept running"
    crashed_at = time.time_ns()

    f = pp.WorkflowFunction(
        _rows.marked_value,
        backend=shared_backend("prefect-dask"),
        chunksize=2,
        seed=11,
        checkpoint=str(checkpoint),
    )
    resumed = f(x=pp.sweep(range(24)), marker_dir=str(markers), seconds=0.3)
    restored = resumed.provenance.metadata["n_rows_restored"]
    rerun = [m for m in os.listdir(markers) if int(m.rsplit("-", 1)[1]) > crashed_at]
    assert 6 <= restored < 24
    assert len(rerun) == 24 - restored  # only the missing rows ran again

    plain = pp.WorkflowFunction(_rows.marked_value, seed=11)
    want = plain(x=pp.sweep(range(24)), marker_dir=str(tmp_path), seconds=0.3)
    assert list(resumed) == list(want)  # bit-identical to an uninterrupted run


# ---------------------------------------------------------------------------
# Checkpoint rules (in-process)
# ---------------------------------------------------------------------------


def counted(x, rng):
    counted.calls += 1
    return x + rng.normal()


counted.calls = 0


def run(directory, n=10, seed=None, **options):
    wf = pp.WorkflowFunction(
        counted, n_broadcast_samples=n, seed=seed, chunksize=3, checkpoint=str(directory), **options
    )
    return wf(pp.Normal(0, 1))


def test_resume_computes_only_missing_rows_and_matches(tmp_path):
    first = run(tmp_path, seed=5)
    chunks = sorted(tmp_path.glob("rows-*.ckpt"))
    assert len(chunks) == 4
    chunks[1].unlink()  # as if the run had died before this chunk finished
    counted.calls = 0
    second = run(tmp_path, seed=5)
    assert counted.calls == 3
    assert second.provenance.metadata["n_rows_restored"] == 7
    np.testing.assert_array_equal(first.samples, second.samples)


def test_unseeded_call_resumes_with_its_recorded_seed(tmp_path):
    first = run(tmp_path)
    counted.calls = 0
    second = run(tmp_path)
    assert counted.calls == 0
    assert second.provenance.metadata["seed"] == first.provenance.metadata["seed"]
    np.testing.assert_array_equal(first.samples, second.samples)


@pytest.mark.parametrize("change", [{"n": 11}, {"seed": 6}])
def test_a_checkpoint_from_a_different_call_is_refused(tmp_path, change):
    run(tmp_path, seed=5)
    with pytest.raises(pp.CheckpointError, match="different call"):
        run(tmp_path, **{"seed": 5, **change})


def test_different_inputs_are_a_different_call(tmp_path):
    run(tmp_path, seed=5)
    wf = pp.WorkflowFunction(counted, n_broadcast_samples=10, seed=5, checkpoint=str(tmp_path))
    with pytest.raises(pp.CheckpointError, match="different call: argument x differ"):
        wf(pp.Normal(0, 2))


def test_corrupted_file_is_refused(tmp_path):
    run(tmp_path, seed=5)
    victim = sorted(tmp_path.glob("rows-*.ckpt"))[0]
    blob = bytearray(victim.read_bytes())
    blob[-5] ^= 0xFF
    victim.write_bytes(bytes(blob))
    corrupt = r"rows-00000000-00000002.ckpt is corrupt or was modified"
    with pytest.raises(pp.CheckpointError, match=corrupt):
        run(tmp_path, seed=5)


def test_a_file_from_another_call_is_not_mixed_in(tmp_path):
    run(tmp_path / "a", seed=5)
    run(tmp_path / "b", seed=6)
    shutil.copy(
        sorted((tmp_path / "b").glob("rows-*.ckpt"))[0],
        tmp_path / "a" / "rows-00000000-00000002.ckpt",
    )
    with pytest.raises(pp.CheckpointError, match="belongs to a different call"):
        run(tmp_path / "a", seed=5)


def test_restored_rows_are_reported_to_observers(tmp_path):
    run(tmp_path, seed=5)
    seen = []

    class Observer:
        @pp.hookimpl
        def probpipe_rows_finished(self, call, rows, failed):
            seen.append(list(rows))

    observer = Observer()
    pp.register_plugin(observer)
    try:
        run(tmp_path, seed=5)
    finally:
        pp.unregister_plugin(observer)
    assert seen == [list(range(10))]
