"""A bootstrap confidence interval for a correlation coefficient, on any backend.

The data are the law school data of Efron and Tibshirani (An Introduction to
the Bootstrap, 1993, table 3.1): average LSAT score and undergraduate GPA of
the 1973 entering classes of 15 American law schools. The statistic is their
Pearson correlation. Each bootstrap replicate resamples the 15 schools (LSAT
and GPA together) and is one row of a single probpipe call; the script then
reports the bootstrap standard error and two 95% intervals:

* percentile: the 2.5% and 97.5% quantiles of the replicates;
* BCa: bias-corrected and accelerated (Efron 1987), with the acceleration
  from the jackknife.

It also prints the normal-theory interval (Fisher's z) for comparison.

    python examples/bootstrap_ci.py                        # 2,000 replicates
    python examples/bootstrap_ci.py --backend prefect-dask --replicates 10000
    python examples/bootstrap_ci.py --small
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import NormalDist

import numpy as np

import probpipe as pp

LSAT = [576, 635, 558, 578, 666, 580, 555, 661, 651, 605, 653, 575, 545, 572, 594]
GPA = [3.39, 3.30, 2.81, 3.03, 3.44, 3.07, 3.00, 3.43, 3.36, 3.13, 3.12, 2.74, 2.76, 2.88, 2.96]


@pp.workflow_function
def correlation(lsat, gpa):
    """The statistic, for one (resampled) dataset."""
    return np.corrcoef(lsat, gpa)[0, 1]


def bca_interval(replicates, estimate, jackknife, level=0.95):
    """Efron's BCa interval from bootstrap replicates and leave-one-out estimates."""
    normal = NormalDist()
    share_below = np.mean(replicates < estimate)
    z0 = normal.inv_cdf(min(max(share_below, 1e-6), 1 - 1e-6))
    d = jackknife.mean() - jackknife
    acceleration = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
    quantiles = []
    for tail in ((1 - level) / 2, (1 + level) / 2):
        z = z0 + normal.inv_cdf(tail)
        quantiles.append(normal.cdf(z0 + z / (1 - acceleration * z)))
    return np.quantile(replicates, quantiles), z0, acceleration


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
        metavar="KEY=VALUE", help="backend option, e.g. -o n_workers=4 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--small", action="store_true", help="400 replicates")
    parser.add_argument("--replicates", type=int, help="bootstrap replicates (default 2000)")
    parser.add_argument("--seed", type=int, default=1973)
    args = parser.parse_args(argv)
    n_boot = args.replicates or (400 if args.small else 2000)

    schools = pp.Record(name="law school", lsat=np.array(LSAT, float), gpa=np.array(GPA))
    n = len(LSAT)
    estimate = correlation(schools["lsat"], schools["gpa"])  # no distribution: runs once, here

    boot = pp.BootstrapReplicateDistribution(schools)
    bootstrap = correlation.with_options(n_broadcast_samples=n_boot, seed=args.seed)
    with pp.use_backend(args.backend, **dict(args.option)):
        start = time.perf_counter()
        result = bootstrap(boot["lsat"], boot["gpa"])
        seconds = time.perf_counter() - start
    replicates = result.samples  # shape (n_boot,), in row order

    keep = ~np.eye(n, dtype=bool)
    jackknife = np.array([correlation(schools["lsat"][k], schools["gpa"][k]) for k in keep])
    (bca_lo, bca_hi), z0, acceleration = bca_interval(replicates, estimate, jackknife)
    pct_lo, pct_hi = result.quantile([0.025, 0.975])
    z, half = np.arctanh(estimate), NormalDist().inv_cdf(0.975) / np.sqrt(n - 3)
    meta = result.provenance.metadata

    print(f"Law school data: {n} schools, correlation of LSAT and GPA r = {estimate:.3f}")
    print(f"Bootstrap: {n_boot} replicates, standard error {replicates.std(ddof=1):.3f}")
    print(
        f"  bias estimate {replicates.mean() - estimate:+.3f}, z0 {z0:+.3f}, a {acceleration:+.3f}"
    )
    print(f"  95% percentile interval: {pct_lo:.3f} to {pct_hi:.3f}")
    print(f"  95% BCa interval:        {bca_lo:.3f} to {bca_hi:.3f}")
    print(f"Normal theory (Fisher z):  {np.tanh(z - half):.3f} to {np.tanh(z + half):.3f}")
    print(
        f"Backend {meta['backend']!r}: {meta['n_rows']} rows in {meta['n_chunks']} chunks "
        f"(chunksize {meta['chunksize']}), {seconds:.1f} s, seed {meta['seed']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
