"""Soak test: many consecutive calls on one backend must not leak.

For each backend, a fresh interpreter opens the backend and makes ``--calls``
calls (16 rows each, with a 4 MB shared argument so the object store and
scatter paths are exercised). After every call it records the number of
processes it has started, their open file descriptors, and resident memory
(the driver's and the whole tree's). The report compares the state after the
first call (engines warm) with the state after the last one.

    python benchmarks/soak.py                       # prefect-ray, prefect-dask, ray
    python benchmarks/soak.py --backends ray --calls 50

Pass/fail rules (printed with the figures): no new processes, no new open
files (a slack of 8 descriptors for sockets the engines open lazily), and the
driver's resident memory grows by at most 64 MB over the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

FD_SLACK = 8
RSS_BOUND_MB = 64.0

SCRIPT = """
import json, os, sys
import numpy as np, psutil
import probpipe as pp
from probpipe.testing import _rows

def tree():
    me = psutil.Process()
    procs = [p for p in me.children(recursive=True)
             if "resource_tracker" not in " ".join(p.cmdline())]
    return me, procs

def sample():
    me, procs = tree()
    fds = me.num_fds()
    rss = me.memory_info().rss
    for p in procs:
        try:
            fds += p.num_fds()
            rss += p.memory_info().rss
        except psutil.Error:
            pass
    return {"processes": len(procs), "fds": fds,
            "driver_rss_mb": me.memory_info().rss / 2**20, "tree_rss_mb": rss / 2**20}

def main(name, calls):
    data = np.random.default_rng(0).normal(size=(1000, 500))  # 4 MB, shared
    f = pp.WorkflowFunction(_rows.uses_shared, seed=1)
    samples = []
    with pp.use_backend(name):
        for _ in range(calls):
            f(data=data, i=pp.sweep(range(16)))
            samples.append(sample())
    after = tree()[1]
    print(json.dumps({"backend": name, "samples": samples, "left_after_close": len(after)}))

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
"""


def run_backend(name: str, calls: int, home: str) -> dict:
    env = {
        **os.environ,
        "PREFECT_HOME": home,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(textwrap.dedent(SCRIPT))
        script = fh.name
    try:
        proc = subprocess.run(
            [sys.executable, script, name, str(calls)],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
    finally:
        os.unlink(script)
    if proc.returncode != 0:
        return {"backend": name, "error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def verdict(result: dict) -> dict:
    first, last = result["samples"][0], result["samples"][-1]
    growth = {
        "processes": last["processes"] - first["processes"],
        "fds": last["fds"] - first["fds"],
        "driver_rss_mb": last["driver_rss_mb"] - first["driver_rss_mb"],
        "tree_rss_mb": last["tree_rss_mb"] - first["tree_rss_mb"],
    }
    ok = (
        growth["processes"] <= 0
        and growth["fds"] <= FD_SLACK
        and growth["driver_rss_mb"] <= RSS_BOUND_MB
        and result["left_after_close"] == 0
    )
    return {"first": first, "last": last, "growth": growth, "ok": ok}


def report(results: list[dict], calls: int) -> str:
    lines = [
        f"# Soak: {calls} consecutive calls per backend (16 rows, 4 MB shared argument)",
        "",
        f"Bounds: no new processes, open files within +{FD_SLACK}, driver RSS growth "
        f"<= {RSS_BOUND_MB:.0f} MB, nothing left after close. 'first' is after call 1.",
        "",
        "| backend | processes first→last | open fds first→last | driver RSS MB first→last "
        "| tree RSS MB first→last | left after close | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        if "error" in result:
            lines.append(f"| {result['backend']} | error | | | | | {result['error'][-200:]!r} |")
            continue
        v = verdict(result)
        f, last = v["first"], v["last"]
        lines.append(
            f"| {result['backend']} | {f['processes']}→{last['processes']} | "
            f"{f['fds']}→{last['fds']} | {f['driver_rss_mb']:.0f}→{last['driver_rss_mb']:.0f} | "
            f"{f['tree_rss_mb']:.0f}→{last['tree_rss_mb']:.0f} | {result['left_after_close']} | "
            f"{'pass' if v['ok'] else 'MISS'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="prefect-ray,prefect-dask,ray")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    import probpipe as pp

    available = pp.available_backends()
    names = [n for n in args.backends.split(",") if n in available and available[n].installed]
    home = tempfile.mkdtemp(prefix="probpipe-soak-")
    results = []
    for name in names:
        print(f"soak: {name}, {args.calls} calls ...", flush=True)
        results.append(run_backend(name, args.calls, home))
    text = report(results, args.calls)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.md").write_text(text)
    (out / "soak.json").write_text(json.dumps(results, indent=2))
    print(text)
    return 0 if all("error" not in r and verdict(r)["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
