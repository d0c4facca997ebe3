"""Workflow functions on the sequential backend: API.md sections 1 and 2."""

from __future__ import annotations

import collections
import math
import pickle

import cloudpickle
import numpy as np
import pytest

import probpipe as pp

N = 12
SEED = 2024


class MapCounter:
    """An observer plugin: records every call that dispatches rows."""

    def __init__(self) -> None:
        self.calls: list[pp.CallInfo] = []

    @pp.hookimpl
    def probpipe_map_started(self, call):
        self.calls.append(call)


@pytest.fixture
def maps():
    counter = MapCounter()
    pp.register_plugin(counter)
    yield counter
    pp.unregister_plugin(counter)


def expected_rng(seed: int, row: int) -> np.random.Generator:
    """The generator API.md promises row ``row`` of a call seeded ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(row,)))


def row_of(rng: np.random.Generator) -> int:
    """The row a generator was made for (its spawn key)."""
    return rng.bit_generator.seed_seq.spawn_key[0]


# Module-level row functions, so WorkflowFunctions built on them pickle by reference.
def noisy(x, scale=1.0, rng=None):
    return float(x) * scale + rng.normal()


def pair(a, b):
    return np.array([a, b], dtype=float)


def triple(x, rng=None):
    return np.array([x, x**2, rng.normal()])


def posterior(x, rng=None):
    return pp.Normal(float(x), 1.0 + rng.uniform())


def as_dict(x):
    return {"x": float(x), "sign": "+" if x >= 0 else "-"}


def as_text(x):
    return f"{x:.3f}"


# ---------------------------------------------------------------------------
# Construction and options
# ---------------------------------------------------------------------------


def test_bare_decorator_wraps_with_default_options():
    @pp.workflow_function
    def f(x, rng=None):
        return x + rng.normal()

    assert isinstance(f, pp.WorkflowFunction)
    assert f.__name__ == "f"
    assert f.options["n_broadcast_samples"] == 128
    assert f.options["on_error"] == "raise"
    assert f.options["retries"] == 0
    result = f(pp.Normal(0.0, 1.0))
    assert isinstance(result, pp.EmpiricalDistribution)
    assert result.samples.shape == (128,)
    assert result.provenance.metadata["n_samples"] == 128


def test_decorator_with_options_and_the_constructor_agree():
    @pp.workflow_function(n_broadcast_samples=N, seed=SEED)
    def decorated(x, scale=1.0, rng=None):
        return noisy(x, scale, rng)

    built = pp.WorkflowFunction(noisy, n_broadcast_samples=N, seed=SEED)
    a = decorated(pp.Normal(1.0, 2.0), scale=3.0)
    b = built(pp.Normal(1.0, 2.0), scale=3.0)
    assert a.samples.shape == (N,)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.provenance.metadata["seed"] == SEED


def test_with_options_returns_a_new_object_and_leaves_the_old_one():
    wf = pp.WorkflowFunction(noisy, n_broadcast_samples=N, seed=SEED)
    before = dict(wf.options)
    wf2 = wf.with_options(n_broadcast_samples=5, seed=3)
    assert wf2 is not wf
    assert wf.options == before
    assert wf2.options["n_broadcast_samples"] == 5 and wf2.options["seed"] == 3
    assert wf2.options["on_error"] == wf.options["on_error"]
    assert wf(pp.Normal(0.0, 1.0)).samples.shape == (N,)
    assert wf2(pp.Normal(0.0, 1.0)).samples.shape == (5,)
    # Options not named are kept from the original.
    wf3 = wf.with_options(chunksize=3)
    assert wf3.options["n_broadcast_samples"] == N and wf3.options["seed"] == SEED


def test_wrapping_a_workflow_function_merges_options():
    inner = pp.WorkflowFunction(noisy, n_broadcast_samples=N, seed=SEED)
    outer = pp.WorkflowFunction(inner, seed=5)
    assert outer.func is noisy
    assert outer.options["n_broadcast_samples"] == N and outer.options["seed"] == 5


def test_user_parameters_named_like_options_receive_the_call_argument():
    def f(x, seed=None, chunksize=None, n_broadcast_samples=None):
        return [seed, chunksize, n_broadcast_samples]

    wf = pp.WorkflowFunction(f, n_broadcast_samples=N, seed=SEED, chunksize=2)
    result = wf(pp.Normal(0.0, 1.0), seed=7, chunksize=99, n_broadcast_samples=3)
    np.testing.assert_array_equal(result.samples, np.tile([7, 99, 3], (N, 1)))
    meta = result.provenance.metadata
    assert (meta["seed"], meta["chunksize"], meta["n_rows"]) == (SEED, 2, N)
    # And in a plain call (nothing broadcast) as well.
    assert wf(1.0, seed=8, chunksize=9) == [8, 9, None]


def test_workflow_functions_pickle():
    wf = pp.WorkflowFunction(noisy, n_broadcast_samples=N, seed=SEED, chunksize=3)
    want = wf(pp.Normal(0.0, 1.0), scale=2.0)
    for module in (pickle, cloudpickle):
        copy = module.loads(module.dumps(wf))
        assert isinstance(copy, pp.WorkflowFunction)
        assert copy.options == wf.options
        got = copy(pp.Normal(0.0, 1.0), scale=2.0)
        np.testing.assert_array_equal(got.samples, want.samples)


# ---------------------------------------------------------------------------
# Broadcast semantics
# ---------------------------------------------------------------------------


def test_distributions_are_zipped_row_by_row():
    result = pp.WorkflowFunction(pair, n_broadcast_samples=N, seed=SEED)(
        pp.Normal(100.0, 1.0), pp.Uniform(0.0, 1.0)
    )
    a, b = result.samples.T
    assert result.samples.shape == (N, 2)  # N rows, not N * N
    assert np.all(np.abs(a - 100.0) < 10) and np.all((b >= 0) & (b < 1))
    # Each draw of each distribution is used by exactly one row.
    assert len(np.unique(a)) == N and len(np.unique(b)) == N


def test_the_same_distribution_object_twice_is_drawn_once_per_row():
    dist = pp.Normal(0.0, 1.0)
    result = pp.WorkflowFunction(pair, n_broadcast_samples=N, seed=SEED)(dist, dist)
    a, b = result.samples.T
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == N


def test_equal_but_distinct_distributions_are_independent():
    result = pp.WorkflowFunction(pair, n_broadcast_samples=N, seed=SEED)(
        pp.Normal(0.0, 1.0), pp.Normal(0.0, 1.0)
    )
    a, b = result.samples.T
    assert np.all(a != b)


def bootstrap_rows(X, y, whole):
    X, y = np.asarray(X), np.asarray(y)
    return np.array(
        [
            np.array_equal(y, 10 * X),  # X and y resampled at the same indices
            np.array_equal(whole["X"], X),  # ... and the whole Record too
            len(np.unique(X)) < len(X),  # with replacement
            X.sum(),
        ],
        dtype=float,
    )


def test_cosampled_bootstrap_views_share_their_indices():
    X = np.arange(25.0)
    boot = pp.BootstrapReplicateDistribution(pp.Record(X=X, y=10 * X))
    result = pp.WorkflowFunction(bootstrap_rows, n_broadcast_samples=N, seed=SEED)(
        boot["X"], boot["y"], boot
    )
    same_xy, same_whole, repeats, sums = result.samples.T
    assert np.all(same_xy == 1.0)
    assert np.all(same_whole == 1.0)
    assert np.any(repeats == 1.0)
    assert len(np.unique(sums)) > 1  # every row has its own replicate
    assert result.provenance.metadata["broadcast_args"] == ["X", "y", "whole"]


def test_concrete_arguments_reach_every_row_unchanged():
    data = np.arange(5.0)
    config = {"k": 3, "names": ("a", "b")}
    seen = []

    def f(x, data, config, label="plain"):
        seen.append((data, config, label))
        return float(x)

    pp.WorkflowFunction(f, n_broadcast_samples=N, seed=SEED)(
        pp.Normal(0.0, 1.0), data, config, label="tag"
    )
    assert len(seen) == N
    for got_data, got_config, label in seen:
        np.testing.assert_array_equal(got_data, np.arange(5.0))
        assert got_config == {"k": 3, "names": ("a", "b")}
        assert label == "tag"


def test_distributions_inside_star_args_and_star_kwargs_are_broadcast():
    def f(*xs, **named):
        return np.array([*xs, *named.values()], dtype=float)

    dist = pp.Normal(0.0, 1.0)
    result = pp.WorkflowFunction(f, n_broadcast_samples=N, seed=SEED)(dist, 5.0, k=dist, c=1.0)
    samples = result.samples
    assert samples.shape == (N, 4)
    np.testing.assert_array_equal(samples[:, 0], samples[:, 2])
    assert np.all(samples[:, 1] == 5.0) and np.all(samples[:, 3] == 1.0)
    assert len(np.unique(samples[:, 0])) == N


def test_default_is_128_rows():
    assert pp.WorkflowFunction(noisy)(pp.Normal(0.0, 1.0)).samples.shape == (128,)


# ---------------------------------------------------------------------------
# Per-row randomness and row order
# ---------------------------------------------------------------------------


def rng_stream(x, rng=None):
    return rng.random(3)


def test_each_row_gets_the_generator_of_seed_and_row_in_row_order():
    result = pp.WorkflowFunction(rng_stream, n_broadcast_samples=N, seed=SEED)(pp.Normal(0.0, 1.0))
    want = np.stack([expected_rng(SEED, i).random(3) for i in range(N)])
    np.testing.assert_array_equal(result.samples, want)


def test_passing_rng_explicitly_is_a_type_error(maps):
    wf = pp.WorkflowFunction(noisy, n_broadcast_samples=N, seed=SEED)
    with pytest.raises(TypeError, match="'rng'"):
        wf(pp.Normal(0.0, 1.0), rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="'rng'"):
        wf(pp.Normal(0.0, 1.0), 1.0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="'rng'"):
        wf(1.0, rng=None)
    assert maps.calls == []


# ---------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------


def test_numeric_rows_give_an_empirical_distribution_of_row_shape():
    result = pp.WorkflowFunction(triple, n_broadcast_samples=N, seed=SEED)(pp.Normal(0.0, 1.0))
    assert isinstance(result, pp.EmpiricalDistribution)
    assert result.samples.shape == (N, 3)
    np.testing.assert_allclose(result.samples[:, 1], result.samples[:, 0] ** 2)
    np.testing.assert_allclose(result.weights, np.full(N, 1.0 / N))


def test_distribution_rows_give_a_mixture_of_them_in_row_order():
    wf = pp.WorkflowFunction(posterior, n_broadcast_samples=N, seed=SEED)
    result = wf(pp.Uniform(0.0, 1.0))
    assert isinstance(result, pp.MixtureDistribution)
    assert len(result.components) == N
    assert all(isinstance(c, pp.Normal) for c in result.components)
    np.testing.assert_allclose(result.weights, np.full(N, 1.0 / N))
    # Row i's posterior was built with row i's generator.
    scales = [float(c.scale) for c in result.components]
    assert scales == [1.0 + expected_rng(SEED, i).uniform() for i in range(N)]


@pytest.mark.parametrize("func", [as_dict, as_text], ids=["dict", "str"])
def test_other_rows_give_items_in_row_order(func):
    wf = pp.WorkflowFunction(func, n_broadcast_samples=N, seed=SEED)
    result = wf(pp.Normal(0.0, 1.0))
    assert not isinstance(result, pp.Distribution)
    assert len(result.items) == N
    # Same draws as a numeric call with the same seed, so the order is checkable.
    xs = pp.WorkflowFunction(float, n_broadcast_samples=N, seed=SEED)(pp.Normal(0.0, 1.0))
    assert list(result.items) == [func(x) for x in xs.samples]
    assert result.provenance.operation == "broadcast"


def test_no_distributions_and_no_sweeps_runs_once_here_and_returns_as_is(maps):
    calls = []
    sentinel = object()

    def f(x, y=2, rng=None):
        calls.append((x, y))
        return {"value": sentinel, "draw": rng.random()}

    wf = pp.WorkflowFunction(f, seed=SEED)
    result = wf(1.0, y=3)
    assert type(result) is dict
    assert result["value"] is sentinel
    assert calls == [(1.0, 3)]
    assert maps.calls == []  # nothing was dispatched
    assert wf(1.0, y=3)["draw"] == result["draw"]  # seeded: repeatable


# ---------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------


def test_sweeps_form_a_row_major_cartesian_product_last_fastest():
    result = pp.WorkflowFunction(lambda a, b, c="k": (a, b, c))(
        a=pp.sweep([1, 2]), b=pp.sweep(["x", "y", "z"])
    )
    assert isinstance(result, pp.SweepResult)
    cells = [(1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (2, "z")]
    assert list(result) == [(a, b, "k") for a, b in cells]
    assert result.coords == [{"a": a, "b": b} for a, b in cells]
    assert result.shape == (2, 3)
    assert result.cell(a=2, b="y") == (2, "y", "k")
    assert result.provenance.operation == "sweep"


def test_a_sweep_with_distributions_runs_every_cell_in_one_map(maps):
    wf = pp.WorkflowFunction(noisy, n_broadcast_samples=N, seed=SEED, chunksize=5)
    result = wf(pp.Normal(0.0, 1.0), scale=pp.sweep([1.0, 2.0, 3.0]))
    assert len(maps.calls) == 1
    assert maps.calls[0].n_rows == 3 * N and maps.calls[0].n_cells == 3
    meta = result.provenance.metadata
    assert meta["n_rows"] == 3 * N
    # Chunks span cell boundaries: one map of 36 rows in chunks of 5.
    assert meta["n_chunks"] == math.ceil(3 * N / 5)
    assert [cell.samples.shape for cell in result] == [(N,)] * 3


def test_each_sweep_cell_equals_the_single_call_with_its_value():
    wf = pp.WorkflowFunction(noisy, n_broadcast_samples=N, seed=SEED)
    scales = [0.5, -1.0, 4.0]
    swept = wf(pp.Normal(1.0, 1.0), scale=pp.sweep(scales))
    assert [c["scale"] for c in swept.coords] == scales
    for cell, scale in zip(swept, scales):
        single = wf(pp.Normal(1.0, 1.0), scale=scale)
        np.testing.assert_array_equal(cell.samples, single.samples)
    # Common random numbers: the cells differ only through the swept value.
    assert not np.array_equal(swept[0].samples, swept[1].samples)


def test_each_cell_of_a_plain_sweep_equals_the_plain_call():
    wf = pp.WorkflowFunction(noisy, seed=SEED)
    swept = wf(x=pp.sweep([1.0, 2.0, 3.0]))
    assert list(swept) == [wf(x=x) for x in (1.0, 2.0, 3.0)]


# ---------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------


def test_chunksize_does_not_change_any_value():
    wf = pp.WorkflowFunction(noisy, n_broadcast_samples=40, seed=SEED)
    results = [
        wf.with_options(chunksize=size)(pp.Gamma(2.0, 1.0), scale=pp.sweep([1.0, 2.0]))
        for size in (1, 7, "auto")
    ]
    assert [r.provenance.metadata["chunksize"] for r in results[:2]] == [1, 7]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a.samples, b.samples)


def test_the_same_seed_repeats_and_another_seed_differs():
    wf = pp.WorkflowFunction(noisy, n_broadcast_samples=N, seed=SEED)
    a = wf(pp.Normal(0.0, 1.0)).samples
    np.testing.assert_array_equal(a, wf(pp.Normal(0.0, 1.0)).samples)
    assert not np.array_equal(a, wf.with_options(seed=SEED + 1)(pp.Normal(0.0, 1.0)).samples)


# ---------------------------------------------------------------------------
# Errors, collection and retries
# ---------------------------------------------------------------------------

FAIL_WITH = {2: KeyError, 3: ValueError, 5: ZeroDivisionError, 7: ValueError}


def fails_on(x, bad=(), rng=None):
    row = row_of(rng)
    if row in bad:
        raise FAIL_WITH[row](f"row {row} is bad")
    return float(x) + rng.normal()


def test_collect_keeps_the_good_rows_in_order_and_records_failures():
    wf = pp.WorkflowFunction(fails_on, n_broadcast_samples=10, seed=SEED, chunksize=4)
    clean = wf(pp.Normal(0.0, 1.0))
    result = wf.with_options(on_error="collect")(pp.Normal(0.0, 1.0), bad=(3, 7))
    good = [i for i in range(10) if i not in (3, 7)]
    np.testing.assert_array_equal(result.samples, clean.samples[good])
    failures = result.provenance.metadata["failures"]
    assert [(f["row"], f["type"], f["message"]) for f in failures] == [
        (3, "builtins.ValueError", "row 3 is bad"),
        (7, "builtins.ValueError", "row 7 is bad"),
    ]
    assert clean.provenance.metadata["failures"] == []


def test_collect_in_a_sweep_records_failures_per_cell():
    def f(x, scale):
        if scale < 0:
            raise ArithmeticError(f"negative scale {scale}")
        return float(x) * scale

    wf = pp.WorkflowFunction(f, n_broadcast_samples=4, seed=SEED, on_error="collect")
    result = wf(pp.Normal(0.0, 1.0), scale=pp.sweep([1.0, -1.0]))
    assert result[0].samples.shape == (4,)
    assert [f["row"] for f in result.provenance.metadata["failures"]] == [4, 5, 6, 7]
    assert result[0].provenance.metadata["failures"] == []
    assert len(result[1].provenance.metadata["failures"]) == 4


@pytest.mark.parametrize("chunksize", [1, 10])
def test_raise_reraises_the_lowest_failing_rows_own_exception(chunksize):
    wf = pp.WorkflowFunction(fails_on, n_broadcast_samples=10, seed=SEED, chunksize=chunksize)
    with pytest.raises(KeyError, match="row 2 is bad") as info:
        wf(pp.Normal(0.0, 1.0), bad=(5, 2, 7))
    notes = getattr(info.value, "__notes__", [])
    assert any("row 2 of fails_on()" in note for note in notes), notes


ATTEMPTS: collections.Counter = collections.Counter()


@pytest.fixture
def attempts():
    ATTEMPTS.clear()
    yield ATTEMPTS
    ATTEMPTS.clear()


def flaky(x, bad=(), n_failures=1, rng=None):
    """Rows in ``bad`` fail their first ``n_failures`` attempts, then succeed."""
    row = row_of(rng)
    value = float(x) + rng.normal()
    ATTEMPTS[row] += 1
    if row in bad and ATTEMPTS[row] <= n_failures:
        raise ConnectionError(f"row {row}, attempt {ATTEMPTS[row]}")
    return value


@pytest.mark.parametrize("k", [1, 2])
def test_retries_reproduce_the_no_failure_result(attempts, k):
    wf = pp.WorkflowFunction(flaky, n_broadcast_samples=10, seed=SEED, chunksize=3)
    clean = wf(pp.Normal(0.0, 1.0))
    attempts.clear()
    retried = wf.with_options(retries=k)(pp.Normal(0.0, 1.0), bad=(1, 4), n_failures=k)
    np.testing.assert_array_equal(retried.samples, clean.samples)
    assert attempts[1] == attempts[4] == k + 1
    assert attempts[0] == 1
    assert retried.provenance.metadata["n_retried_rows"] == 2
    assert retried.provenance.metadata["failures"] == []


@pytest.mark.parametrize("k", [0, 1, 2])
def test_more_failures_than_retries_still_raise(attempts, k):
    wf = pp.WorkflowFunction(flaky, n_broadcast_samples=10, seed=SEED, chunksize=3, retries=k)
    with pytest.raises(ConnectionError, match=f"row 4, attempt {k + 1}") as info:
        wf(pp.Normal(0.0, 1.0), bad=(4,), n_failures=k + 1)
    assert attempts[4] == k + 1
    assert any("row 4" in note for note in info.value.__notes__)


class NeedsTwoArguments(Exception):
    """A common user exception shape that does not survive a pickle round trip."""

    def __init__(self, code, detail):
        super().__init__(f"code {code}: {detail}")
        self.code = code


def raises_custom(x):
    raise NeedsTwoArguments(7, "bad input")


def test_in_process_rows_reraise_exceptions_that_do_not_pickle():
    wf = pp.WorkflowFunction(raises_custom, n_broadcast_samples=3, seed=SEED)
    with pytest.raises(NeedsTwoArguments, match="code 7: bad input") as info:
        wf(pp.Normal(0.0, 1.0))
    assert info.value.code == 7
