"""The Prefect adapters on real engines: the API, visibility, pitfalls, lifecycle.

Backends come from ``shared_backend`` (one per session). Checks that must see
a whole process lifetime (what is started and stopped, what is printed) run
in fresh interpreters pointed at this session's Prefect API.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import time

import psutil
import pytest
from packaging.version import Version

import probpipe as pp
from probpipe.engines import prefect as prefect_engine
from probpipe.testing import _rows, shared_backend
from support import alive, free_port, run_script

pytestmark = pytest.mark.prefect


def call(backend, func=_rows.noisy_value, n=8, **options):
    wf = pp.WorkflowFunction(func, backend=backend, n_broadcast_samples=n, seed=7, **options)
    return wf(pp.Normal(0, 1))


@pytest.fixture(scope="module")
def api_url():
    """This session's Prefect API (started by the first Prefect backend)."""
    call(shared_backend("prefect"), n=2)
    return prefect_engine.api_url()


def read_runs(api_url: str, flow_run_id=None, flow_name=None, wait_for_tasks: int = 0):
    """Flow runs (and their task runs) read back through Prefect's own client."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def read():
        async with get_client() as client:
            flows = FlowFilter(name=FlowFilterName(any_=[flow_name])) if flow_name else None
            # sort= must be given: prefect 3.8.8's client sends null, which its
            # own server rejects (422)
            runs = await client.read_flow_runs(
                flow_filter=flows, limit=200, sort=FlowRunSort.START_TIME_DESC
            )
            tasks = {}
            for run in runs:
                if flow_run_id is None or run.id == flow_run_id:
                    tasks[run.id] = await client.read_task_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                        limit=200,
                        sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                    )
            return runs, tasks

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        deadline = time.monotonic() + 30
        while True:  # task runs are recorded from events, a moment after they finish
            runs, tasks = asyncio.run(read())
            if not wait_for_tasks or sum(len(t) for t in tasks.values()) >= wait_for_tasks:
                return runs, tasks
            if time.monotonic() > deadline:
                return runs, tasks
            time.sleep(0.5)


def test_fastapi_pin_keeps_prefects_api_working(api_url):
    # prefect 3.8.x cannot start its API with fastapi >= 0.155 (engine-figures P1)
    if Version(importlib.metadata.version("prefect")) < Version("3.9.1"):
        assert Version(importlib.metadata.version("fastapi")) < Version("0.155")
    import httpx

    assert api_url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{api_url}/health", timeout=10).status_code == 200


def bagging_step(x, rng=None):
    return x + rng.normal()


@pytest.mark.parametrize("name", ["prefect", "prefect-ray"])
def test_each_call_is_a_flow_run_and_each_chunk_a_task_run(api_url, name):
    # A module-level function: Ray workers import it from this test module.
    wf = pp.WorkflowFunction(
        bagging_step, backend=shared_backend(name), n_broadcast_samples=9, seed=3, chunksize=2
    )
    result = wf(pp.Normal(0, 1))
    n_chunks = result.provenance.metadata["n_chunks"]
    assert n_chunks == 5
    expected = sorted(
        [f"bagging_step[rows {i}-{i + 1}]" for i in range(0, 8, 2)] + ["bagging_step[row 8]"]
    )
    deadline = time.monotonic() + 30
    # Prefect records task runs, then their custom names and final states, from
    # events: the server catches up a moment after the call returns.
    while True:
        runs, tasks = read_runs(api_url, flow_name="bagging_step", wait_for_tasks=n_chunks)
        mine = [r for r in runs if sorted(t.name for t in tasks.get(r.id, ())) == expected]
        settled = mine and all(t.state_type.value == "COMPLETED" for t in tasks[mine[0].id])
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert mine, f"no flow run with task runs {expected}: {tasks}"
    run = mine[0]
    assert run.name == "bagging_step" and run.state_type.value == "COMPLETED"
    states = [t.state_type.value for t in tasks[run.id]]
    assert states == ["COMPLETED"] * n_chunks, states
    assert all(t.cache_key is None for t in tasks[run.id])  # inputs never hashed


def test_a_failed_call_is_a_failed_flow_run(api_url):
    wf = pp.WorkflowFunction(_rows.fail_on, backend=shared_backend("prefect"), seed=1)
    with pytest.raises(_rows.ConformanceError):
        wf(x=pp.sweep(range(4)), bad=(2,))
    runs, _ = read_runs(api_url, flow_name="fail_on")
    assert any(
        r.state_type.value == "FAILED" and "ConformanceError" in (r.state.message or "")
        for r in runs
    )


def test_dask_submissions_are_never_deduplicated():
    backend = shared_backend("prefect-dask")
    call(backend, n=2)
    client = backend._cluster.client
    first = client.submit(_rows.identity, 1)
    second = client.submit(_rows.identity, 1)
    assert first.key != second.key  # Dask's default (pure=True) would give one key
    assert client.gather([first, second]) == [1, 1]


@pytest.mark.parametrize("name", ["prefect-dask", "prefect-ray"])
def test_engine_started_once_and_reused(name):
    backend = shared_backend(name)
    call(backend)
    before = _engine_identity(backend)
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    call(backend)
    call(backend)
    assert _engine_identity(backend) == before
    # No new cluster per call: at most Ray/Dask worker churn, never new roots.
    new_roots = {p.pid for p in psutil.Process().children()} - children
    assert not new_roots


def _engine_identity(backend):
    if backend.name == "prefect-dask":
        return backend._cluster.scheduler_address()
    import ray

    return ray.get_runtime_context().gcs_address


@pytest.mark.parametrize("name", ["prefect-dask", "prefect-ray"])
def test_workers_use_our_api_instead_of_starting_their_own(name):
    backend = shared_backend(name)
    call(backend, func=_rows.slow_first, n=4, chunksize=1)
    servers = [
        p for p in psutil.Process().children(recursive=True) if "uvicorn" in " ".join(_cmdline(p))
    ]
    # Exactly one API server: probpipe's (Prefect's own temporary server
    # would be `prefect.server.api.server:create_app` in a worker's subtree).
    assert [
        ("probpipe.engines._prefect_app:create_app" in " ".join(_cmdline(p))) for p in servers
    ] == [True]


def _cmdline(process):
    try:
        return process.cmdline()
    except psutil.Error:
        return []


LIFECYCLE = """
    import json, psutil
    import probpipe as pp
    from probpipe.testing import _rows

    def tree():
        # multiprocessing's resource tracker belongs to the interpreter (it
        # serves every later multiprocessing use and exits with it)
        return [p.pid for p in psutil.Process().children(recursive=True)
                if "multiprocessing.resource_tracker" not in " ".join(p.cmdline())]

    before = tree()
    f = pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=8, seed=1)
    with pp.use_backend({name!r}) as backend:
        f(pp.Normal(0, 1))
        started = [p for p in tree() if p not in before]
        f(pp.Normal(0, 1))
        again = [p for p in tree() if p not in before]
    after = tree()
    print(json.dumps({{"started": started, "again": again, "after": after, "before": before}}))
"""


@pytest.mark.parametrize("name", ["prefect-dask", "prefect-ray"])
def test_everything_started_is_stopped_on_exit(api_url, name):
    out = run_script(LIFECYCLE.format(name=name), env={"PREFECT_API_URL": api_url})
    assert out["started"], "the backend started its engine"
    assert set(out["started"]) <= set(out["again"])  # the same engine served call 2
    assert alive(out["started"] + out["again"]) == []
    assert set(out["after"]) <= set(out["before"])


def test_prefect_server_started_by_probpipe_is_stopped_on_exit(tmp_path):
    out = run_script(
        """
        import json
        import probpipe as pp
        from probpipe.engines import prefect as engine
        from probpipe.testing import _rows
        f = pp.WorkflowFunction(_rows.identity, n_broadcast_samples=2)
        with pp.use_backend("prefect"):
            f(pp.Normal(0, 1))
            pid, owned, url = engine.server_pid(), engine.owns_server(), engine.api_url()
        print(json.dumps({"pid": pid, "owned": owned, "url": url, "after": engine.api_url()}))
    """,
        env={"PREFECT_HOME": str(tmp_path)},
    )
    assert out["owned"] and out["url"].startswith("http://127.0.0.1:")
    assert out["after"] is None
    assert alive([out["pid"]]) == []
    assert (tmp_path / "probpipe-prefect-server.log").exists()


def test_a_wrong_engine_address_fails_fast_and_leaves_no_api_server(tmp_path):
    # The temporary API server's process is launched before the engine starts
    # (it boots meanwhile); when the engine cannot start, it is stopped again.
    out = run_script(
        f"""
        import json, time
        import psutil
        import probpipe as pp
        from probpipe.engines import prefect as engine
        from probpipe.testing import _rows
        f = pp.WorkflowFunction(_rows.identity, n_broadcast_samples=2)
        started = time.monotonic()
        try:
            with pp.use_backend("prefect-dask", address="tcp://127.0.0.1:{free_port()}"):
                f(pp.Normal(0, 1))
        except Exception as exc:
            error = type(exc).__name__ + ": " + str(exc)
        seconds = time.monotonic() - started
        servers = [p.pid for p in psutil.Process().children(recursive=True)
                   if "_prefect_app" in " ".join(p.cmdline())]
        with pp.use_backend("prefect"):
            again = f(pp.Normal(0, 1)).samples.tolist()
            owned = engine.owns_server()
        print(json.dumps({{"error": error, "seconds": seconds, "servers": servers,
                          "again": again, "owned": owned}}))
    """,
        env={"PREFECT_HOME": str(tmp_path)},
    )
    assert out["error"].startswith("BackendConnectionError"), out["error"]
    assert "127.0.0.1" in out["error"]
    assert out["seconds"] < 10, out
    assert out["servers"] == []  # the launched server did not outlive the failure
    assert len(out["again"]) == 2 and out["owned"]  # and a later backend starts its own


QUIET = """
    import json
    import probpipe as pp
    from probpipe.testing import _rows
    f = pp.WorkflowFunction(_rows.fail_on, n_broadcast_samples=4, seed=1,
                            on_error="collect")
    with pp.use_backend("prefect-dask"):
        for _ in range(2):
            f(x=pp.sweep(range(6)), bad=(3,))
    print(json.dumps({}))
"""


def test_engine_logs_are_quiet_by_default_with_one_switch(api_url):
    quiet = run_script(QUIET, env={"PREFECT_API_URL": api_url})
    loud = run_script(QUIET, env={"PREFECT_API_URL": api_url, "PROBPIPE_ENGINE_LOGS": "INFO"})
    quiet_lines = (quiet["_stdout"] + quiet["_stderr"]).strip().splitlines()
    loud_lines = (loud["_stdout"] + loud["_stderr"]).strip().splitlines()
    assert quiet_lines == ["{}"], quiet_lines[:20]
    assert len(loud_lines) > 10
    assert any("Task run" in line or "distributed" in line for line in loud_lines)


def test_call_provenance_names_the_prefect_api(api_url):
    result = call(shared_backend("prefect"))
    meta = result.provenance.metadata
    assert meta["orchestrate"] == "task"
    assert meta["backend_options"] == {"max_workers": 1, "prefect_api": "started by probpipe"}
    json.dumps(meta)


@pytest.mark.parametrize("name", ["prefect-dask", "prefect-ray"])
def test_what_a_backend_started_is_stopped_at_interpreter_exit(api_url, name):
    out = run_script(
        f"""
        import json, psutil
        import probpipe as pp
        from probpipe.testing import _rows
        pp.use_backend({name!r})  # never closed explicitly
        pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=4, seed=1)(pp.Normal(0, 1))
        kids = [p.pid for p in psutil.Process().children(recursive=True)
                if "resource_tracker" not in " ".join(p.cmdline())]
        print(json.dumps({{"kids": kids}}))
    """,
        env={"PREFECT_API_URL": api_url},
    )
    assert out["kids"]
    deadline = time.monotonic() + 30
    while alive(out["kids"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(out["kids"]) == []
