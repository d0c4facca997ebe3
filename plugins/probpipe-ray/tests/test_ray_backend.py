"""The native Ray backend beyond the conformance suite: registration, options,
the object store, and resource hints. Real Ray, no mocks."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import numpy as np
import pytest
import ray_rows

import probpipe as pp
from probpipe.engines import ray as ray_engine

# -- registration -------------------------------------------------------------


def test_registered_only_through_the_probpipe_entry_point():
    eps = [ep for ep in importlib.metadata.entry_points(group="probpipe") if ep.name == "ray"]
    assert len(eps) == 1
    assert eps[0].value == "probpipe_ray.plugin"
    assert eps[0].dist.name == "probpipe-ray"
    info = pp.available_backends()["ray"]
    assert info.source.startswith("probpipe-ray ")
    assert info.installed and info.provenance_tag == "ray"
    assert info.install_hint == "pip install probpipe-ray"


def test_importing_the_plugin_does_not_import_ray():
    code = (
        "import sys, probpipe as pp, probpipe_ray.plugin\n"
        "pp.available_backends()\n"
        "pp.use_backend('ray', address='auto', num_cpus=1)\n"  # validated, not started
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# -- options, checked at use_backend time ----------------------------------------


def test_misspelled_option_suggests_the_right_one():
    with pytest.raises(TypeError, match="Did you mean 'address'"):
        pp.use_backend("ray", adress="auto")


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"address": "not an address"}, ValueError, "address"),
        ({"address": "http://head:6379"}, ValueError, "address"),
        ({"address": 6379}, ValueError, "address"),
        ({"num_cpus": -1}, ValueError, "num_cpus"),
        ({"num_gpus": "1"}, TypeError, "num_gpus"),
        ({"memory": float("nan")}, ValueError, "memory"),
        ({"resources": {"CPU": 1}}, ValueError, "num_cpus"),
        ({"resources": {"accelerator": -2}}, ValueError, "accelerator"),
        ({"resources": ["accelerator"]}, TypeError, "resources"),
        ({"init_options": "num_cpus=2"}, TypeError, "init_options"),
    ],
)
def test_bad_options_fail_at_use_backend(options, error, match):
    with pytest.raises(error, match=match):
        pp.use_backend("ray", **options)


def test_describe_is_json_safe_and_names_the_cluster(ray_backend):
    f = pp.WorkflowFunction(ray_rows.noisy, backend=ray_backend, n_broadcast_samples=4, seed=1)
    meta = f(pp.Normal(0, 1)).provenance.metadata
    assert meta["orchestrate"] == "ray"
    assert meta["backend_options"]["address"] is None
    assert meta["backend_options"]["gcs_address"].startswith("127.0.0.1:")


# -- the object store ---------------------------------------------------------------


def test_large_constant_is_put_once_across_calls(ray_backend, monkeypatch):
    puts = []
    real_put = ray_engine.put

    def counting_put(value, key):
        puts.append(value)
        return real_put(value, key)

    monkeypatch.setattr(ray_engine, "put", counting_put)
    data = np.random.default_rng(7).normal(size=(625, 1000))  # 5 MB
    f = pp.WorkflowFunction(ray_rows.weighted_sum, n_broadcast_samples=16, seed=3)
    first = f.with_options(backend=ray_backend)(data, pp.Normal(0, 1))
    second = f.with_options(backend=ray_backend)(data, pp.Normal(0, 1))
    assert sum(isinstance(v, np.ndarray) and v.shape == data.shape for v in puts) == 1
    want = f.with_options(backend="sequential")(data, pp.Normal(0, 1))
    np.testing.assert_array_equal(first.samples, want.samples)
    np.testing.assert_array_equal(second.samples, want.samples)


# -- resource hints -------------------------------------------------------------------


def test_per_function_resources_give_the_sequential_result(ray_backend):
    f = pp.WorkflowFunction(ray_rows.row_vector, n_broadcast_samples=10, seed=5)
    got = f.with_options(backend=ray_backend, resources={"num_cpus": 1})(pp.Normal(0, 1))
    want = f.with_options(backend="sequential")(pp.Normal(0, 1))
    np.testing.assert_array_equal(got.samples, want.samples)


def test_parallelism_counts_tasks_that_fit(ray_backend):
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    hungry = {"resources": {"num_cpus": cpus}}
    call = pp.CallInfo(call_id="t", func="f", backend="ray", n_rows=1, n_cells=1, options=hungry)
    assert ray_backend.run_call(call, lambda submit, parallelism: parallelism) == 1
    assert ray_backend.parallelism() == cpus
    f = pp.WorkflowFunction(ray_rows.noisy, n_broadcast_samples=6, seed=2)
    got = f.with_options(backend=ray_backend, resources={"num_cpus": cpus})(pp.Normal(0, 1))
    want = f.with_options(backend="sequential")(pp.Normal(0, 1))
    np.testing.assert_array_equal(got.samples, want.samples)


def test_misspelled_hint_fails_before_any_row_runs(ray_backend, tmp_path):
    log = tmp_path / "rows.txt"
    f = pp.WorkflowFunction(
        ray_rows.record_run, backend=ray_backend, n_broadcast_samples=4, resources={"num_cpu": 1}
    )
    with pytest.raises(ValueError, match="did you mean 'num_cpus'"):
        f(pp.Normal(0, 1), str(log))
    assert not log.exists()


def test_negative_hint_fails_before_any_row_runs(ray_backend, tmp_path):
    log = tmp_path / "rows.txt"
    f = pp.WorkflowFunction(
        ray_rows.record_run, backend=ray_backend, n_broadcast_samples=4, resources={"num_cpus": -1}
    )
    with pytest.raises(ValueError, match="num_cpus"):
        f(pp.Normal(0, 1), str(log))
    assert not log.exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "resources, names",
    [
        ({"resources": {"GPU_that_does_not_exist": 1}}, "GPU_that_does_not_exist"),
        ({"num_gpus": 1}, "num_gpus"),
        ({"num_cpus": 10_000}, "num_cpus"),
    ],
)
def test_infeasible_hint_fails_quickly_and_clearly(ray_backend, tmp_path, resources, names):
    import ray

    if "num_gpus" in resources and ray.cluster_resources().get("GPU"):
        pytest.skip("this cluster has a GPU")
    log = tmp_path / "rows.txt"
    f = pp.WorkflowFunction(
        ray_rows.record_run, backend=ray_backend, n_broadcast_samples=4, resources=resources
    )
    with pytest.raises(ValueError, match=rf"{names}.*The cluster has: CPU") as info:
        f(pp.Normal(0, 1), str(log))
    assert "record_run()" in str(info.value)
    assert not log.exists()


@pytest.mark.timeout(60)
def test_infeasible_backend_option_fails_at_the_call(ray_backend, tmp_path):
    import ray

    if ray.cluster_resources().get("GPU"):
        pytest.skip("this cluster has a GPU")
    log = tmp_path / "rows.txt"
    f = pp.WorkflowFunction(ray_rows.record_run, n_broadcast_samples=4)
    with pp.use_backend("ray", num_gpus=1), pytest.raises(ValueError, match="num_gpus=1"):
        f(pp.Normal(0, 1), str(log))
    assert not log.exists()


# -- lost workers ----------------------------------------------------------------------


def test_dead_worker_loses_only_its_row(ray_backend):
    f = pp.WorkflowFunction(
        ray_rows.die_on, backend=ray_backend, chunksize=4, on_error="collect", seed=0
    )
    got = f(x=pp.sweep(range(8)))
    assert list(got) == [0.0, 1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0]
    [failure] = got.provenance.metadata["failures"]
    assert failure["row"] == 3 and failure["type"].endswith("WorkerLostError")
    assert failure["attempts"] == 1  # Ray did not re-run it behind the core's back
