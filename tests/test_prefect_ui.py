"""With a real `prefect server start` and PREFECT_API_URL set, calls show up in its UI.

The server is started like a user would start it, on 127.0.0.1 with its own
PREFECT_HOME, and stopped by process id. probpipe must use it and leave it
running.
"""

from __future__ import annotations

import httpx
import pytest

from support import VENV_BIN, Started, alive, free_port, run_script

pytestmark = pytest.mark.prefect


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = free_port()
    server = Started(
        [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        home / "server.log",
        env={
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true",
        },
    )
    url = f"http://127.0.0.1:{port}/api"
    import time

    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.proc.poll() is not None:
            server.stop()
            raise RuntimeError(
                f"prefect server did not start:\n{(home / 'server.log').read_text()}"
            )
        time.sleep(0.5)
    yield {"url": url, "server": server}
    server.stop()


def test_calls_appear_as_flow_and_task_runs_on_a_users_server(prefect_server):
    url = prefect_server["url"]
    pids = prefect_server["server"].pids()
    out = run_script(
        """
        import asyncio, json, time
        import probpipe as pp
        from probpipe.engines import prefect as engine
        from probpipe.testing import _rows
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId)
        from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

        f = pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=6, seed=1, chunksize=2)
        with pp.use_backend("prefect-dask"):
            f(pp.Normal(0, 1))
            used, owned = engine.api_url(), engine.owns_server()

        async def read():
            async with get_client() as client:
                runs = await client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=["noisy_value"])),
                    sort=FlowRunSort.START_TIME_DESC, limit=10)
                tasks = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id])),
                    sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=50)
                return runs, tasks

        for _ in range(60):  # task runs are recorded from events, shortly after
            runs, tasks = asyncio.run(read())
            if len(tasks) >= 3:
                break
            time.sleep(0.5)
        print(json.dumps({"used": used, "owned": owned,
                           "flow_runs": [(r.name, r.state_type.value) for r in runs],
                           "task_runs": sorted(t.name for t in tasks)}))
    """,
        env={"PREFECT_API_URL": url},
    )
    assert out["used"] == url and out["owned"] is False
    assert out["flow_runs"][0] == ["noisy_value", "COMPLETED"]
    assert out["task_runs"] == [
        "noisy_value[rows 0-1]",
        "noisy_value[rows 2-3]",
        "noisy_value[rows 4-5]",
    ]
    assert alive(pids) == pids  # the user's server keeps running
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200
