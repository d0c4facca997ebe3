"""The progress bar: shown in a real terminal, per row even in chunks, absent when piped."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap

import pytest

from support import REPO

SCRIPT = """
    import time
    import probpipe as pp

    def slow_step(x, rng):
        time.sleep(0.02)
        return x + rng.normal()

    if __name__ == "__main__":
        wf = pp.WorkflowFunction(slow_step, n_broadcast_samples=60, seed=1, chunksize=20,
                                 {extra})
        with pp.use_backend({backend!r}):
            wf(pp.Normal(0, 1))
        print("finished")
"""


def run_in_terminal(code: str, env: dict | None = None) -> str:
    """Run ``code`` attached to a new pseudo-terminal (100x30); return what it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, **(env or {})},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def counts(screen: str, label: str) -> list[int]:
    return [int(m) for m in re.findall(re.escape(label) + r":\s+\d+%\|[^|]*\|\s*(\d+)/60", screen)]


def test_bar_in_a_terminal_moves_row_by_row_inside_chunks():
    screen = run_in_terminal(SCRIPT.format(backend="sequential", extra=""))
    seen = counts(screen, "slow_step [sequential]")
    assert "finished" in screen
    assert seen and seen[-1] == 60
    assert any(c % 20 for c in seen), f"only whole chunks were reported: {seen}"
    assert "row/s" in screen or "s/row" in screen  # rate (and ETA) are shown


@pytest.mark.dask
def test_bar_follows_rows_on_worker_processes(tmp_path):
    import probpipe as pp
    from probpipe.engines import prefect as prefect_engine
    from probpipe.testing import _rows, shared_backend
    from test_prefect_adapters import call  # noqa: F401  (shares the session's API)

    pp.WorkflowFunction(_rows.identity, backend=shared_backend("prefect"), n_broadcast_samples=1)(
        pp.Normal(0, 1)
    )
    screen = run_in_terminal(
        SCRIPT.format(backend="prefect-dask", extra=""),
        env={"PREFECT_API_URL": prefect_engine.api_url()},
    )
    seen = counts(screen, "slow_step [prefect-dask]")
    assert seen and seen[-1] == 60
    assert any(c % 20 for c in seen), f"only whole chunks were reported: {seen}"


def test_no_bar_when_output_is_piped():
    code = textwrap.dedent(SCRIPT.format(backend="sequential", extra=""))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.stdout.strip() == "finished"
    assert proc.stderr == ""


def test_progress_false_turns_it_off_in_a_terminal():
    screen = run_in_terminal(SCRIPT.format(backend="sequential", extra="progress=False"))
    assert "finished" in screen and "slow_step [" not in screen


def test_progress_true_forces_it_when_piped():
    code = textwrap.dedent(SCRIPT.format(backend="sequential", extra="progress=True"))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert "slow_step [sequential]: 100%" in proc.stderr
