"""The ``probpipe`` command: ``probpipe backends``, ``probpipe demo``, ``probpipe bench``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with value parsed as JSON when it can be (numbers, null, lists)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def cmd_backends(args: argparse.Namespace) -> int:
    import probpipe as pp

    infos = pp.available_backends()
    if args.json:
        print(json.dumps({name: info.to_dict() for name, info in infos.items()}, indent=2))
        return 0
    rows = [("name", "tag", "installed", "install", "from")]
    for name, info in infos.items():
        source = info.source.split(" (entry point")[0]
        rows.append(
            (
                name,
                info.provenance_tag,
                "yes" if info.installed else "no",
                info.install_hint,
                source,
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from probpipe.demo import main as demo_main

    return demo_main(args.backend, n_replicates=args.replicates, **dict(args.option))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probpipe",
        description="Run probabilistic workflow functions on pluggable execution backends.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "backends",
        help="list the backends probpipe knows about",
        description="List every registered backend: name, provenance tag, "
        "whether it is installed, how to install it, where it "
        "came from.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=cmd_backends)

    p = sub.add_parser(
        "demo",
        help="the bagged-posterior example (Challenger O-rings)",
        description="Fit a bagged posterior of the Challenger O-ring data: "
        "one adaptive-Metropolis fit per bootstrap replicate.",
    )
    p.add_argument("--backend", default="sequential", help="backend name (default sequential)")
    p.add_argument("--replicates", type=int, default=32, help="bootstrap replicates (32)")
    p.add_argument(
        "--option",
        "-o",
        action="append",
        type=_parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="backend option, e.g. -o address=auto (repeatable)",
    )
    p.set_defaults(run=cmd_demo)

    # `probpipe bench ...` goes to the harness before parsing (see main);
    # listed here so `probpipe --help` shows it.
    sub.add_parser(
        "bench", help="run the benchmark harness (probpipe bench --help)", add_help=False
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        # Everything after `bench` (--help included) belongs to the harness.
        from probpipe.benchmarks import main as bench_main

        return int(bench_main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
