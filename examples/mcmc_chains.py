"""Independent MCMC chains on any backend, then a convergence check (split R-hat).

The target is the posterior of the Challenger logistic regression (intercept
and slope of the log-odds of O-ring distress on standardized temperature,
Normal(0, 2.5) priors). Each chain is one row of one probpipe call:

* its starting point is a draw from an overdispersed distribution
  (MultivariateNormal(0, 3^2 I)), passed as a broadcast argument, so row i
  starts from draw i;
* its randomness comes from the ``rng`` argument probpipe gives every row,
  a generator derived from (seed, row): chains use independent streams, and
  the run is reproducible from the one seed on every backend.

The rows return EmpiricalDistributions (the kept draws), so the call returns a
MixtureDistribution whose components are the chains in row order. The script
then computes the split R-hat of Gelman et al. (Bayesian Data Analysis, 3rd
ed., section 11.4) for each parameter.

    python examples/mcmc_chains.py                      # 4 chains
    python examples/mcmc_chains.py --backend ray --chains 16
    python examples/mcmc_chains.py --small
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import probpipe as pp
from probpipe.models import adaptive_metropolis, load_challenger, logistic_log_posterior

PARAMETERS = ("intercept", "slope")


@pp.workflow_function
def chain(x0, X, y, rng, n_iter=6000):
    """One adaptive-Metropolis chain from ``x0``; the second half of the run is kept."""
    return adaptive_metropolis(
        lambda theta: logistic_log_posterior(theta, X, y), x0, n_iter=n_iter, rng=rng
    )


def split_rhat(draws):
    """Split R-hat of one parameter; ``draws`` has shape (chains, iterations)."""
    half = draws.shape[1] // 2
    halves = np.concatenate([draws[:, :half], draws[:, half : 2 * half]])
    n = halves.shape[1]
    within = halves.var(axis=1, ddof=1).mean()
    between = n * halves.mean(axis=1).var(ddof=1)
    pooled = (n - 1) / n * within + between / n
    return float(np.sqrt(pooled / within))


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
    parser.add_argument("--small", action="store_true", help="4 chains of 2,000 iterations")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--iterations", type=int, help="iterations per chain (default 6000)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    n_iter = args.iterations or (2000 if args.small else 6000)

    data = load_challenger()
    temp = data["temperature_f"]
    X = (temp - temp.mean()) / temp.std()
    y = data["distress"].astype(float)
    starts = pp.MultivariateNormal(np.zeros(2), 9.0 * np.eye(2))

    run = chain.with_options(n_broadcast_samples=args.chains, seed=args.seed)
    with pp.use_backend(args.backend, **dict(args.option)):
        start = time.perf_counter()
        chains = run(starts, X, y, n_iter=n_iter)  # MixtureDistribution, one chain each
        seconds = time.perf_counter() - start

    draws = np.stack([c.samples for c in chains.components])  # (chains, kept, 2)
    rates = [c.acceptance_rate for c in chains.components]
    print(
        f"{args.chains} chains x {draws.shape[1]} kept draws ({n_iter} iterations, first "
        f"half adaptive burn-in), acceptance {min(rates):.2f}-{max(rates):.2f}"
    )
    print(f"{'parameter':>10}  {'mean':>6}  {'sd':>5}  {'split R-hat':>11}")
    rhats = []
    for k, name in enumerate(PARAMETERS):
        rhats.append(split_rhat(draws[:, :, k]))
        values = draws[:, :, k]
        print(f"{name:>10}  {values.mean():>+6.2f}  {values.std():>5.2f}  {rhats[-1]:>11.3f}")
    verdict = "converged" if max(rhats) < 1.01 else "NOT converged: run longer chains"
    print(f"max split R-hat {max(rhats):.3f} ({verdict}; threshold 1.01)")
    meta = chains.provenance.metadata
    print(
        f"Backend {meta['backend']!r}: {meta['n_rows']} chains in {meta['n_chunks']} chunks, "
        f"{seconds:.1f} s, seed {meta['seed']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
