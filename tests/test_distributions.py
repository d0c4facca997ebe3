"""Distributions: shapes, moments, densities, bootstrap resampling and pickling.

Moments are checked against closed forms, or against large samples drawn with
fixed seeds (tolerances several standard errors wide, so they cannot flake).
Densities are checked against the textbook formulas written out here, and
independently by integrating them numerically.
"""

from __future__ import annotations

import math
import pickle
import warnings

import cloudpickle
import numpy as np
import pytest

import probpipe as pp

LOG_2PI = math.log(2 * math.pi)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def integrate(density, lo: float, hi: float, n: int = 200_001) -> tuple[float, float, float]:
    """(total mass, mean, variance) of ``density`` on [lo, hi] by the trapezoid rule."""
    x = np.linspace(lo, hi, n)
    p = density(x)
    mass = np.trapezoid(p, x)
    mean = np.trapezoid(x * p, x) / mass
    var = np.trapezoid((x - mean) ** 2 * p, x) / mass
    return float(mass), float(mean), float(var)


def record_data(n: int = 20) -> pp.Record:
    """A dataset whose rows can be told apart: y is always 10 * X."""
    X = np.arange(n, dtype=float)
    return pp.Record(name="toy", X=X, y=10 * X)


# ---------------------------------------------------------------------------
# Sample shapes
# ---------------------------------------------------------------------------

SHAPE_CASES = [
    ("normal-scalar", lambda: pp.Normal(0.0, 1.0), ()),
    ("normal-vector", lambda: pp.Normal([0.0, 1.0, 2.0], 1.0), (3,)),
    ("normal-broadcast", lambda: pp.Normal(np.zeros((2, 1)), np.ones(3)), (2, 3)),
    ("uniform", lambda: pp.Uniform(-1.0, [1.0, 2.0]), (2,)),
    ("gamma", lambda: pp.Gamma(2.0, 3.0), ()),
    ("beta", lambda: pp.Beta([2.0, 3.0], 5.0), (2,)),
    ("mvn", lambda: pp.MultivariateNormal([0.0, 1.0, 2.0], np.eye(3)), (3,)),
    ("empirical-scalar", lambda: pp.EmpiricalDistribution([1.0, 2.0, 3.0]), ()),
    ("empirical-vector", lambda: pp.EmpiricalDistribution(np.ones((5, 2))), (2,)),
    (
        "mixture",
        lambda: pp.MixtureDistribution([pp.Normal([0.0, 0.0], 1.0), pp.Normal([5.0, 5.0], 1.0)]),
        (2,),
    ),
    ("bootstrap-array", lambda: pp.BootstrapReplicateDistribution(np.arange(7.0)), (7,)),
    ("bootstrap-2d", lambda: pp.BootstrapReplicateDistribution(np.ones((6, 4))), (6, 4)),
    ("bootstrap-view", lambda: pp.BootstrapReplicateDistribution(record_data(9))["X"], (9,)),
]


@pytest.mark.parametrize(
    ("make", "event_shape"),
    [case[1:] for case in SHAPE_CASES],
    ids=[case[0] for case in SHAPE_CASES],
)
@pytest.mark.parametrize("n", [1, 5])
def test_sample_shape_is_n_then_event_shape(make, event_shape, n):
    dist = make()
    assert tuple(dist.event_shape) == event_shape
    assert dist.sample(n, rng(1)).shape == (n, *event_shape)


def test_sample_with_the_same_seed_repeats_and_other_seeds_differ():
    dist = pp.Normal(0.0, 1.0)
    np.testing.assert_array_equal(dist.sample(10, rng=5), dist.sample(10, rng(5)))
    assert not np.array_equal(dist.sample(10, rng=5), dist.sample(10, rng=6))


def test_sample_rejects_bad_sizes_and_generators():
    dist = pp.Normal(0.0, 1.0)
    with pytest.raises(TypeError, match="sample size"):
        dist.sample(2.5)
    with pytest.raises(ValueError, match="sample size"):
        dist.sample(-1)
    with pytest.raises(TypeError, match="rng"):
        dist.sample(3, rng="seed")


# ---------------------------------------------------------------------------
# Parametric families: moments and densities
# ---------------------------------------------------------------------------


def test_normal_moments_closed_form_and_large_sample():
    dist = pp.Normal([1.0, -2.0], [0.5, 3.0])
    np.testing.assert_array_equal(dist.mean(), [1.0, -2.0])
    np.testing.assert_array_equal(dist.var(), [0.25, 9.0])
    draws = dist.sample(200_000, rng(2))
    np.testing.assert_allclose(draws.mean(axis=0), [1.0, -2.0], atol=6 * 3.0 / math.sqrt(2e5))
    np.testing.assert_allclose(draws.var(axis=0), [0.25, 9.0], rtol=0.02)


def test_normal_log_prob_matches_the_formula():
    loc, scale = 1.5, 2.0
    x = np.array([-3.0, 0.0, 1.5, 4.0])
    expected = -0.5 * ((x - loc) / scale) ** 2 - math.log(scale) - 0.5 * LOG_2PI
    np.testing.assert_allclose(pp.Normal(loc, scale).log_prob(x), expected, rtol=1e-12)
    # Scalar in, scalar out.
    assert np.ndim(pp.Normal(loc, scale).log_prob(0.0)) == 0


def test_normal_density_integrates_to_one_with_its_moments():
    dist = pp.Normal(1.0, 0.7)
    mass, mean, var = integrate(lambda x: np.exp(dist.log_prob(x)), -8.0, 10.0)
    assert mass == pytest.approx(1.0, abs=1e-8)
    assert mean == pytest.approx(1.0, abs=1e-8)
    assert var == pytest.approx(0.49, rel=1e-6)


def test_uniform_moments_and_log_prob():
    dist = pp.Uniform(2.0, 5.0)
    assert dist.mean() == pytest.approx(3.5)
    assert dist.var() == pytest.approx(9.0 / 12.0)
    draws = dist.sample(100_000, rng(3))
    assert draws.min() >= 2.0 and draws.max() < 5.0
    assert draws.mean() == pytest.approx(3.5, abs=0.02)
    inside = -math.log(3.0)
    np.testing.assert_allclose(dist.log_prob([2.0, 3.0, 4.99]), [inside] * 3)
    # The support is [low, high): high itself and everything outside has no mass.
    assert np.all(np.isneginf(dist.log_prob([1.99, 5.0, 7.0])))


def test_gamma_moments_and_log_prob():
    shape, rate = 2.5, 4.0
    dist = pp.Gamma(shape, rate)
    assert dist.mean() == pytest.approx(shape / rate)
    assert dist.var() == pytest.approx(shape / rate**2)
    draws = dist.sample(200_000, rng(4))
    assert draws.min() > 0
    assert draws.mean() == pytest.approx(shape / rate, rel=0.01)
    assert draws.var() == pytest.approx(shape / rate**2, rel=0.03)

    x = np.array([0.05, 0.5, 1.0, 3.0])
    expected = shape * math.log(rate) + (shape - 1) * np.log(x) - rate * x - math.lgamma(shape)
    np.testing.assert_allclose(dist.log_prob(x), expected, rtol=1e-12)
    assert np.isneginf(dist.log_prob(-1.0))
    mass, mean, var = integrate(lambda t: np.exp(dist.log_prob(t)), 1e-12, 15.0)
    assert mass == pytest.approx(1.0, abs=1e-6)
    assert mean == pytest.approx(shape / rate, rel=1e-5)
    assert var == pytest.approx(shape / rate**2, rel=1e-4)


def test_beta_moments_and_log_prob():
    a, b = 2.0, 5.0
    dist = pp.Beta(a, b)
    assert dist.mean() == pytest.approx(a / (a + b))
    assert dist.var() == pytest.approx(a * b / ((a + b) ** 2 * (a + b + 1)))
    draws = dist.sample(200_000, rng(5))
    assert draws.min() > 0 and draws.max() < 1
    assert draws.mean() == pytest.approx(a / (a + b), rel=0.01)

    x = np.array([0.1, 0.3, 0.9])
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    expected = log_norm + (a - 1) * np.log(x) + (b - 1) * np.log(1 - x)
    np.testing.assert_allclose(dist.log_prob(x), expected, rtol=1e-12)
    assert np.all(np.isneginf(dist.log_prob([-0.5, 1.5])))
    mass, mean, _ = integrate(lambda t: np.exp(dist.log_prob(t)), 0.0, 1.0)
    assert mass == pytest.approx(1.0, abs=1e-6)
    assert mean == pytest.approx(a / (a + b), rel=1e-5)


def test_mvn_moments_closed_form_and_large_sample():
    mean = np.array([1.0, -1.0, 0.5])
    cov = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    dist = pp.MultivariateNormal(mean, cov)
    np.testing.assert_array_equal(dist.mean(), mean)
    np.testing.assert_array_equal(dist.var(), np.diag(cov))
    draws = dist.sample(200_000, rng(6))
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.02)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), cov, atol=0.03)


def test_mvn_with_diagonal_cov_is_a_product_of_normals():
    loc = np.array([0.5, -1.0, 2.0])
    sd = np.array([1.0, 0.3, 2.5])
    dist = pp.MultivariateNormal(loc, np.diag(sd**2))
    x = rng(7).normal(size=(4, 3))
    expected = pp.Normal(loc, sd).log_prob(x).sum(axis=-1)
    np.testing.assert_allclose(dist.log_prob(x), expected, rtol=1e-12)
    assert dist.log_prob(x).shape == (4,)
    assert np.ndim(dist.log_prob(x[0])) == 0


def test_mvn_log_prob_matches_the_formula_for_a_full_cov():
    mean = np.array([1.0, -1.0])
    cov = np.array([[2.0, 0.8], [0.8, 1.0]])
    x = np.array([0.3, 0.4])
    diff = x - mean
    _, log_det = np.linalg.slogdet(cov)
    expected = -0.5 * (diff @ np.linalg.inv(cov) @ diff + log_det + 2 * LOG_2PI)
    assert pp.MultivariateNormal(mean, cov).log_prob(x) == pytest.approx(expected, rel=1e-12)


def test_mvn_with_singular_cov_samples_on_its_subspace_but_has_no_density():
    dist = pp.MultivariateNormal([0.0, 0.0], [[1.0, 1.0], [1.0, 1.0]])
    draws = dist.sample(1000, rng(8))
    np.testing.assert_allclose(draws[:, 0], draws[:, 1], atol=1e-9)
    assert draws[:, 0].std() > 0.5
    with pytest.raises(ValueError, match="singular"):
        dist.log_prob([0.0, 0.0])


# ---------------------------------------------------------------------------
# EmpiricalDistribution
# ---------------------------------------------------------------------------


def test_empirical_weights_are_normalized_and_default_to_uniform():
    np.testing.assert_allclose(
        pp.EmpiricalDistribution([1.0, 2.0], [2.0, 6.0]).weights, [0.25, 0.75]
    )
    np.testing.assert_allclose(pp.EmpiricalDistribution([1.0, 2.0, 3.0, 4.0]).weights, [0.25] * 4)


def test_empirical_weighted_mean_and_var():
    # Atoms 0, 1, 4 with weights 1/4, 2/4, 1/4: mean (0 + 2 + 4) / 4 = 1.5,
    # var ((0 - 1.5)^2 + 2 (1 - 1.5)^2 + (4 - 1.5)^2) / 4 = 2.25.
    dist = pp.EmpiricalDistribution([0.0, 1.0, 4.0], weights=[1.0, 2.0, 1.0])
    assert dist.mean() == pytest.approx(1.5)
    assert dist.var() == pytest.approx(2.25)


def test_empirical_vector_atoms_have_per_component_moments():
    atoms = np.array([[0.0, 10.0], [2.0, 20.0]])
    dist = pp.EmpiricalDistribution(atoms, weights=[3.0, 1.0])
    np.testing.assert_allclose(dist.mean(), [0.5, 12.5])
    np.testing.assert_allclose(dist.var(), [0.75, 18.75])


def test_empirical_samples_by_weight():
    atoms = np.array([10.0, 20.0, 30.0])
    dist = pp.EmpiricalDistribution(atoms, weights=[0.2, 0.0, 0.8])
    draws = dist.sample(100_000, rng(9))
    assert set(np.unique(draws)) == {10.0, 30.0}  # the zero-weight atom never comes up
    assert np.mean(draws == 30.0) == pytest.approx(0.8, abs=0.01)


def test_empirical_quantile_is_the_weighted_inverse_cdf():
    atoms = np.array([3.0, 1.0, 2.0, 7.0, 5.0])
    weights = np.array([0.1, 0.4, 0.2, 0.05, 0.25])
    q = np.array([0.0, 0.1, 0.39, 0.41, 0.61, 0.7, 0.96, 1.0])
    dist = pp.EmpiricalDistribution(atoms, weights)
    expected = np.quantile(atoms, q, weights=weights, method="inverted_cdf")
    np.testing.assert_array_equal(dist.quantile(q), expected)
    assert dist.quantile(0.5) == np.quantile(atoms, 0.5, weights=weights, method="inverted_cdf")
    unweighted = pp.EmpiricalDistribution(atoms)
    np.testing.assert_array_equal(
        unweighted.quantile(q), np.quantile(atoms, q, method="inverted_cdf")
    )


def test_empirical_has_no_density_and_quantile_needs_scalar_atoms():
    with pytest.raises(NotImplementedError):
        pp.EmpiricalDistribution([1.0, 2.0]).log_prob(1.0)
    with pytest.raises(ValueError, match="scalar"):
        pp.EmpiricalDistribution(np.ones((3, 2))).quantile(0.5)


# ---------------------------------------------------------------------------
# MixtureDistribution
# ---------------------------------------------------------------------------


def two_normals() -> tuple[pp.MixtureDistribution, list, np.ndarray]:
    components = [pp.Normal(-2.0, 1.0), pp.Normal(3.0, 0.5)]
    weights = np.array([0.3, 0.7])
    return pp.MixtureDistribution(components, weights), components, weights


def test_mixture_moments_follow_the_law_of_total_variance():
    mix, _, _ = two_normals()
    mean = 0.3 * -2.0 + 0.7 * 3.0
    second = 0.3 * (1.0 + 4.0) + 0.7 * (0.25 + 9.0)
    assert mix.mean() == pytest.approx(mean)
    assert mix.var() == pytest.approx(second - mean**2)
    draws = mix.sample(200_000, rng(10))
    assert draws.mean() == pytest.approx(mean, abs=0.03)
    assert draws.var() == pytest.approx(second - mean**2, rel=0.02)
    assert np.mean(draws > 0.5) == pytest.approx(0.7, abs=0.01)


def test_mixture_log_prob_is_logsumexp_of_weighted_components():
    mix, components, weights = two_normals()
    x = np.array([-4.0, -2.0, 0.5, 3.0, 10.0])
    parts = np.stack([np.log(w) + c.log_prob(x) for c, w in zip(components, weights)])
    np.testing.assert_allclose(mix.log_prob(x), np.logaddexp.reduce(parts, axis=0), rtol=1e-12)


def test_mixture_log_prob_outside_every_support_is_quietly_minus_inf():
    mix = pp.MixtureDistribution([pp.Uniform(0.0, 1.0), pp.Uniform(0.0, 2.0)], [1.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lp = mix.log_prob(np.array([0.5, 1.5, 5.0]))
    # The zero-weight component contributes nothing: 1.5 is outside the other one.
    np.testing.assert_allclose(lp[:1], [0.0])
    assert np.isneginf(lp[1]) and np.isneginf(lp[2])


def test_mixture_weights_default_to_uniform_and_event_shape_is_kept():
    mix = pp.MixtureDistribution(
        [pp.MultivariateNormal([0.0, 0.0], np.eye(2)), pp.MultivariateNormal([4.0, 0.0], np.eye(2))]
    )
    np.testing.assert_allclose(mix.weights, [0.5, 0.5])
    np.testing.assert_allclose(mix.mean(), [2.0, 0.0])
    np.testing.assert_allclose(mix.var(), [1.0 + 4.0, 1.0])
    assert mix.sample(11, rng(11)).shape == (11, 2)


def test_mixture_rejects_mismatched_components():
    with pytest.raises(ValueError, match="event shapes"):
        pp.MixtureDistribution([pp.Normal(0.0, 1.0), pp.Normal([0.0, 0.0], 1.0)])
    with pytest.raises(TypeError, match="component 1"):
        pp.MixtureDistribution([pp.Normal(0.0, 1.0), 3.0])


# ---------------------------------------------------------------------------
# BootstrapReplicateDistribution
# ---------------------------------------------------------------------------


def test_bootstrap_of_an_array_resamples_whole_rows():
    source = np.arange(30.0).reshape(10, 3)  # every row is distinct
    boot = pp.BootstrapReplicateDistribution(source)
    draws = boot.sample(50, rng(12))
    assert draws.shape == (50, 10, 3)
    source_rows = {tuple(row) for row in source}
    assert all(tuple(row) in source_rows for rep in draws for row in rep)
    # With replacement: some replicate repeats a row (all 50 being permutations
    # of 10 distinct rows has probability (10!/10^10)^50, i.e. never).
    assert any(len({tuple(row) for row in rep}) < 10 for rep in draws)


def test_bootstrap_moments_are_the_source_row_moments():
    source = np.array([1.0, 2.0, 6.0, 7.0])
    boot = pp.BootstrapReplicateDistribution(source)
    np.testing.assert_allclose(boot.mean(), np.full(4, 4.0))
    np.testing.assert_allclose(boot.var(), np.full(4, source.var()))
    draws = boot.sample(100_000, rng(13))
    np.testing.assert_allclose(draws.mean(axis=0), boot.mean(), atol=0.05)


def test_bootstrap_of_a_record_resamples_rows_of_every_field_together():
    data = record_data(20)
    boot = pp.BootstrapReplicateDistribution(data)
    draws = boot.sample(30, rng(14))
    assert draws.shape == (30,)
    for rep in draws:
        assert isinstance(rep, pp.Record)
        assert rep.fields == ("X", "y") and rep.name == "toy"
        assert len(rep["X"]) == 20
        np.testing.assert_array_equal(rep["y"], 10 * rep["X"])
    assert any(len(np.unique(rep["X"])) < 20 for rep in draws)


def test_bootstrap_views_resample_the_same_indices_given_the_same_generator():
    boot = pp.BootstrapReplicateDistribution(record_data(15))
    xs = boot["X"].sample(8, rng(15))
    ys = boot["y"].sample(8, rng(15))
    assert xs.shape == ys.shape == (8, 15)
    np.testing.assert_array_equal(ys, 10 * xs)
    np.testing.assert_allclose(boot["X"].mean(), np.full(15, 7.0))


def test_bootstrap_views_need_a_record_source_and_a_known_field():
    boot = pp.BootstrapReplicateDistribution(record_data(5))
    with pytest.raises(KeyError, match="'X', 'y'"):
        boot["z"]
    with pytest.raises(TypeError, match="Record source"):
        pp.BootstrapReplicateDistribution(np.arange(5.0))["X"]


def test_bootstrap_of_an_empirical_distribution_resamples_by_weight():
    certain = pp.EmpiricalDistribution([1.0, 2.0, 3.0], weights=[0.0, 0.0, 1.0])
    draws = pp.BootstrapReplicateDistribution(certain).sample(20, rng(16))
    assert draws.shape == (20, 3)
    assert np.all(draws == 3.0)

    skewed = pp.EmpiricalDistribution([0.0, 1.0], weights=[0.25, 0.75])
    boot = pp.BootstrapReplicateDistribution(skewed)
    np.testing.assert_allclose(boot.mean(), [0.75, 0.75])
    np.testing.assert_allclose(boot.var(), [0.1875, 0.1875])
    assert boot.sample(50_000, rng(17)).mean() == pytest.approx(0.75, abs=0.01)


# ---------------------------------------------------------------------------
# Pickling
# ---------------------------------------------------------------------------

PICKLE_CASES = {
    "normal": lambda: pp.Normal([0.0, 1.0], 2.0),
    "uniform": lambda: pp.Uniform(-1.0, 3.0),
    "gamma": lambda: pp.Gamma(2.0, 0.5),
    "beta": lambda: pp.Beta(2.0, 3.0),
    "mvn": lambda: pp.MultivariateNormal([0.0, 1.0], [[1.0, 0.5], [0.5, 2.0]]),
    "empirical": lambda: pp.EmpiricalDistribution(np.arange(12.0).reshape(6, 2), np.arange(1, 7)),
    "mixture": lambda: pp.MixtureDistribution(
        [pp.Normal(0.0, 1.0), pp.Gamma(2.0, 1.0)], weights=[0.4, 0.6]
    ),
    "bootstrap-array": lambda: pp.BootstrapReplicateDistribution(np.arange(9.0)),
    "bootstrap-record": lambda: pp.BootstrapReplicateDistribution(record_data(9)),
    "bootstrap-view": lambda: pp.BootstrapReplicateDistribution(record_data(9))["y"],
    "bootstrap-empirical": lambda: pp.BootstrapReplicateDistribution(
        pp.EmpiricalDistribution([1.0, 2.0, 3.0], [0.5, 0.25, 0.25])
    ),
}


def assert_same_draws(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    if a.dtype == object:  # Records from a Record bootstrap
        assert all(x == y for x, y in zip(a, b))
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("module", [pickle, cloudpickle], ids=["pickle", "cloudpickle"])
@pytest.mark.parametrize("make", list(PICKLE_CASES.values()), ids=list(PICKLE_CASES))
def test_distributions_pickle_and_sample_identically_after(make, module):
    dist = make()
    copy = module.loads(module.dumps(dist))
    assert type(copy) is type(dist)
    assert tuple(copy.event_shape) == tuple(dist.event_shape)
    assert_same_draws(copy.sample(7, rng(18)), dist.sample(7, rng(18)))
