"""Attach mode: probpipe uses clusters it did not start, and leaves them running.

A Ray head from ``ray start --head`` and a Dask scheduler with workers from
the ``dask`` command line are started by session fixtures (conftest.py) and
stopped by process id. Ray allows one connection per process, so the Ray
attach checks run in fresh interpreters.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import probpipe as pp
from probpipe.testing import _rows
from support import alive, run_script

ROWS = "from probpipe.testing import _rows"


@pytest.mark.no_ray_running
def test_auto_fails_clearly_when_no_ray_runs():
    from ray._private import services

    if services.find_gcs_addresses():
        pytest.skip("a Ray cluster is already running on this machine")
    backend = pp.use_backend("prefect-ray", address="auto")
    f = pp.WorkflowFunction(_rows.identity, backend=backend.backend)
    with pytest.raises(pp.BackendConnectionError, match=r"ray start --head"):
        f(pp.Normal(0, 1))
    assert not services.find_gcs_addresses(), "address='auto' must not start a cluster"


@pytest.mark.ray_attach
@pytest.mark.parametrize("name", ["prefect-ray", "ray"])
def test_auto_attaches_to_a_running_head_and_leaves_it_running(external_ray_head, name):
    if name not in pp.available_backends():
        pytest.skip(f"{name} is not installed")
    from ray._private import services

    others = set(services.find_gcs_addresses()) - {external_ray_head["address"]}
    if others:  # tests sort attach checks first; another session must be running Ray
        pytest.skip(f"other Ray clusters run on this machine ({others}): 'auto' is ambiguous")
    head_pids = external_ray_head["pids"]()
    out = run_script(f"""
        import json, numpy as np, ray
        import probpipe as pp
        {ROWS}
        f = pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=8, seed=5)
        with pp.use_backend({name!r}, address="auto"):
            r = f(pp.Normal(0, 1))
            nodes = [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]]
            gcs = ray.get_runtime_context().gcs_address
        print(json.dumps({{"samples": r.samples.tolist(), "nodes": nodes, "gcs": gcs,
                           "connected_after": ray.is_initialized()}}))
    """)
    assert out["gcs"] == external_ray_head["address"]
    assert out["nodes"] == ["127.0.0.1"]
    assert out["connected_after"] is False  # disconnected on exit ...
    assert alive(head_pids) == head_pids  # ... but the head is untouched
    want = pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=8, seed=5)(pp.Normal(0, 1))
    np.testing.assert_array_equal(out["samples"], want.samples)


@pytest.mark.ray_attach
def test_explicit_head_address_attaches(external_ray_head):
    out = run_script(f"""
        import json, os, psutil, ray
        import probpipe as pp
        {ROWS}
        f = pp.WorkflowFunction(_rows.pid_of_row, n_broadcast_samples=4, seed=1)
        with pp.use_backend("prefect-ray", address={external_ray_head["address"]!r}):
            r = f(pp.Normal(0, 1))
            gcs = ray.get_runtime_context().gcs_address
            mine = [os.getpid()] + [c.pid for c in psutil.Process().children(recursive=True)]
        print(json.dumps({{"gcs": gcs, "rows": [int(p) for p in r.samples], "mine": mine}}))
    """)
    assert out["gcs"] == external_ray_head["address"]
    # Rows ran in the head's workers, not in anything the driver started.
    assert not set(out["rows"]) & set(out["mine"])


@pytest.mark.dask
def test_dask_address_attaches_and_leaves_the_scheduler_running(external_dask_scheduler):
    from distributed import Client

    address = external_dask_scheduler["address"]
    before = external_dask_scheduler["scheduler"].pids() + external_dask_scheduler["workers"].pids()
    f = pp.WorkflowFunction(_rows.pid_of_row, n_broadcast_samples=6, seed=2, chunksize=1)
    with pp.use_backend("prefect-dask", address=address) as backend:
        r = f(pp.Normal(0, 1))
        assert backend.describe()["scheduler"] == address
    worker_pids = set(external_dask_scheduler["workers"].pids())
    assert {int(p) for p in r.samples} <= worker_pids
    assert alive(before) == before
    with Client(address, timeout="10s") as client:  # still serving
        assert client.submit(sum, [1, 2], pure=False).result() == 3


def test_attach_results_are_json_safe_in_provenance(external_dask_scheduler):
    f = pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=4, seed=2)
    with pp.use_backend("prefect-dask", address=external_dask_scheduler["address"]):
        r = f(pp.Normal(0, 1))
    meta = r.provenance.metadata
    assert meta["backend_options"]["address"] == external_dask_scheduler["address"]
    json.dumps(r.provenance.to_dict())
