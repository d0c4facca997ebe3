"""``sequential``: a plain loop in this process. The reference every backend must match."""

from __future__ import annotations

import threading
from typing import Any

from .._backend import ExecutionBackend


class _Deferred:
    """A handle that runs its item when gathered, so rows run one at a time, in order."""

    __slots__ = ("fn", "item")

    def __init__(self, fn: Any, item: Any):
        self.fn = fn
        self.item = item


class SequentialBackend(ExecutionBackend):
    """Runs every row here, one after another. Nothing is pickled or started."""

    name = "sequential"
    provenance_tag = "off"
    description = "A plain loop in this process (the default)."
    install_hint = "included with probpipe"
    option_defaults = {}

    ships_to_processes = False
    default_chunksize = 1
    task_overhead = 1e-6

    @property
    def supports_timeout(self) -> bool:
        """Rows run on the calling thread: a timeout can stop them only on the main one."""
        return threading.current_thread() is threading.main_thread()

    def map(self, fn, items):
        return [_Deferred(fn, item) for item in items]

    def gather(self, handles):
        return [handle.fn(handle.item) for handle in handles]

    def describe(self):
        return {}
