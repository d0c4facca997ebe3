"""The ``probpipe`` command: ``probpipe backends``, ``probpipe demo``, ``probpipe bench``.

Every mistake on the command line (an unknown flag, a bad value, an unknown
backend or backend option) is one line on stderr, naming the flag, and exit
status 2, as argparse does for its own errors.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from typing import Any, NoReturn

from ._argparse import OneLineParser

# The engines the shipped backends run on, by distribution name. Versions are
# read from the installed metadata: nothing here is imported.
ENGINE_DISTRIBUTIONS = ("prefect", "prefect-dask", "dask", "distributed", "prefect-ray", "ray")


class _VersionAction(argparse.Action):
    """``--version``: probpipe's version and each installed engine's, computed when asked."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any):
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> NoReturn:
        print(version_report())
        parser.exit(0)


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_report() -> str:
    """``probpipe X`` then one line per installed engine and backend plugin."""
    from probpipe import __version__

    lines = [f"probpipe {_installed_version('probpipe') or __version__}"]
    missing = []
    for name in ENGINE_DISTRIBUTIONS:
        version = _installed_version(name)
        if version is None:
            missing.append(name)
        else:
            lines.append(f"  {name} {version}")
    plugins = set()
    for entry_point in importlib.metadata.entry_points(group="probpipe"):
        dist = entry_point.dist
        if dist is not None and dist.name != "probpipe":
            plugins.add((dist.name, dist.version))
    lines += [f"  {name} {version} (backend plugin)" for name, version in sorted(plugins)]
    if missing:
        lines.append(f"  not installed: {', '.join(missing)}")
    return "\n".join(lines)


def _parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with value parsed as JSON when it can be (numbers, null, lists)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    if not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r} (no key)")
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        value = raw
    return key, value


def _replicates(text: str) -> int:
    from probpipe._options import MAX_ROWS, check_positive_int

    try:
        return check_positive_int("replicates", int(text), most=MAX_ROWS)
    except ValueError as exc:
        if "invalid literal" in str(exc):
            raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    from probpipe._errors import BackendConnectionError, BackendUnavailableError
    from probpipe._registry import registry
    from probpipe._selection import create_backend

    parser: OneLineParser = args.parser
    options = dict(args.option)
    # Check the backend and its options before anything runs, so a typo is
    # reported against the flag it came from.
    try:
        registry.lookup(args.backend)
    except (ValueError, TypeError, BackendUnavailableError) as exc:
        parser.error(f"argument --backend: {exc}")
    try:
        create_backend(args.backend, **options)
    except (ValueError, TypeError) as exc:
        parser.error(f"argument --option/-o: {exc}")

    from probpipe.demo import main as demo_main

    try:
        return demo_main(args.backend, n_replicates=args.replicates, **options)
    except BackendConnectionError as exc:  # e.g. -o address=... where nothing answers
        parser.error(f"argument --option/-o: {exc}")


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="probpipe",
        description="Run probabilistic workflow functions on pluggable execution backends.",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the version of probpipe and of each installed engine, then exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{backends,demo,bench}")

    p = sub.add_parser(
        "backends",
        help="list the backends probpipe knows about",
        description="List every registered backend: name, provenance tag, "
        "whether it is installed, how to install it, where it "
        "came from.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=cmd_backends, parser=p)

    p = sub.add_parser(
        "demo",
        help="the bagged-posterior example (Challenger O-rings)",
        description="Fit a bagged posterior of the Challenger O-ring data: "
        "one adaptive-Metropolis fit per bootstrap replicate.",
    )
    p.add_argument("--backend", default="sequential", help="backend name (default sequential)")
    p.add_argument("--replicates", type=_replicates, default=32, help="bootstrap replicates (32)")
    p.add_argument(
        "--option",
        "-o",
        action="append",
        type=_parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="backend option, e.g. -o address=auto (repeatable)",
    )
    p.set_defaults(run=cmd_demo, parser=p)

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
    parser = build_parser()
    commands = ("backends", "demo", "bench")
    if argv and not argv[0].startswith("-") and argv[0] not in commands:
        from probpipe._suggest import unknown_name_message

        parser.error(unknown_name_message("command", argv[0], commands))
    args, extras = parser.parse_known_args(argv)
    if extras:  # reported by the subcommand, whose --help lists what it takes
        args.parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
