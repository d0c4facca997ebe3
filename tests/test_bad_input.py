"""Bad input fails early and clearly: the right type, a message naming the culprit,
and nothing sampled, run or dispatched first (API.md section 1, "Bad input")."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import probpipe as pp


class MapCounter:
    """An observer plugin counting calls that dispatched rows."""

    def __init__(self) -> None:
        self.started = 0

    @pp.hookimpl
    def probpipe_map_started(self, call):
        self.started += 1


class SpyNormal(pp.Normal):
    """A Normal that records every time it is sampled."""

    draws: list[int] = []

    def sample(self, n, rng=None):
        SpyNormal.draws.append(n)
        return super().sample(n, rng)


def wf(f, **options):
    return pp.WorkflowFunction(f, **{"n_broadcast_samples": 4, **options})


def unstarted(name, **options):
    """A backend object, not selected and not started (what backend= accepts)."""
    from probpipe._selection import create_backend

    return create_backend(name, **options)


def mvn(mean, cov):
    return pp.MultivariateNormal(np.asarray(mean, float), np.asarray(cov, float))


# (id, trigger, expected exception, regex the message must match).
# ``trigger`` receives ``f``, a function whose body records that it ran.
CASES = [
    # -- n_broadcast_samples ---------------------------------------------------
    ("n-float", lambda f: wf(f, n_broadcast_samples=2.5), TypeError, r"n_broadcast_samples.*2\.5"),
    ("n-zero", lambda f: wf(f, n_broadcast_samples=0), ValueError, r"n_broadcast_samples.*\b0\b"),
    (
        "n-negative",
        lambda f: wf(f).with_options(n_broadcast_samples=-1),
        ValueError,
        r"n_broadcast_samples.*-1",
    ),
    (
        "n-bool",
        lambda f: pp.workflow_function(n_broadcast_samples=True)(f),
        TypeError,
        r"n_broadcast_samples.*True",
    ),
    # -- unknown options -------------------------------------------------------
    (
        "unknown-option",
        lambda f: pp.WorkflowFunction(f, n_broadcast_sample=10),
        TypeError,
        r"unknown option 'n_broadcast_sample'; did you mean 'n_broadcast_samples'",
    ),
    (
        "unknown-option-decorator",
        lambda f: pp.workflow_function(sed=1),
        TypeError,
        r"unknown option 'sed'; did you mean 'seed'",
    ),
    (
        "unknown-option-with-options",
        lambda f: wf(f).with_options(retry=2),
        TypeError,
        r"unknown option 'retry'; did you mean 'retries'",
    ),
    # -- chunksize, on_error, retries, seed ----------------------------------------
    ("chunksize-zero", lambda f: wf(f, chunksize=0), ValueError, r"chunksize.*\b0\b"),
    ("chunksize-negative", lambda f: wf(f, chunksize=-3), ValueError, r"chunksize.*-3"),
    ("chunksize-float", lambda f: wf(f, chunksize=2.5), TypeError, r"chunksize.*2\.5"),
    ("chunksize-text", lambda f: wf(f, chunksize="big"), TypeError, r"chunksize.*'big'"),
    ("on-error", lambda f: wf(f, on_error="ignore"), ValueError, r"on_error.*'ignore'"),
    ("retries-negative", lambda f: wf(f, retries=-1), ValueError, r"retries.*-1"),
    ("retries-float", lambda f: wf(f, retries=1.5), TypeError, r"retries.*1\.5"),
    ("seed-negative", lambda f: wf(f, seed=-1), ValueError, r"seed.*-1"),
    ("seed-text", lambda f: wf(f, seed="x"), TypeError, r"seed.*'x'"),
    ("not-callable", lambda f: pp.WorkflowFunction(42), TypeError, r"callable.*42"),
    # -- backends --------------------------------------------------------------
    (
        "unknown-backend",
        lambda f: wf(f, backend="sequental"),
        pp.BackendNotFoundError,
        r"unknown backend 'sequental'; did you mean 'sequential'.*Known:.*prefect.*sequential",
    ),
    (
        "unknown-backend-use",
        lambda f: pp.use_backend("no-such-engine"),
        pp.BackendNotFoundError,
        r"unknown backend 'no-such-engine'.*Known:.*sequential",
    ),
    # -- calling ---------------------------------------------------------------
    (
        "empty-sweep",
        lambda f: wf(f)(SpyNormal(0.0, 1.0), y=pp.sweep([])),
        ValueError,
        r"sweep for argument 'y' is empty",
    ),
    (
        "rng-by-keyword",
        lambda f: wf(f)(SpyNormal(0.0, 1.0), rng=np.random.default_rng(0)),
        TypeError,
        r"f\(\) receives 'rng' from probpipe",
    ),
    (
        "rng-by-position",
        lambda f: wf(f)(SpyNormal(0.0, 1.0), 2.0, np.random.default_rng(0)),
        TypeError,
        r"f\(\) receives 'rng' from probpipe",
    ),
    (
        "unbindable-call",
        lambda f: wf(f)(SpyNormal(0.0, 1.0), z=pp.sweep([1, 2])),
        TypeError,
        r"f\(\).*'z'",
    ),
    ("sweep-text", lambda f: pp.sweep("abc"), TypeError, r"sweep\(\).*str 'abc'"),
    ("sweep-scalar", lambda f: pp.sweep(5), TypeError, r"sweep\(\).*int 5"),
    (
        "sweep-of-distributions",
        lambda f: pp.sweep([pp.Normal(0.0, 1.0)]),
        TypeError,
        r"sweep\(\) values must be concrete",
    ),
    # -- bootstrap sources ---------------------------------------------------------
    (
        "bootstrap-unequal-record",
        lambda f: pp.BootstrapReplicateDistribution(pp.Record(X=np.zeros(5), y=np.zeros(4))),
        ValueError,
        r"equal lengths.*X=5, y=4",
    ),
    (
        "bootstrap-scalar",
        lambda f: pp.BootstrapReplicateDistribution(3.0),
        TypeError,
        r"rows to resample.*scalar 3\.0",
    ),
    (
        "bootstrap-parametric",
        lambda f: pp.BootstrapReplicateDistribution(pp.Normal(0.0, 1.0)),
        TypeError,
        r"source must be .*got Normal",
    ),
    # -- distribution parameters -----------------------------------------------------
    ("normal-scale-negative", lambda f: pp.Normal(0.0, -1.0), ValueError, r"Normal: scale.*> 0"),
    ("normal-scale-zero", lambda f: pp.Normal(0.0, 0.0), ValueError, r"Normal: scale.*> 0"),
    ("normal-loc-nan", lambda f: pp.Normal(np.nan, 1.0), ValueError, r"Normal.*'loc'.*finite"),
    (
        "uniform-equal-bounds",
        lambda f: pp.Uniform(1.0, 1.0),
        ValueError,
        r"Uniform: high must be > low",
    ),
    (
        "uniform-reversed-bounds",
        lambda f: pp.Uniform(2.0, 1.0),
        ValueError,
        r"Uniform: high must be > low.*low=2\.0, high=1\.0",
    ),
    ("gamma-shape-zero", lambda f: pp.Gamma(0.0, 1.0), ValueError, r"Gamma: shape must be > 0"),
    ("gamma-shape-negative", lambda f: pp.Gamma(-2.0, 1.0), ValueError, r"Gamma: shape.*-2"),
    ("gamma-rate-zero", lambda f: pp.Gamma(1.0, 0.0), ValueError, r"Gamma: rate must be > 0"),
    ("beta-a-zero", lambda f: pp.Beta(0.0, 1.0), ValueError, r"Beta: a must be > 0"),
    ("beta-b-negative", lambda f: pp.Beta(1.0, -1.0), ValueError, r"Beta: b must be > 0"),
    (
        "mvn-not-psd",
        lambda f: mvn([0, 0], [[1, 2], [2, 1]]),
        ValueError,
        r"MultivariateNormal: cov must be positive semi-definite",
    ),
    (
        "mvn-wrong-shape",
        lambda f: mvn([0, 0, 0], np.eye(2)),
        ValueError,
        r"MultivariateNormal: cov must have shape \(3, 3\).*\(2, 2\)",
    ),
    (
        "mvn-not-symmetric",
        lambda f: mvn([0, 0], [[1, 0.5], [0, 1]]),
        ValueError,
        r"MultivariateNormal: cov must be symmetric",
    ),
    (
        "mvn-matrix-mean",
        lambda f: mvn(np.zeros((2, 2)), np.eye(2)),
        ValueError,
        r"MultivariateNormal: mean must be a 1-d vector",
    ),
    (
        "bootstrap-no-rows",
        lambda f: pp.BootstrapReplicateDistribution(np.zeros((0, 3))),
        ValueError,
        r"source has no rows",
    ),
    (
        "mixture-shapes-differ",
        lambda f: pp.MixtureDistribution([pp.Normal(0.0, 1.0), mvn([0, 0], np.eye(2))]),
        ValueError,
        r"different event shapes",
    ),
    (
        "empirical-weights-shape",
        lambda f: pp.EmpiricalDistribution([1.0, 2.0, 3.0], weights=[1.0, 2.0]),
        ValueError,
        r"weights must have shape \(3,\)",
    ),
    # -- reliability options ---------------------------------------------------------
    ("timeout-negative", lambda f: wf(f, timeout=-1), ValueError, r"timeout must be > 0.*-1"),
    ("timeout-text", lambda f: wf(f, timeout="soon"), TypeError, r"timeout.*'soon'"),
    ("checkpoint-number", lambda f: wf(f, checkpoint=123), TypeError, r"checkpoint.*123"),
    ("resources-text", lambda f: wf(f, resources="gpu"), TypeError, r"resources.*'gpu'"),
    ("progress-text", lambda f: wf(f, progress="yes"), TypeError, r"progress.*'yes'"),
    ("backend-number", lambda f: wf(f, backend=42), TypeError, r"backend must be .*42"),
    # -- choosing and reaching backends ---------------------------------------------
    (
        "backend-option-misspelled",
        lambda f: pp.use_backend("prefect-ray", adress="auto"),
        TypeError,
        r"backend 'prefect-ray': unknown option 'adress'; did you mean 'address'",
    ),
    (
        "max-workers-zero",
        lambda f: pp.use_backend("prefect", max_workers=0),
        ValueError,
        r"max_workers must be a positive int, got 0",
    ),
    (
        "ray-address-malformed",
        lambda f: pp.use_backend("prefect-ray", address="ray:/head"),
        ValueError,
        r"Ray address must be .*'ray:/head'",
    ),
    (
        "dask-address-no-scheme",
        lambda f: pp.use_backend("prefect-dask", address="127.0.0.1:8786"),
        ValueError,
        r"Dask address .*tcp://.*'127\.0\.0\.1:8786'",
    ),
    (
        "dask-address-unreachable",
        lambda f: wf(f, backend=unstarted("prefect-dask", address="tcp://127.0.0.1:9"))(
            x=pp.sweep([1.0])
        ),
        pp.BackendConnectionError,
        r"nothing answers at the Dask scheduler address 'tcp://127\.0\.0\.1:9'",
    ),
    (
        "ray-address-unreachable",
        lambda f: wf(f, backend=unstarted("prefect-ray", address="127.0.0.1:9"))(x=pp.sweep([1.0])),
        pp.BackendConnectionError,
        r"nothing answers at Ray address '127\.0\.0\.1:9'.*ray start --head",
    ),
    (
        "unpicklable-argument",
        lambda f: wf(f, backend=unstarted("prefect-dask"))(x=pp.sweep([1.0]), y=threading.Lock()),
        TypeError,
        r"argument 'y' of f\(\) cannot be pickled, so backend 'prefect-dask'.*_thread\.lock",
    ),
    (
        "unpicklable-function",
        lambda f: wf(_holding_a_lock(f), backend=unstarted("prefect-ray"))(x=pp.sweep([1.0])),
        TypeError,
        r"function f\(\) cannot be pickled, so backend 'prefect-ray'",
    ),
]


def _holding_a_lock(f):
    """``f`` plus a reference to a lock, which no pickler can ship."""
    lock = threading.Lock()

    def wrapped(x, y=1.0, rng=None):
        with lock:
            return f(x, y)

    wrapped.__name__ = "f"
    return wrapped


@pytest.mark.parametrize(
    ("trigger", "expected", "pattern"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_fails_before_anything_runs(trigger, expected, pattern):
    ran = []

    def f(x, y=1.0, rng=None):
        ran.append((x, y))
        return float(x) * y

    counter = MapCounter()
    pp.register_plugin(counter)
    SpyNormal.draws.clear()
    try:
        with pytest.raises(expected, match=pattern):
            trigger(f)
    finally:
        pp.unregister_plugin(counter)
    assert ran == [], "the function ran"
    assert SpyNormal.draws == [], "a distribution was sampled"
    assert counter.started == 0, "rows were dispatched"
    assert pp.current_backend().name == "sequential"
