"""The progress bar: shown in a real terminal, per row even in chunks, absent when piped.

Workers report finished rows in batches (a few a second), not one message per row.
"""

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
import time

import pytest

import probpipe as pp
from probpipe._progress import datagrams, decode_rows, encode_rows
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


def test_row_batches_survive_the_wire_format():
    rows = [0, 1, 2, 3, 7, 9, 10, 11, 40]
    assert encode_rows(rows) == "0-3,7,9-11,40"
    assert decode_rows(encode_rows(rows)) == rows
    assert decode_rows(encode_rows([])) == []
    # Scattered rows (retries) that do not fit one datagram are split, none lost.
    scattered = list(range(0, 60_000, 3))
    sent = [data.decode().split() for data in datagrams("c1", 2, scattered, [3, 59_997])]
    assert len(sent) > 1 and all(len(" ".join(d)) <= 8192 for d in sent)
    assert {(d[0], d[1]) for d in sent} == {("c1", "2")}
    assert [r for d in sent for r in decode_rows(d[2])] == scattered
    assert [r for d in sent for r in decode_rows(d[3])] == [3, 59_997]


class RowsSeen:
    def __init__(self):
        self.batches = []

    @pp.hookimpl
    def probpipe_rows_finished(self, call, rows, failed):
        self.batches.append((list(rows), list(failed)))


def slow_row(x):
    time.sleep(0.02)
    if x == 45:
        raise ValueError("row 45 fails")
    return x


def test_rows_arrive_in_batches_inside_chunks_and_each_once():
    seen = RowsSeen()
    pp.register_plugin(seen)
    try:
        wf = pp.WorkflowFunction(
            slow_row, chunksize=20, progress=True, on_error="collect", backend="sequential"
        )
        wf(x=pp.sweep(range(60)))
    finally:
        pp.unregister_plugin(seen)
    rows = [row for batch, _ in seen.batches for row in batch]
    assert sorted(rows) == list(range(60))  # every row once
    assert [f for _, failed in seen.batches for f in failed] == [45]
    # 1.2 s of rows: a few beacon batches plus the 3 chunks' returns, not 60 reports.
    assert len(seen.batches) < 30
    inside = [b for b, _ in seen.batches if len(b) > 1 and len(b) % 20]
    assert inside, f"no batch inside a chunk: {seen.batches}"


def flaky_row(x, marker):
    if x == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return x


def test_a_retried_row_counts_once_on_the_bar(tmp_path, capfd):
    wf = pp.WorkflowFunction(flaky_row, progress=True, retries=1, backend="sequential")
    wf(x=pp.sweep(range(10)), marker=str(tmp_path / "failed-once"))
    bar = capfd.readouterr().err
    assert re.findall(r"(\d+)/10", bar)[-1] == "10"
    assert "11/10" not in bar and "failed=0" in bar  # the retry succeeded
