"""probpipe inside a Prefect user's world: subflows, one API, their logs, Ctrl-C, failures.

Everything runs against real Prefect servers: this session's API (shared
with the other Prefect tests) and, where the subject is Prefect's temporary
server, a fresh interpreter with its own Prefect home and no API URL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import probpipe as pp
from probpipe.testing import _rows, shared_backend
from support import REPO, default_sigint
from test_prefect_adapters import api_url, read_runs  # noqa: F401  (fixture)

pytestmark = pytest.mark.prefect

PREFECT_BACKENDS = ["prefect", "prefect-dask", "prefect-ray"]


def _client_read(url, read):
    """Run ``read(client)`` (async) against ``url`` with Prefect's own client."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def go():
        async with get_client() as client:
            return await read(client)

    with temporary_settings(updates={PREFECT_API_URL: url}):
        return asyncio.run(go())


@pytest.mark.dask
@pytest.mark.ray
@pytest.mark.parametrize("name", PREFECT_BACKENDS)
def test_a_call_inside_the_users_flow_is_a_subflow_on_its_api(api_url, name):  # noqa: F811
    from prefect import flow
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL, temporary_settings

    wf = pp.WorkflowFunction(_rows.noisy_value, backend=shared_backend(name), seed=3)
    seen = {}

    @flow(name=f"users-flow-{name}")
    def users_flow():
        seen["parent"] = FlowRunContext.get().flow_run.id
        return wf(pp.Normal(0, 1))

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        got = users_flow()
    want = wf.with_options(backend="sequential")(pp.Normal(0, 1))
    assert (got.samples == want.samples).all()

    async def children(client):
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[seen["parent"]])
            )
        )
        return [(r.name, r.parent_task_run_id, r.state_type.value) for r in runs]

    [(child, parent_task, state)] = _client_read(api_url, children)
    assert child == "noisy_value" and parent_task is not None and state == "COMPLETED"


def test_collected_failures_show_in_the_final_state_and_an_artifact(api_url):  # noqa: F811
    wf = pp.WorkflowFunction(
        _rows.fail_on, backend=shared_backend("prefect"), seed=1, on_error="collect"
    )
    got = wf(x=pp.sweep(range(20)), bad=(3, 11, 12))
    assert [got[i] for i in (3, 11, 12)] == [None, None, None]
    runs, _ = read_runs(api_url, flow_name="fail_on")
    run = runs[0]
    assert run.state_type.value == "COMPLETED"
    assert run.state.message.startswith("3 of 20 rows failed: ")
    assert "(row 3)" in run.state.message

    async def artifacts(client):
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )

    [artifact] = _client_read(api_url, artifacts)
    assert artifact.type == "markdown"
    assert "| 3 |" in artifact.data and "| 11 |" in artifact.data and "| 12 |" in artifact.data
    assert "| prefect |" in artifact.data


def _script(body: str) -> str:
    return textwrap.dedent(body)


def _run(code: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


TEMPORARY_SERVER_SCRIPT = """
import json, logging
import probpipe as pp
from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.server.api.server import SubprocessASGIServer
from probpipe.engines import prefect as prefect_engine
from probpipe.testing import _rows

@flow(name="users-flow")
def users_flow():
    logger = get_run_logger()
    logger.info("user says before")
    wf = pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=6, seed=2)
    result = wf(pp.Normal(0, 1))
    logger.info("user says after")
    logging.getLogger("users.own").warning("user's own logger after")
    return FlowRunContext.get().flow_run.id, result.samples.tolist()

with pp.use_backend("prefect-dask"):
    parent, samples = users_flow()
    servers = [s.api_url for s in SubprocessASGIServer._instances.values() if s.running]
    print("RESULT " + json.dumps({"parent": str(parent), "samples": samples,
                                  "servers": servers, "probpipe_api": prefect_engine.api_url()}))
"""


@pytest.mark.dask
def test_inside_a_flow_on_prefects_temporary_server_one_server_and_the_users_logs(tmp_path):
    env = {"PREFECT_HOME": str(tmp_path / "home"), "PREFECT_API_URL": ""}
    # Prefect's own default (20 s) is short for its server on a busy 2-core machine.
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    env["PREFECT_LOGGING_LEVEL"] = "INFO"
    done = _run(_script(TEMPORARY_SERVER_SCRIPT), env)
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    result = json.loads(line[len("RESULT ") :])
    assert result["servers"] == [result["probpipe_api"]]  # one server, shared
    want = pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=6, seed=2)(pp.Normal(0, 1))
    assert result["samples"] == want.samples.tolist()
    printed = done.stdout + done.stderr
    for line in ("user says before", "user says after", "user's own logger after"):
        assert line in printed, printed[-3000:]
    assert "Finished in state Completed()" in printed  # Prefect's own line for the user's flow
    assert "database is locked" not in printed
    assert "Still processing items" not in printed  # events were sent before exit


CTRL_C_SCRIPT = """
import sys, time
import probpipe as pp
from probpipe.engines import prefect as prefect_engine

def long_row(x, marker):
    import pathlib, time
    pathlib.Path(marker, f"started-{x}").touch()
    time.sleep(60)
    return x

def plus_one(x):
    return x + 1

if __name__ == "__main__":
    options = {"max_workers": 2} if sys.argv[1] == "prefect" else {}
    pp.use_backend(sys.argv[1], **options)
    wf = pp.WorkflowFunction(long_row, seed=1, chunksize=1)
    try:
        wf(x=pp.sweep(range(4)), marker=sys.argv[2])
    except KeyboardInterrupt:
        print("INTERRUPTED", time.time(), flush=True)
    quick = pp.WorkflowFunction(plus_one, seed=1)
    print("SECOND", list(quick(x=pp.sweep(range(3)))), flush=True)
"""


@pytest.mark.dask
@pytest.mark.ray
@pytest.mark.parametrize("name", PREFECT_BACKENDS)
def test_ctrl_c_returns_within_5_s_and_leaves_the_run_cancelled(api_url, name, tmp_path):  # noqa: F811
    script = tmp_path / "ctrl_c.py"
    script.write_text(_script(CTRL_C_SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script), name, str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": api_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 180
        while not list(tmp_path.glob("started-*")):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no row started"
            time.sleep(0.2)
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    [interrupted] = [float(x.split()[1]) for x in out.splitlines() if x.startswith("INTERRUPTED")]
    assert interrupted - sent < 5, f"Ctrl-C took {interrupted - sent:.1f} s to return"
    assert "SECOND [1, 2, 3]" in out
    time.sleep(3)  # let the workers' last events reach the server
    runs, tasks = read_runs(api_url, flow_name="long_row")
    run = runs[0]  # the newest: this test's
    assert run.state_type.value == "CANCELLED", run.state
    states = {t.state_type.value for t in tasks[run.id]}
    # No task run is left unfinished. Rows that had started show Cancelled; a
    # task whose worker was stopped before it reported anything never existed
    # on the server. In-process (prefect) the started rows are always known.
    assert states <= {"CANCELLED", "COMPLETED"}, states
    if name == "prefect":
        assert "CANCELLED" in states, states


def test_prefects_own_cli_lists_the_runs(api_url):  # noqa: F811
    wf = pp.WorkflowFunction(_rows.noisy_value, backend=shared_backend("prefect"), seed=4)
    wf(pp.Normal(0, 1))
    prefect_cli = str(Path(sys.executable).with_name("prefect"))
    for command in (["flow-run", "ls"], ["flow", "ls"]):
        done = subprocess.run(
            [prefect_cli, *command],
            env={**os.environ, "PREFECT_API_URL": api_url, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        if command[0] == "flow-run":  # the newest run is listed first
            assert "noisy_value" in done.stdout
