"""A bagged posterior for the Challenger O-ring data, on any probpipe backend.

The 23 launches before the Challenger accident are few, and a single posterior
says more about them than 23 rows can support. Bagging the posterior
(BayesBag: one posterior per bootstrap replicate of the data, mixed with equal
weights) gives a distribution that also reflects how much the fit changes from
one plausible dataset to the next.

Each replicate is fitted by adaptive Metropolis on a logistic regression of
O-ring distress on standardized launch temperature. The replicates are
independent rows of one probpipe call, so the same script runs in this process
or on a cluster:

    python examples/bagged_posterior.py                       # sequential
    python examples/bagged_posterior.py --backend prefect-ray --replicates 64
    python examples/bagged_posterior.py --backend ray -o address=auto
    python examples/bagged_posterior.py --small               # seconds, for a look
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import probpipe as pp
from probpipe.models import fit_logistic, load_challenger

LAUNCH_TEMPERATURE_F = 31.0  # the morning of 28 January 1986


@pp.workflow_function
def fit(X, y, rng, n_iter=4000):
    """Posterior draws of (intercept, slope) for one (resampled) dataset."""
    return fit_logistic(X, y, rng=rng, n_iter=n_iter)


def p_distress(posterior, z, n=20_000, seed=0):
    """Posterior-predictive draws of P(distress) at standardized temperature ``z``."""
    theta = posterior.sample(n, rng=np.random.default_rng(seed))
    return 1.0 / (1.0 + np.exp(-(theta[:, 0] + theta[:, 1] * z)))


def interval(draws):
    lo, mid, hi = np.quantile(draws, [0.05, 0.5, 0.95])
    return f"{mid:.2f} (90% interval {lo:.2f} to {hi:.2f})"


def backend_option(text):
    """``key=value``; the value is parsed as JSON when it can be (numbers, null)."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="sequential", help="probpipe backend name")
    parser.add_argument(
        "-o", "--option", type=backend_option, action="append", default=[],
        metavar="KEY=VALUE", help="backend option, e.g. -o address=auto (repeatable)",
    )  # fmt: skip
    parser.add_argument("--small", action="store_true", help="8 replicates, 1,000 iterations")
    parser.add_argument("--replicates", type=int, help="bootstrap replicates (default 32)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    replicates = args.replicates or (8 if args.small else 32)
    n_iter = 1000 if args.small else 4000

    data = load_challenger()
    temp, distress = data["temperature_f"], data["distress"]
    mu, sd = temp.mean(), temp.std()
    launches = pp.Record(name="challenger", X=(temp - mu) / sd, y=distress)
    z_launch = (LAUNCH_TEMPERATURE_F - mu) / sd

    # No distribution among the arguments: the function runs once, here.
    single = fit.with_options(seed=args.seed)(launches["X"], launches["y"], n_iter=n_iter)

    # boot["X"] and boot["y"] are co-sampled: each row resamples the same launches.
    boot = pp.BootstrapReplicateDistribution(launches)
    bagged_fit = fit.with_options(n_broadcast_samples=replicates, seed=args.seed)
    with pp.use_backend(args.backend, **dict(args.option)):
        start = time.perf_counter()
        bagged = bagged_fit(boot["X"], boot["y"], n_iter=n_iter)
        seconds = time.perf_counter() - start

    meta = bagged.provenance.metadata
    slope_single = single.mean()[1], np.sqrt(single.var()[1])
    slope_bagged = bagged.mean()[1], np.sqrt(bagged.var()[1])
    print(
        f"Challenger O-ring data: {len(distress)} launches, {int(distress.sum())} with "
        f"distress, {temp.min():.0f}-{temp.max():.0f} F"
    )
    print("Slope of log-odds of distress per standard deviation of temperature:")
    print(f"  single posterior: {slope_single[0]:+.2f} (sd {slope_single[1]:.2f})")
    print(
        f"  bagged posterior: {slope_bagged[0]:+.2f} (sd {slope_bagged[1]:.2f}), "
        f"mixture of {len(bagged.components)} bootstrap posteriors"
    )
    print(f"P(O-ring distress) at {LAUNCH_TEMPERATURE_F:.0f} F:")
    print(f"  single posterior: {interval(p_distress(single, z_launch, seed=args.seed))}")
    print(f"  bagged posterior: {interval(p_distress(bagged, z_launch, seed=args.seed))}")
    print(
        f"Backend {meta['backend']!r}: {meta['n_rows']} fits in {meta['n_chunks']} chunks "
        f"(chunksize {meta['chunksize']}), {seconds:.1f} s, seed {meta['seed']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
