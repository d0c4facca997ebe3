"""How a call's rows are cut into engine tasks. Chunking never changes a row's value.

``chunksize="auto"`` probes one row per worker, then sizes chunks so each
carries well above the backend's per-task overhead, with at least one chunk
per worker (:func:`auto_chunksize`); :func:`even_chunks` then cuts the rest
into chunks whose number is a multiple of the workers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

# Auto chunking: each chunk should carry at least this much work, and at
# least this many multiples of the backend's per-task overhead (joblib's rule
# of thumb: 0.2 to 2 s of work per batch).
MIN_CHUNK_SECONDS = 0.2
OVERHEAD_MULTIPLE = 20


def auto_chunksize(n_rows: int, parallelism: int, row_seconds: float, overhead: float) -> int:
    """Rows per chunk: enough work per task to dwarf the overhead, at least one task per worker.

    Chunks are sized to carry the target amount of work, so the number of
    chunks grows with the work: long calls get many chunks per worker (good
    balance), short ones one per worker. Cutting a short call finer would buy
    no balance, only more per-task overhead (on Prefect, a task run each).
    """
    target = max(MIN_CHUNK_SECONDS, OVERHEAD_MULTIPLE * overhead)
    by_cost = math.ceil(target / max(row_seconds, 1e-7))
    one_per_worker = math.ceil(n_rows / max(parallelism, 1))
    return max(1, min(by_cost, one_per_worker))


def even_chunks(tasks: list[Any], size: int, parallelism: int) -> list[list[Any]]:
    """Split ``tasks`` into chunks of at most ``size``, as equal as possible,
    their number a multiple of ``parallelism`` so the last round keeps every
    worker busy (14 rows, size 2, 2 workers: 8 chunks of 2 or 1, not 7 of 2)."""
    if not tasks:
        return []
    n_chunks = math.ceil(len(tasks) / size)
    n_chunks = min(len(tasks), parallelism * math.ceil(n_chunks / parallelism))
    bounds = np.linspace(0, len(tasks), n_chunks + 1).round().astype(int)
    parts = [tasks[a:b] for a, b in itertools.pairwise(bounds)]
    return sorted(parts, key=len, reverse=True)  # the long ones first


def fixed_chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    """Consecutive chunks of ``size`` (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
