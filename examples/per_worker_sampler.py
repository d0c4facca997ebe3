"""A bagged posterior whose sampler is built once per worker, not once per fit.

The Challenger O-ring logistic regression again (see bagged_posterior.py), but
fitted the way a real model often is: an expensive object is prepared first,
then used for many fits. Here that object is a Metropolis sampler whose
proposal is tuned by a long adaptive pilot chain on all 23 launches, read
from disk by the factory itself. With Stan, PyMC or JAX the same place is
where the model is compiled (seconds to minutes, and the compiled object
often cannot be pickled).

``pp.per_worker(build_sampler, ...)`` hands the fits a sampler that each
worker process builds once and reuses for every row (and every later call)
it runs. The script fits the bagged posterior twice, once with the sampler
built per worker and once rebuilding it inside every row, and checks that
both give the same draws: the factory gets no rng and is deterministic, so
its value does not depend on which worker built it.

    python examples/per_worker_sampler.py                    # sequential
    python examples/per_worker_sampler.py --backend prefect-dask
    python examples/per_worker_sampler.py --backend ray -o address=auto
    python examples/per_worker_sampler.py --small
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

import probpipe as pp
from probpipe.models import adaptive_metropolis, load_challenger, logistic_log_posterior


class TunedSampler:
    """Random-walk Metropolis for the logistic model with a fixed, pre-tuned proposal."""

    def __init__(self, start, proposal_chol, prior_scale):
        self.start = start
        self.proposal_chol = proposal_chol
        self.prior_scale = prior_scale

    def sample(self, X, y, rng, n_iter):
        """Posterior draws of (intercept, slope) for one dataset (second half kept)."""
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        x = self.start.copy()
        log_p = logistic_log_posterior(x, X, y, self.prior_scale)
        kept = []
        for i in range(n_iter):
            proposal = x + self.proposal_chol @ rng.standard_normal(2)
            log_p_new = logistic_log_posterior(proposal, X, y, self.prior_scale)
            if math.log(rng.random()) < log_p_new - log_p:
                x, log_p = proposal, log_p_new
            if i >= n_iter // 2:
                kept.append(x.copy())
        return pp.EmpiricalDistribution(np.array(kept))


def build_sampler(pilot_iter, prior_scale=2.5, seed=0):
    """The expensive part: read the data, run an adaptive pilot chain, keep its tuning.

    Deterministic (its own fixed seed, no row rng): every worker builds the
    same sampler.
    """
    data = load_challenger()
    temp = data["temperature_f"]
    X = (temp - temp.mean()) / temp.std()
    y = data["distress"].astype(float)
    pilot = adaptive_metropolis(
        lambda theta: logistic_log_posterior(theta, X, y, prior_scale),
        np.zeros(2),
        n_iter=pilot_iter,
        rng=np.random.default_rng(seed),
    )
    cov = np.cov(pilot.samples.T) * 2.38**2 / 2  # the optimal random-walk scale in 2-d
    return TunedSampler(pilot.samples.mean(axis=0), np.linalg.cholesky(cov), prior_scale)


@pp.workflow_function
def fit(X, y, sampler, rng, n_iter=2000):
    """One bootstrap replicate's posterior, with the worker's sampler."""
    return sampler.sample(X, y, rng, n_iter)


@pp.workflow_function
def fit_rebuilding(X, y, pilot_iter, rng, n_iter=2000):
    """The same fit, building the sampler inside the row (what per_worker avoids)."""
    return build_sampler(pilot_iter).sample(X, y, rng, n_iter)


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
    parser.add_argument(
        "--small", action="store_true", help="8 replicates, 1,000 iterations, a shorter pilot"
    )
    parser.add_argument("--replicates", type=int, help="bootstrap replicates (default 32)")
    parser.add_argument("--seed", type=int, default=1986)
    args = parser.parse_args(argv)
    replicates = args.replicates or (8 if args.small else 32)
    n_iter = 1000 if args.small else 2000
    pilot_iter = 5_000 if args.small else 20_000

    data = load_challenger()
    temp = data["temperature_f"]
    launches = pp.Record(X=(temp - temp.mean()) / temp.std(), y=data["distress"])
    boot = pp.BootstrapReplicateDistribution(launches)
    options = {"n_broadcast_samples": replicates, "seed": args.seed}

    with pp.use_backend(args.backend, **dict(args.option)):
        # Start the backend and its workers first, so the timings below compare fits only.
        pp.WorkflowFunction(float, n_broadcast_samples=2, seed=0)(pp.Normal(0, 1))

        start = time.perf_counter()
        sampler = pp.per_worker(build_sampler, pilot_iter)
        bagged = fit.with_options(**options)(boot["X"], boot["y"], sampler, n_iter=n_iter)
        per_worker_seconds = time.perf_counter() - start

        start = time.perf_counter()
        rebuilt = fit_rebuilding.with_options(**options)(
            boot["X"], boot["y"], pilot_iter, n_iter=n_iter
        )
        per_row_seconds = time.perf_counter() - start

    meta = bagged.provenance.metadata
    [built] = meta["per_worker"]
    same = all(
        np.array_equal(a.samples, b.samples) for a, b in zip(bagged.components, rebuilt.components)
    )
    slope, slope_sd = bagged.mean()[1], np.sqrt(bagged.var()[1])
    print(
        f"Bagged posterior of the Challenger O-ring fit: {replicates} bootstrap replicates, "
        f"{n_iter} iterations each"
    )
    print(f"  slope per sd of temperature: {slope:+.2f} (sd {slope_sd:.2f})")
    print(f"Sampler tuned by a {pilot_iter}-iteration pilot chain:")
    print(
        f"  per_worker:         built {built['builds']} time(s) for {meta['n_rows']} fits, "
        f"{per_worker_seconds:.1f} s"
    )
    print(
        f"  built in every row: built {rebuilt.provenance.metadata['n_rows']} times for "
        f"{meta['n_rows']} fits, {per_row_seconds:.1f} s"
    )
    print(f"  same draws: {'yes' if same else 'NO'}")
    print(
        f"Backend {meta['backend']!r}: {meta['n_rows']} fits in {meta['n_chunks']} chunks "
        f"(chunksize {meta['chunksize']}), seed {meta['seed']}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
