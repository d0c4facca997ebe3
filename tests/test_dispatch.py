"""The dispatch loop against backends whose tasks fail as a whole (in-process, scripted).

Real engines lose tasks for reasons a row cannot catch: a worker dies, the
workers cannot import the function, a result cannot be sent back. These
backends fail chosen tasks on purpose, so every path of the loop is checked
with exact counts.
"""

from __future__ import annotations

import pytest

import probpipe as pp


class TaskFailed(RuntimeError):
    pass


class Lost(RuntimeError):
    pass


class ScriptedBackend(pp.ExecutionBackend):
    """Runs items here; ``fail(rows)`` decides which tasks fail as a whole."""

    name = "test-scripted"
    provenance_tag = "test"
    ships_to_processes = False

    def __init__(self, fail, lost=False, parallelism=2):
        super().__init__()
        self.fail = fail
        self.lost = lost
        self._parallelism = parallelism
        self.submitted: list[list[int]] = []

    def map(self, fn, items):
        return [(fn, item) for item in items]

    def gather(self, handles):
        out = []
        for fn, item in handles:
            rows = [t.row for t in item.chunk.rows]
            self.submitted.append(rows)
            if self.fail(rows, item.chunk):
                raise (Lost if self.lost else TaskFailed)(f"task with rows {rows} failed")
            out.append(fn(item))
        return out

    def parallelism(self):
        return self._parallelism

    def is_worker_lost(self, exc):
        return isinstance(exc, Lost)


def values(x, rng):
    return float(x) + rng.normal()


def call(backend, n=12, **options):
    wf = pp.WorkflowFunction(values, backend=backend, seed=4, on_error="collect", **options)
    return wf(x=pp.sweep(range(n)))


def expected(n=12):
    return list(pp.WorkflowFunction(values, seed=4)(x=pp.sweep(range(n))))


def test_failed_probes_do_not_lose_the_other_rows():
    backend = ScriptedBackend(lambda rows, chunk: rows in ([0], [1]))  # both probes fail
    got = call(backend, chunksize="auto")
    assert got[0] is None and got[1] is None
    assert list(got)[2:] == expected()[2:]
    assert [f["row"] for f in got.provenance.metadata["failures"]] == [0, 1]


def test_a_whole_task_failure_fails_its_rows_without_splitting():
    backend = ScriptedBackend(lambda rows, chunk: 4 in rows)
    got = call(backend, chunksize=3)
    assert [f["row"] for f in got.provenance.metadata["failures"]] == [3, 4, 5]
    assert all(f["type"].endswith("TaskFailed") for f in got.provenance.metadata["failures"])
    assert len(backend.submitted) == 4  # no re-runs
    assert [got[i] for i in (0, 1, 2, 6, 7)] == [expected()[i] for i in (0, 1, 2, 6, 7)]


def test_a_whole_task_failure_is_retried_like_a_row():
    seen = []

    def fail_once(rows, chunk):
        seen.append((tuple(rows), chunk.attempt))
        return 4 in rows and chunk.attempt == 0

    got = call(ScriptedBackend(fail_once), chunksize=3, retries=1)
    assert list(got) == expected()
    assert ((3, 4, 5), 1) in seen


def test_a_lost_worker_is_isolated_by_splitting_then_blamed_alone():
    backend = ScriptedBackend(lambda rows, chunk: 5 in rows, lost=True)
    got = call(backend, chunksize=4)
    [failure] = got.provenance.metadata["failures"]
    assert failure["row"] == 5 and failure["type"].endswith("WorkerLostError")
    assert "row 5 of values()" in failure["message"] and "'test-scripted'" in failure["message"]
    assert [got[i] for i in range(12) if i != 5] == [e for i, e in enumerate(expected()) if i != 5]
    # [4..7] lost -> [4,5] and [6,7] -> [4] ok, [5] a suspect -> [5] alone, lost again
    assert backend.submitted.count([5]) == 2
    assert backend.submitted[-1] == [5]


def test_a_row_lost_once_with_its_neighbour_is_not_blamed():
    dead = set()

    def lost_once(rows, chunk):  # the worker of row 7 dies once, taking row 7's task
        if rows == [7] and 7 not in dead:
            dead.add(7)
            return True
        return False

    got = call(ScriptedBackend(lost_once, lost=True), chunksize=1)
    assert list(got) == expected()
    assert got.provenance.metadata["failures"] == []


@pytest.mark.parametrize("chunksize", [1, 5, "auto"])
def test_fail_fast_still_raises_the_lowest_row(chunksize):
    backend = ScriptedBackend(lambda rows, chunk: False)

    def bad(x):
        if x in (3, 9):
            raise ValueError(f"bad {x}")
        return x

    wf = pp.WorkflowFunction(bad, backend=backend, chunksize=chunksize)
    with pytest.raises(ValueError, match="bad 3"):
        wf(x=pp.sweep(range(12)))


# -- what a chunk pickles to ---------------------------------------------------


def test_a_pickled_chunk_gives_back_every_row_exactly_and_travels_as_columns():
    import pickle

    import numpy as np

    from probpipe._worker import Chunk, PackedRows, RowTask

    rows = tuple(
        RowTask(
            row=10 + i,
            seed_key=i,
            cell=i // 3,
            tokens=(np.float64(i / 3), i, 0.5 * i, np.arange(2) + i, 2**70 + i, np.int32(i)),
        )
        for i in range(9)
    )
    back = pickle.loads(pickle.dumps(Chunk(rows, attempt=2, alone=True)))
    assert isinstance(back.rows, PackedRows)
    assert (back.attempt, back.alone, back.label) == (2, True, "rows 10-18")
    assert len(back.rows) == 9
    for sent, got in zip(rows, back.rows, strict=True):
        assert (got.row, got.seed_key, got.cell) == (sent.row, sent.seed_key, sent.cell)
        for a, b in zip(sent.tokens, got.tokens, strict=True):
            assert type(a) is type(b)
            np.testing.assert_array_equal(a, b)
    assert [t.row for t in back.rows[2:4]] == [12, 13]

    # Rows whose draws differ in number are kept whole.
    uneven = pickle.loads(pickle.dumps(Chunk((RowTask(0, 0, 0, (1,)), RowTask(1, 1, 0, (1, 2))))))
    assert [t.tokens for t in uneven.rows] == [(1,), (1, 2)]

    # Thousands of rows are a handful of objects once unpickled, not several per row.
    many = Chunk(tuple(RowTask(i, i, 0, (float(i),)) for i in range(5000)))
    assert len(pickle.dumps(many)) < 0.6 * len(pickle.dumps(many.rows))


def other_values(x, rng):
    return values(x, rng)


def test_a_function_that_ran_before_is_chunked_at_once_without_a_probe_round():
    backend = ScriptedBackend(lambda rows, chunk: False)
    first = call(backend)
    assert backend.submitted[:2] == [[0], [1]]  # unknown row time: one probe row per worker
    backend.submitted.clear()
    again = call(backend)
    # Its trivial rows are known now: one chunk per worker, straight away.
    assert backend.submitted == [list(range(6)), list(range(6, 12))]
    assert list(again) == list(first) == expected()
    backend.submitted.clear()
    other = pp.WorkflowFunction(other_values, backend=backend, seed=4)(x=pp.sweep(range(12)))
    assert backend.submitted[:2] == [[0], [1]]  # another function is probed again
    assert list(other) == expected()
