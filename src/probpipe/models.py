"""Small, real workloads: adaptive Metropolis and a Bayesian logistic regression.

These are what the demo, the examples and the benchmarks run. They are pure
NumPy, deterministic given ``rng``, and return :class:`EmpiricalDistribution`
posteriors, so a broadcast over bootstrap replicates gives a bagged posterior
(a :class:`MixtureDistribution`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib import resources

import numpy as np

from ._distributions import EmpiricalDistribution
from ._record import Record

__all__ = [
    "adaptive_metropolis",
    "fit_logistic",
    "load_challenger",
    "logistic_log_posterior",
]


def adaptive_metropolis(
    log_density: Callable[[np.ndarray], float],
    x0: np.ndarray,
    *,
    n_iter: int = 4000,
    burn_in: int | None = None,
    thin: int = 1,
    rng: np.random.Generator,
) -> EmpiricalDistribution:
    """Adaptive random-walk Metropolis (Haario et al., 2001).

    During burn-in the Gaussian proposal's covariance follows the chain's own
    covariance, scaled by ``2.38**2 / d``; after burn-in it is frozen, so the
    kept draws come from a valid Markov chain. Returns the kept draws
    (every ``thin``-th after burn-in) as an EmpiricalDistribution with the
    acceptance rate in ``.acceptance_rate``.
    """
    x = np.array(x0, dtype=float)
    d = x.size
    burn_in = n_iter // 2 if burn_in is None else burn_in
    scale = 2.38**2 / d
    cov = np.eye(d) * 0.1
    chol = np.linalg.cholesky(cov)
    log_p = log_density(x)
    mean = x.copy()
    m2 = np.zeros((d, d))
    kept = []
    accepted = 0
    for i in range(n_iter):
        proposal = x + chol @ rng.standard_normal(d)
        log_p_new = log_density(proposal)
        if math.log(rng.random()) < log_p_new - log_p:
            x, log_p = proposal, log_p_new
            if i >= burn_in:
                accepted += 1
        if i < burn_in:
            # Welford update of the chain's mean and covariance.
            delta = x - mean
            mean = mean + delta / (i + 1)
            m2 = m2 + np.outer(delta, x - mean)
            if i >= 100 and i % 50 == 0:
                cov = scale * (m2 / i) + 1e-6 * np.eye(d)
                chol = np.linalg.cholesky(cov)
        elif (i - burn_in) % thin == 0:
            kept.append(x.copy())
    draws = EmpiricalDistribution(np.array(kept))
    draws.acceptance_rate = accepted / max(1, n_iter - burn_in)
    return draws


def logistic_log_posterior(
    theta: np.ndarray, X: np.ndarray, y: np.ndarray, prior_scale: float = 2.5
) -> float:
    """Log posterior of ``P(y=1) = sigmoid(a + b x)`` with Normal(0, prior_scale) priors."""
    a, b = theta
    eta = a + b * X
    # log sigmoid(eta) for y=1, log sigmoid(-eta) for y=0, computed stably
    log_lik = -np.sum(np.logaddexp(0.0, -eta * (2 * y - 1)))
    log_prior = -0.5 * (a * a + b * b) / prior_scale**2
    return float(log_lik + log_prior)


def fit_logistic(
    X: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    n_iter: int = 4000,
    prior_scale: float = 2.5,
) -> EmpiricalDistribution:
    """Posterior draws of (intercept, slope) of a logistic regression of ``y`` on ``X``."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    return adaptive_metropolis(
        lambda theta: logistic_log_posterior(theta, X, y, prior_scale),
        np.zeros(2),
        n_iter=n_iter,
        thin=2,
        rng=rng,
    )


def load_challenger() -> Record:
    """The 23 pre-Challenger shuttle launches: launch temperature and O-ring distress.

    Returns ``Record(name="challenger", temperature_f=..., distress=...)``;
    see ``probpipe/data/challenger.csv`` for the source.
    """
    text = resources.files("probpipe").joinpath("data/challenger.csv").read_text()
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    data = np.array([[float(v) for v in line.split(",")] for line in rows[1:]])
    return Record(name="challenger", temperature_f=data[:, 0], distress=data[:, 1].astype(int))
