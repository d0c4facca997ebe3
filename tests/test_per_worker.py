"""pp.per_worker in this process: markers, refusals, plain calls, sessions, failures.

What every backend must do with per-worker values (builds per process, results,
errors, provenance) is in the conformance suite (probpipe.testing); these are
the parts that need no engine.
"""

from __future__ import annotations

import pickle

import pytest

import probpipe as pp
from probpipe import _per_worker
from probpipe._plan import bind, plan_call
from probpipe._selection import create_backend
from probpipe._session import session_for
from probpipe._worker import Chunk, run_chunk
from probpipe.testing import _rows

factory_calls: list[tuple] = []


def counted(*args, fail=False):
    """A factory that records each call (tests read ``factory_calls``)."""
    factory_calls.append(args)
    if fail:
        raise _rows.ConformanceError("counted factory fails")
    return {"args": args}


def uses(x, value, rng=None):
    return (float(x), value["args"])


@pytest.fixture(autouse=True)
def _clear_calls():
    factory_calls.clear()


def builds_of(result):
    return [entry["builds"] for entry in result.provenance.metadata["per_worker"]]


def test_fingerprint_is_by_content():
    a, b = pp.per_worker(counted, 1, 2), pp.per_worker(counted, 1, 2)
    assert a.fingerprint == b.fingerprint
    assert pp.per_worker(counted, 1, 3).fingerprint != a.fingerprint
    assert pickle.loads(pickle.dumps(a)).fingerprint == a.fingerprint
    # Content that cannot be pickled is never shared between markers.
    lock = _rows.Unpicklable()
    assert pp.per_worker(counted, lock).fingerprint != pp.per_worker(counted, lock).fingerprint


def test_bad_markers_are_refused():
    with pytest.raises(TypeError, match="factory callable"):
        pp.per_worker(42)
    with pytest.raises(TypeError, match="passed to the factory as they are"):
        pp.per_worker(counted, pp.sweep([1, 2]))
    with pytest.raises(TypeError, match="per-worker value is built once per worker"):
        pp.sweep([pp.per_worker(counted, 1), pp.per_worker(counted, 2)])


def test_plain_call_builds_here_each_time():
    f = pp.WorkflowFunction(uses, seed=1)
    assert f(2.0, value=pp.per_worker(counted, "a")) == (2.0, ("a",))
    with pytest.raises(_rows.ConformanceError) as info:
        f(2.0, value=pp.per_worker(counted, "b", fail=True))
    assert "per_worker argument 'value'" in info.value.__notes__[0]
    assert factory_calls == [("a",), ("b",)]


def test_star_args_slots_and_one_build_per_fingerprint():
    def spread(x, *values, **named):
        return [v["args"] for v in (*values, *named.values())]

    backend = create_backend("sequential")
    try:
        f = pp.WorkflowFunction(spread, backend=backend, seed=2)
        same = pp.per_worker(counted, "s")
        got = f(pp.sweep([1, 2]), same, pp.per_worker(counted, "s"), k=pp.per_worker(counted, "k"))
        assert list(got) == [[("s",), ("s",), ("k",)]] * 2
        assert factory_calls == [("s",), ("k",)]
        record = got.provenance.metadata["per_worker"]
        assert [e["name"] for e in record] == ["values[0]", "values[1]", "named['k']"]
        assert [e["builds"] for e in record] == [1, 1, 1]  # builds per fingerprint
    finally:
        session_for(backend).close()


def test_closing_the_backend_drops_the_values():
    backend = create_backend("sequential")
    f = pp.WorkflowFunction(uses, backend=backend, seed=3)
    try:
        assert builds_of(f(pp.sweep([1, 2, 3]), value=pp.per_worker(counted, 0))) == [1]
        assert builds_of(f(pp.sweep([1, 2, 3]), value=pp.per_worker(counted, 0))) == [0]
        session_for(backend).close()
        assert builds_of(f(pp.sweep([1, 2, 3]), value=pp.per_worker(counted, 0))) == [1]
    finally:
        session_for(backend).close()
    assert factory_calls == [(0,), (0,)]


def test_a_failed_build_is_not_repeated_within_an_attempt():
    backend = create_backend("sequential")
    f = pp.WorkflowFunction(uses, backend=backend, seed=4, chunksize=2, on_error="collect")
    try:
        broken = pp.per_worker(counted, "x", fail=True)
        got = f(pp.sweep(range(6)), value=broken)
        assert list(got) == [None] * 6 and len(factory_calls) == 1
        got = f.with_options(retries=1)(pp.sweep(range(6)), value=broken)
        assert len(got.provenance.metadata["failures"]) == 6
        assert len(factory_calls) == 3  # a new call, then a new attempt: one build each
    finally:
        session_for(backend).close()


def test_a_long_lived_worker_keeps_only_recent_sessions():
    marker = pp.per_worker(counted, "w")
    spec_slots = ((("value",), "value", marker),)

    def build_count(session_id):
        values = _per_worker.ChunkValues(spec_slots, session_id, "call", 0, "here")
        values.get()
        return sum(values.builds.values())

    sessions = [f"test-session-{i}" for i in range(_per_worker._SESSIONS_KEPT + 1)]
    try:
        assert [build_count(s) for s in sessions] == [1] * len(sessions)
        assert build_count(sessions[-1]) == 0  # still kept
        assert build_count(sessions[0]) == 1  # the oldest was dropped
    finally:
        for s in sessions:
            _per_worker.forget_session(s)


def test_build_time_is_not_counted_as_row_time():
    # Auto chunking sizes chunks by row time; a one-off build must not inflate it.
    f = pp.WorkflowFunction(_rows.sample_with)
    sampler = pp.per_worker(_rows.build_sampler, 0.0, 1.0, seconds=0.3)
    arguments = bind(
        f.signature, "sample_with", (), {"x": pp.sweep([1, 2]), "sampler": sampler}, "rng"
    )
    plan = plan_call(f.func, f.signature, arguments, n_samples=1, seed=1, rng_param="rng")
    plan.spec.session_id = "test-row-time"
    try:
        result = run_chunk(plan.spec, Chunk(tuple(plan.tasks)))
    finally:
        _per_worker.forget_session("test-row-time")
    assert not result.failures and result.per_worker_builds == {sampler.fingerprint: 1}
    assert max(result.seconds) < 0.2
