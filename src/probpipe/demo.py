"""The main example: a bagged posterior for the Challenger O-ring data.

Each bootstrap replicate of the 23 launches gets its own Bayesian logistic
regression, fitted by adaptive Metropolis; the replicates' posteriors form a
mixture (a bagged posterior), which is more honest about how much 23 rows
can say than a single fit. Run it with ``probpipe demo`` or ``make demo``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

import probpipe as pp
from probpipe.models import fit_logistic, load_challenger

LAUNCH_TEMPERATURE_F = 31.0  # the morning of 28 January 1986


@pp.workflow_function
def fit(X, y, rng, n_iter=4000):
    """One posterior of (intercept, slope) for one (re)sampled dataset."""
    return fit_logistic(X, y, rng=rng, n_iter=n_iter)


def distress_probability(posterior: pp.Distribution, z: float, n: int, seed: int) -> np.ndarray:
    """Posterior-predictive draws of P(distress) at standardized temperature ``z``."""
    theta = posterior.sample(n, rng=np.random.default_rng(seed))
    return 1.0 / (1.0 + np.exp(-(theta[:, 0] + theta[:, 1] * z)))


def run_demo(
    backend: str = "sequential",
    n_replicates: int = 32,
    n_iter: int = 4000,
    seed: int = 2026,
    **backend_options: Any,
) -> dict[str, Any]:
    """Fit the single and the bagged posterior on ``backend``; return the summaries."""
    data = load_challenger()
    temp = data["temperature_f"]
    mu, sd = temp.mean(), temp.std()
    launches = pp.Record(name="challenger", X=(temp - mu) / sd, y=data["distress"])
    z_launch = (LAUNCH_TEMPERATURE_F - mu) / sd

    single = fit.with_options(seed=seed)(launches["X"], launches["y"], n_iter=n_iter)

    boot = pp.BootstrapReplicateDistribution(launches)
    bagged_fit = fit.with_options(n_broadcast_samples=n_replicates, seed=seed)
    with pp.use_backend(backend, **backend_options):
        start = time.perf_counter()
        bagged = bagged_fit(boot["X"], boot["y"], n_iter=n_iter)
        seconds = time.perf_counter() - start

    p_single = distress_probability(single, z_launch, 20_000, seed)
    p_bagged = distress_probability(bagged, z_launch, 20_000, seed)
    return {
        "data": data,
        "single": single,
        "bagged": bagged,
        "p_single": p_single,
        "p_bagged": p_bagged,
        "seconds": seconds,
        "slope_per_sd": (single.mean()[1], bagged.mean()[1]),
    }


def _interval(draws: np.ndarray) -> str:
    lo, mid, hi = np.quantile(draws, [0.05, 0.5, 0.95])
    return f"{mid:.2f}  (90% interval {lo:.2f} to {hi:.2f})"


def report(out: dict[str, Any]) -> str:
    data, single, bagged = out["data"], out["single"], out["bagged"]
    meta = bagged.provenance.metadata if bagged.provenance else {}
    lines = [
        "Challenger O-ring data: "
        f"{len(data['distress'])} launches, {int(data['distress'].sum())} with O-ring distress, "
        f"{data['temperature_f'].min():.0f}-{data['temperature_f'].max():.0f} F",
        "",
        "Logistic regression of distress on standardized temperature, adaptive Metropolis.",
        f"  single posterior:  slope {single.mean()[1]:+.2f} (sd {np.sqrt(single.var()[1]):.2f}),"
        f" {single.n} draws",
        f"  bagged posterior:  slope {bagged.mean()[1]:+.2f} (sd {np.sqrt(bagged.var()[1]):.2f}),"
        f" mixture of {len(bagged.components)} bootstrap posteriors",
        "",
        f"P(O-ring distress) at {LAUNCH_TEMPERATURE_F:.0f} F, the launch temperature:",
        f"  single posterior:  {_interval(out['p_single'])}",
        f"  bagged posterior:  {_interval(out['p_bagged'])}",
        "",
        f"Ran {meta.get('n_rows')} fits on backend {meta.get('backend')!r} "
        f"in {out['seconds']:.1f} s (chunksize {meta.get('chunksize')}).",
        "",
        "Provenance of the bagged posterior:",
        json.dumps(bagged.provenance.to_dict() if bagged.provenance else None, indent=2),
    ]
    return "\n".join(lines)


def main(backend: str = "sequential", n_replicates: int = 32, **backend_options: Any) -> int:
    print(report(run_demo(backend, n_replicates=n_replicates, **backend_options)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
