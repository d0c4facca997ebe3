"""The backend conformance suite, shipped as a pytest plugin.

Every backend, shipped or third-party, must give the same results, the same
errors and the same ordering as ``sequential``. Run the whole suite against
yours with two lines::

    from probpipe.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend_name = "my-backend"
        backend_options = {}          # passed to use_backend / the constructor

The backend is started once per test session (shared by every test that asks
for the same name and options) and stopped when the session ends, by this
module's pytest hook. The plugin is opt-in, so it never loads into anyone
else's pytest runs: enable it with ``-p probpipe.testing`` (say, in
``addopts``) or ``pytest_plugins = ["probpipe.testing"]`` in a conftest.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

import probpipe as pp

from .._provenance import json_safe
from .._selection import create_backend
from .._session import session_for
from .._worker import run_item
from . import _rows

__all__ = ["BackendConformance", "close_shared_backends", "shared_backend"]

_shared: dict[str, Any] = {}


def shared_backend(name: str, **options: Any) -> Any:
    """A backend instance shared by the whole test session (started on first use)."""
    key = f"{name}:{json.dumps(json_safe(options), sort_keys=True)}"
    if key not in _shared:
        _shared[key] = create_backend(name, **options)
    return _shared[key]


def close_shared_backends() -> None:
    """Stop every backend :func:`shared_backend` created (in reverse order)."""
    for key in reversed(list(_shared)):
        session_for(_shared.pop(key)).close()


def pytest_sessionfinish(session: Any, exitstatus: Any) -> None:
    close_shared_backends()


class _CountMaps:
    """An observer plugin counting dispatched calls."""

    def __init__(self) -> None:
        self.started = 0

    @pp.hookimpl
    def probpipe_map_started(self, call):
        self.started += 1


def _same_result(a: Any, b: Any) -> None:
    """Assert two call results are the same, bit for bit."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, pp.SweepResult):
        assert a.coords == b.coords
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same_result(x, y)
    elif isinstance(a, pp.EmpiricalDistribution):
        np.testing.assert_array_equal(a.samples, b.samples)
        np.testing.assert_array_equal(a.weights, b.weights)
    elif isinstance(a, pp.MixtureDistribution):
        assert len(a.components) == len(b.components)
        for x, y in zip(a.components, b.components):
            _same_result(x, y)
    elif isinstance(a, pp.ItemsResult):
        assert a.items == b.items
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


class BackendConformance:
    """Subclass with ``backend_name`` (and ``backend_options``) to test a backend."""

    backend_name: str = ""
    backend_options: dict[str, Any] = {}
    n = 12

    @pytest.fixture
    def backend(self) -> Any:
        if not self.backend_name:
            pytest.skip("set backend_name on the BackendConformance subclass")
        return shared_backend(self.backend_name, **self.backend_options)

    def run(self, backend: Any, func: Any, *args: Any, **options: Any) -> tuple[Any, Any]:
        """(result on ``backend``, result on sequential) of ``func(*args)``."""
        kwargs = options.pop("kwargs", {})
        got = self.run_on(backend, func, *args, kwargs=kwargs, **options)
        return got, self.run_on("sequential", func, *args, kwargs=kwargs, **options)

    def run_on(self, backend: Any, func: Any, *args: Any, kwargs: Any = None, **options: Any):
        options = {"n_broadcast_samples": self.n, "seed": 1234, **options}
        return pp.WorkflowFunction(func, backend=backend, **options)(*args, **(kwargs or {}))

    # -- identical results ---------------------------------------------------
    def test_scalar_rows_match_sequential(self, backend):
        got, want = self.run(backend, _rows.noisy_value, pp.Normal(1.0, 2.0))
        assert isinstance(got, pp.EmpiricalDistribution)
        _same_result(got, want)

    def test_vector_rows_match_sequential(self, backend):
        got, want = self.run(backend, _rows.vector_value, pp.Uniform(0, 1))
        assert got.samples.shape == (self.n, 3)
        _same_result(got, want)

    def test_cosampled_bootstrap_matches_sequential(self, backend):
        rng = np.random.default_rng(0)
        X = rng.normal(size=40)
        data = pp.Record(X=X, y=2 * X + rng.normal(size=40))
        boot = pp.BootstrapReplicateDistribution(data)
        got, want = self.run(backend, _rows.bootstrap_stats, boot["X"], boot["y"])
        _same_result(got, want)

    def test_distribution_rows_give_a_mixture(self, backend):
        got, want = self.run(backend, _rows.gaussian_posterior, pp.Normal(0, 1))
        assert isinstance(got, pp.MixtureDistribution)
        _same_result(got, want)

    def test_other_rows_give_items(self, backend):
        got, want = self.run(backend, _rows.describe_row, pp.Uniform(0, 1), kwargs={"label": "r"})
        assert isinstance(got, pp.ItemsResult)
        _same_result(got, want)

    def test_sweep_with_distributions_in_one_map(self, backend):
        got, want = self.run(
            backend, _rows.noisy_value, pp.Normal(0, 1), kwargs={"scale": pp.sweep([1.0, -2.0])}
        )
        assert got.provenance.metadata["n_rows"] == 2 * self.n
        _same_result(got, want)

    @pytest.mark.parametrize("chunksize", [1, 3, 7, 1000, "auto"])
    def test_every_chunksize_gives_the_same_result(self, backend, chunksize):
        got, want = self.run(backend, _rows.noisy_value, pp.Normal(0, 1), chunksize=chunksize)
        _same_result(got, want)

    def test_large_shared_argument(self, backend):
        data = np.arange(400_000.0).reshape(2000, 200)  # 3.2 MB: shared, not per row
        got, want = self.run(
            backend, _rows.uses_shared, kwargs={"data": data, "i": pp.sweep(range(6))}
        )
        _same_result(got, want)

    # -- ordering ------------------------------------------------------------
    def test_row_order_kept_when_rows_finish_out_of_order(self, backend):
        got, want = self.run(
            backend, _rows.slow_first, kwargs={"x": pp.sweep(range(8)), "n": 8}, chunksize=1
        )
        _same_result(got, want)
        assert [round(v - got[0]) for v in got] == list(range(8))

    # -- errors --------------------------------------------------------------
    def test_lowest_failing_row_raises_its_own_exception(self, backend):
        f = pp.WorkflowFunction(_rows.fail_on, backend=backend, seed=1, chunksize=1)
        with pytest.raises(_rows.ConformanceError, match="x=3") as info:
            f(x=pp.sweep(range(8)), bad=(3, 6))
        assert any("row 3" in note for note in getattr(info.value, "__notes__", []))

    def test_collect_keeps_good_rows_in_order(self, backend):
        got, want = self.run(
            backend,
            _rows.fail_on,
            kwargs={"x": pp.sweep(range(8)), "bad": (2, 5)},
            on_error="collect",
            chunksize=2,
        )
        _same_result(got, want)
        assert got[2] is None and got[5] is None
        failures = got.provenance.metadata["failures"]
        assert [f["row"] for f in failures] == [2, 5]
        assert all(f["type"].endswith("ConformanceError") for f in failures)

    def test_retries_reproduce_the_no_failure_result(self, backend, tmp_path):
        args = {"x": pp.sweep(range(6)), "marker_dir": str(tmp_path)}
        clean = self.run_on("sequential", _rows.fail_first_attempt, kwargs=args)
        retried = self.run_on(
            backend,
            _rows.fail_first_attempt,
            kwargs={**args, "bad": (1, 4)},
            retries=1,
            chunksize=2,
        )
        _same_result(retried, clean)
        assert retried.provenance.metadata["n_retried_rows"] == 2

    def test_unpicklable_argument_fails_before_dispatch(self, backend):
        if not session_for(backend).flag("ships_to_processes"):
            pytest.skip("this backend runs rows in this process; nothing is pickled")
        counter = _CountMaps()
        pp.register_plugin(counter)
        try:
            f = pp.WorkflowFunction(_rows.uses_shared, backend=backend)
            with pytest.raises(TypeError, match="'data'"):
                f(data=_rows.Unpicklable(), i=pp.sweep(range(3)))
        finally:
            pp.unregister_plugin(counter)
        assert counter.started == 0

    # -- reliability -------------------------------------------------------------
    def test_fail_fast_cancels_rows_not_yet_started(self, backend, tmp_path):
        f = pp.WorkflowFunction(_rows.marked_fail_first, backend=backend, seed=1, chunksize=1)
        n = 16
        with pytest.raises(_rows.ConformanceError, match="row 0"):
            f(x=pp.sweep(range(n)), marker_dir=str(tmp_path), seconds=0.5)
        ran = len(list(tmp_path.iterdir()))
        assert ran < n - 4, f"{ran} of {n - 1} rows ran after row 0 had failed"

    def test_timeout_refused_where_rows_cannot_be_stopped(self, backend):
        if session_for(backend).flag("supports_timeout"):
            pytest.skip("this backend stops rows that run too long")
        counter = _CountMaps()
        pp.register_plugin(counter)
        try:
            with pytest.raises(ValueError, match=f"timeout=1.0 .*{backend.name}"):
                self.run_on(backend, _rows.spin_on, kwargs={"x": pp.sweep(range(2))}, timeout=1.0)
        finally:
            pp.unregister_plugin(counter)
        assert counter.started == 0

    def test_timeout_stops_a_runaway_row_and_keeps_the_others(self, backend):
        if not session_for(backend).flag("supports_timeout"):
            pytest.skip("this backend cannot stop a running row (timeout= is refused)")
        got = self.run_on(
            backend,
            _rows.spin_on,
            kwargs={"x": pp.sweep(range(4)), "bad": (2,)},
            timeout=1.0,
            on_error="collect",
            chunksize=2,
        )
        want = self.run_on("sequential", _rows.spin_on, kwargs={"x": pp.sweep(range(4))})
        assert got[2] is None
        assert [got[i] for i in (0, 1, 3)] == [want[i] for i in (0, 1, 3)]
        [failure] = got.provenance.metadata["failures"]
        assert failure["row"] == 2 and failure["type"].endswith("RowTimeoutError")

    def test_timeout_interrupts_a_blocking_call_where_supported(self, backend):
        if not session_for(backend).flag("supports_timeout"):
            pytest.skip("this backend cannot stop a running row (timeout= is refused)")
        start = time.monotonic()
        with pytest.raises(pp.RowTimeoutError, match="row 1"):
            self.run_on(
                backend,
                _rows.sleep_on,
                kwargs={"x": pp.sweep(range(3)), "bad": (1,)},
                timeout=1.0,
                chunksize=1,
            )
        assert time.monotonic() - start < 30

    def test_worker_death_fails_only_its_row(self, backend):
        if not session_for(backend).flag("ships_to_processes"):
            pytest.skip("rows run in this process: a dying row would take the caller along")
        start = time.monotonic()
        got = self.run_on(
            backend,
            _rows.die_on,
            kwargs={"x": pp.sweep(range(6)), "bad": (3,)},
            on_error="collect",
            chunksize=2,
        )
        assert time.monotonic() - start < 60
        want = self.run_on("sequential", _rows.die_on, kwargs={"x": pp.sweep(range(6))})
        assert got[3] is None
        assert [got[i] for i in (0, 1, 2, 4, 5)] == [want[i] for i in (0, 1, 2, 4, 5)]
        [failure] = got.provenance.metadata["failures"]
        assert failure["row"] == 3 and failure["type"].endswith("WorkerLostError")
        assert "row 3" in failure["message"] and repr(backend.name) in failure["message"]

    def test_unsendable_row_value_fails_only_that_row(self, backend):
        if not session_for(backend).flag("ships_to_processes"):
            pytest.skip("rows run in this process: their values are never pickled")
        got = self.run_on(
            backend,
            _rows.unsendable_on,
            kwargs={"x": pp.sweep(range(6)), "bad": (4,)},
            on_error="collect",
            chunksize=3,
        )
        want = self.run_on("sequential", _rows.unsendable_on, kwargs={"x": pp.sweep(range(6))})
        assert [got[i] for i in (0, 1, 2, 3, 5)] == [want[i] for i in (0, 1, 2, 3, 5)]
        [failure] = got.provenance.metadata["failures"]
        assert failure["row"] == 4 and failure["type"] == "builtins.TypeError"
        assert "row 4 returned a" in failure["message"]

    # -- per-worker values ------------------------------------------------------
    def test_per_worker_value_gives_the_sequential_result(self, backend):
        sampler = pp.per_worker(_rows.build_sampler, 1.5, scale=2.0)  # holds a lock
        got, want = self.run(
            backend,
            _rows.sample_with,
            pp.Normal(0, 1),
            kwargs={"sampler": sampler, "shift": pp.sweep([0.0, 10.0])},
            chunksize=3,
        )
        _same_result(got, want)

    def test_per_worker_value_built_at_most_once_per_process(self, backend, tmp_path):
        def sampler():  # equal content, a new marker each call: the same fingerprint
            return pp.per_worker(
                _rows.build_sampler, 0.0, 1.0, marker_dir=str(tmp_path), seconds=0.2
            )

        f = pp.WorkflowFunction(
            _rows.sample_with, backend=backend, n_broadcast_samples=8, seed=5, chunksize=2
        )
        first = f(pp.Normal(0, 1), sampler=sampler())
        built_first = sum(_rows.builds_by_pid(tmp_path).values())
        second = f(pp.Normal(0, 1), sampler=sampler())
        builds = _rows.builds_by_pid(tmp_path)
        assert builds and max(builds.values()) == 1, f"builds per process: {builds}"
        if not session_for(backend).flag("ships_to_processes"):
            assert sum(builds.values()) == 1  # every thread of this process shares one
        _same_result(first, second)
        [record] = first.provenance.metadata["per_worker"]
        assert record == {
            "name": "sampler",
            "factory": "probpipe.testing._rows.build_sampler",
            "fingerprint": sampler().fingerprint,
            "builds": built_first,
        }
        # The second call built only on processes the first call never used.
        assert second.provenance.metadata["per_worker"][0]["builds"] == (
            sum(builds.values()) - built_first
        )
        parent = {p.name: p for p in first.provenance.parents}["sampler"]
        assert (parent.type, parent.fingerprint) == ("per_worker", record["fingerprint"])
        json.dumps(first.provenance.to_dict())

    def test_per_worker_factory_error_fails_rows_with_its_own_type(self, backend):
        broken = pp.per_worker(_rows.broken_build)
        f = pp.WorkflowFunction(_rows.sample_with, backend=backend, seed=1, chunksize=2)
        with pytest.raises(_rows.ConformanceError, match="fails on purpose") as info:
            f(x=pp.sweep(range(4)), sampler=broken)
        notes = "\n".join(getattr(info.value, "__notes__", []))
        assert "per_worker argument 'sampler'" in notes and "on worker" in notes
        assert "row 0" in notes
        got = f.with_options(on_error="collect")(x=pp.sweep(range(4)), sampler=broken)
        assert list(got) == [None] * 4
        failures = got.provenance.metadata["failures"]
        assert [f["row"] for f in failures] == [0, 1, 2, 3]
        assert all(f["type"].endswith("ConformanceError") for f in failures)
        assert got.provenance.metadata["per_worker"][0]["builds"] == 0

    def test_per_worker_factory_is_built_again_on_retry(self, backend, tmp_path):
        flaky = pp.per_worker(
            _rows.broken_build, 1.0, 2.0, fail_once_marker=str(tmp_path / "failed")
        )
        got = self.run_on(
            backend,
            _rows.sample_with,
            kwargs={"x": pp.sweep(range(6)), "sampler": flaky},
            retries=1,
            chunksize=2,
        )
        want = self.run_on(
            "sequential",
            _rows.sample_with,
            kwargs={
                "x": pp.sweep(range(6)),
                "sampler": pp.per_worker(_rows.build_sampler, 1.0, 2.0),
            },
        )
        _same_result(got, want)
        assert got.provenance.metadata["n_retried_rows"] >= 1

    def test_unpicklable_per_worker_argument_fails_before_dispatch(self, backend):
        if not session_for(backend).flag("ships_to_processes"):
            pytest.skip("this backend runs rows in this process; nothing is pickled")
        counter = _CountMaps()
        pp.register_plugin(counter)
        try:
            f = pp.WorkflowFunction(_rows.sample_with, backend=backend)
            sampler = pp.per_worker(_rows.build_sampler, _rows.Unpicklable(), 1.0)
            with pytest.raises(TypeError, match="per_worker argument 'sampler'"):
                f(x=pp.sweep(range(3)), sampler=sampler)
        finally:
            pp.unregister_plugin(counter)
        assert counter.started == 0

    # -- protocol --------------------------------------------------------------
    def test_empty_call_submits_nothing(self, backend):
        session = session_for(backend)
        session.ensure_started()
        call = pp.CallInfo(
            call_id="empty", func="empty", backend=backend.name, n_rows=0, n_cells=0, options={}
        )

        def body(submit, parallelism):
            assert isinstance(parallelism, int) and parallelism >= 1
            return list(submit(run_item, []))

        assert session.run_call(call, body) == []
        assert list(backend.gather([])) == []

    def test_provenance_records_backend(self, backend):
        got, _ = self.run(backend, _rows.noisy_value, pp.Normal(0, 1))
        meta = got.provenance.metadata
        assert meta["orchestrate"] == backend.provenance_tag
        assert meta["backend"] == backend.name
        assert meta["backend_options"] == json_safe(session_for(backend).describe())
        assert meta["n_rows"] == self.n
        json.dumps(got.provenance.to_dict())
