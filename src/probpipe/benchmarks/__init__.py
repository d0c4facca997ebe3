"""The benchmark harness behind ``probpipe bench``.

Compares every installed probpipe backend with raw-engine baselines (plain
loop, process pool, Ray, Dask, Prefect task.map) on the same workloads, in one
run, each (workload, runner) in a fresh subprocess. Writes results.md,
results.json and one PNG per workload. See benchmarks/README.md.

Needs the ``bench`` extra (matplotlib, psutil): ``pip install 'probpipe[bench]'``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

DEFAULT_OUT = Path("benchmarks") / "results"


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _size(text: str) -> tuple[str, str, Any]:
    """``W2.rows=8`` -> ("W2", "rows", 8); the value is parsed as JSON when it can be."""
    try:
        target, raw = text.split("=", 1)
        workload, key = target.split(".", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected W<n>.<size>=<value>, got {text!r}") from None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return workload.upper(), key, value


def build_parser() -> argparse.ArgumentParser:
    from probpipe._argparse import OneLineParser  # command-line mistakes are one line

    from .workloads import WORKLOADS

    sizes = "; ".join(
        f"{w.key}: " + ", ".join(f"{k}={v}" for k, v in w.sizes.items()) for w in WORKLOADS.values()
    )
    parser = OneLineParser(
        prog="probpipe bench",
        description=(
            "Benchmark probpipe's backends against raw-engine baselines on the same "
            "workloads, in one run. Each (workload, runner) runs in a fresh subprocess: "
            "start the engine, one warm-up call, then --repeats timed calls (median "
            "reported). Writes results.md, results.json and <workload>.png to --out."
        ),
        epilog=(
            "workloads: "
            + "; ".join(f"{w.key} {w.title}" for w in WORKLOADS.values())
            + ". runners: the installed probpipe backends (sequential, prefect, "
            "prefect-dask, prefect-ray, ray, plugins) and the raw baselines raw-loop, "
            "raw-pool, raw-ray, raw-dask, raw-prefect, raw-prefect-dask, raw-prefect-ray. "
            f"Default sizes: {sizes}."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and 1 repeat (unless --repeats is given), and without "
        "--runners the two slowest raw baselines (raw-prefect-dask, raw-prefect-ray) "
        "run W1 only: a fast look, not numbers to quote",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats per case (default 3; --quick: 1)"
    )
    parser.add_argument(
        "--workloads",
        type=_csv,
        default=None,
        metavar="W1,W3",
        help="comma-separated workloads to run (default: all)",
    )
    parser.add_argument(
        "--runners",
        type=_csv,
        default=None,
        metavar="sequential,ray,...",
        help="comma-separated runners (default: every installed backend and raw baseline)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output directory (default: {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--size",
        type=_size,
        action="append",
        default=[],
        metavar="W2.rows=8",
        help="override one size (repeatable); W2.n_iter=N skips the calibration, "
        "W8.max_rows=100000 leaves out the 1M-row call",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds before a case's subprocess is stopped and recorded as an error "
        "(default 400; --quick: 240)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="before each case, wait up to S seconds for other processes to leave the "
        "CPU, and run a case again once if they disturbed it (default 60; at most 2 min "
        "of waiting and 4 re-runs per run; 0: neither)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list workloads and installed runners, then exit"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probpipe bench`` (and ``python benchmarks/run.py``)."""
    from .runner import discover_runners
    from .workloads import WORKLOADS

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]  # `probpipe bench -- --quick` works too
    parser = build_parser()
    args = parser.parse_args(argv)

    backends, raw = discover_runners()
    if args.list:
        for w in WORKLOADS.values():
            print(f"{w.key}  {w.title}: {w.measures}")
        print("probpipe backends:", ", ".join(backends))
        print("raw baselines:", ", ".join(raw))
        return 0

    workloads = args.workloads or list(WORKLOADS)
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; known: {', '.join(WORKLOADS)}")
    runners = args.runners or [*backends, *raw]
    import probpipe as pp

    from .baselines import BASELINES

    known = set(pp.available_backends()) | set(BASELINES)
    unknown = [r for r in runners if r not in known]
    if unknown:
        parser.error(f"unknown runner(s) {unknown}; known: {', '.join(sorted(known))}")
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.timeout is not None and not args.timeout > 0:
        parser.error(f"--timeout must be > 0 seconds, got {args.timeout}")
    if not args.quiet_wait >= 0:
        parser.error(f"--quiet-wait must be >= 0 seconds, got {args.quiet_wait}")

    sizes = {key: copy.deepcopy(w.quick if args.quick else w.sizes) for key, w in WORKLOADS.items()}
    for workload, key, value in args.size:
        if workload not in sizes:
            parser.error(f"--size {workload}.{key}: unknown workload")
        sizes[workload][key] = value
    sizes = {k: v for k, v in sizes.items() if k in workloads}

    from .runner import run_benchmarks

    run_benchmarks(
        workloads=workloads,
        runners=runners,
        sizes=sizes,
        repeats=repeats,
        quick=args.quick,
        trim_slow=args.quick and args.runners is None,
        named=args.runners is not None,
        out_dir=args.out,
        timeout=args.timeout or (240.0 if args.quick else 400.0),
        quiet_wait=args.quiet_wait,
        argv=argv,
    )
    return 0
