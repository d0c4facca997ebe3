"""What runs on the workers: rebuild each row's arguments and call the function.

This module is imported inside engine worker processes, so it depends on
nothing but NumPy and the standard library.

A call ships as one :class:`CallSpec` (function, constant arguments, the
shared part of each distribution draw, sweep values; sent once per call,
usually as a :class:`SharedRef`) plus :class:`Chunk` objects of small per-row
:class:`RowTask` items. :func:`run_chunk` runs a chunk's rows one by one and
catches each row's exception, so one failing row never loses its neighbours:
the engine only ever sees a chunk fail when the worker itself is lost.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pickle
import signal
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._errors import RemoteRowError, RowTimeoutError
from ._per_worker import ChunkValues
from ._progress import chunk_ended, row_finished
from ._seeds import row_rng

# ---------------------------------------------------------------------------
# Shared values
# ---------------------------------------------------------------------------


class SharedRef:
    """A handle to a value that travels to each worker once, not once per row.

    Backends return subclasses from ``share()``; ``get()`` runs on the worker
    and fetches the value (``ray.get``, a Dask scatter, or the object itself
    in-process). ``key`` identifies the value for the worker-side cache.
    """

    key: str

    def get(self) -> Any:
        raise NotImplementedError


class LocalRef(SharedRef):
    """The value itself, for backends that run rows in this process."""

    def __init__(self, value: Any, key: str):
        self.value = value
        self.key = key

    def get(self) -> Any:
        return self.value


_CACHE_LIMIT = 16
_resolved: OrderedDict[str, Any] = OrderedDict()
_resolved_lock = threading.Lock()


def resolve(value: Any, delivered: dict[str, Any] | None = None) -> Any:
    """``value``, or what it refers to if it is a :class:`SharedRef` (cached per process).

    ``delivered`` holds values the engine already brought to this worker as
    task dependencies (Dask), by ``SharedRef.key``.
    """
    if not isinstance(value, SharedRef):
        return value
    if isinstance(value, LocalRef):
        return value.value
    if delivered and value.key in delivered:
        return delivered[value.key]
    with _resolved_lock:
        if value.key in _resolved:
            _resolved.move_to_end(value.key)
            return _resolved[value.key]
    fetched = value.get()
    with _resolved_lock:
        _resolved[value.key] = fetched
        while len(_resolved) > _CACHE_LIMIT:
            _resolved.popitem(last=False)
    return fetched


# ---------------------------------------------------------------------------
# What is shipped
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowTask:
    """One row: its position in the result, its seed key, sweep cell and draws."""

    row: int
    seed_key: int
    cell: int
    tokens: tuple[Any, ...]


@dataclass(frozen=True)
class Chunk:
    """A batch of rows run by one engine task.

    A chunk pickles its rows as columns (:class:`PackedRows`): a chunk of
    thousands of rows then travels as a few arrays, and whoever unpickles it
    without reading it (Dask's scheduler, in the caller's process) holds a
    few objects instead of several per row.
    """

    rows: Sequence[RowTask]
    attempt: int = 0
    alone: bool = False  # re-run with nothing else in flight (a suspect in a worker death)

    @property
    def label(self) -> str:
        first, last = self.rows[0].row, self.rows[-1].row
        return f"row {first}" if first == last else f"rows {first}-{last}"

    def __reduce__(self):
        rows = self.rows if isinstance(self.rows, PackedRows) else PackedRows.pack(self.rows)
        return (Chunk, (rows, self.attempt, self.alone))


class PackedRows(Sequence):
    """Rows stored column by column; a :class:`RowTask` is rebuilt when read.

    ``index`` is a row's position in the chunk; reading a slice gives a tuple.

    A token column of NumPy scalars of one type becomes an array (read back
    as the same NumPy scalars); of Python ints or floats, an array read back
    as Python numbers; anything else stays a list. Values come back exactly.
    """

    __slots__ = ("_cells", "_rows", "_seed_keys", "_tokens")

    def __init__(self, rows, seed_keys, cells, tokens):
        self._rows, self._seed_keys, self._cells, self._tokens = rows, seed_keys, cells, tokens

    @classmethod
    def pack(cls, tasks: Sequence[RowTask]) -> PackedRows:
        width = len(tasks[0].tokens) if tasks else 0
        if any(len(t.tokens) != width for t in tasks):
            columns = [("whole", [t.tokens for t in tasks])]
        else:
            columns = [_pack_column([t.tokens[j] for t in tasks]) for j in range(width)]
        return cls(
            _index_array([t.row for t in tasks]),
            _index_array([t.seed_key for t in tasks]),
            _index_array([t.cell for t in tasks]),
            tuple(columns),
        )

    def __reduce__(self):
        return (PackedRows, (self._rows, self._seed_keys, self._cells, self._tokens))

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        if self._tokens and self._tokens[0][0] == "whole":  # rows of unequal width
            tokens = self._tokens[0][1][index]
        else:
            tokens = tuple(_read_column(column, index) for column in self._tokens)
        return RowTask(
            int(self._rows[index]), int(self._seed_keys[index]), int(self._cells[index]), tokens
        )


def _index_array(values: list[int]) -> np.ndarray:
    """Non-negative ints in the narrowest unsigned type that holds them."""
    return np.array(values, dtype=np.min_scalar_type(max(values, default=0)))


def _pack_column(values: list[Any]) -> tuple[str, Any]:
    kind = type(values[0])
    if all(type(v) is kind for v in values):
        if issubclass(kind, np.generic) and kind is not np.object_:
            return ("np", np.array(values, dtype=values[0].dtype))
        if kind is int or kind is float:
            try:
                return ("py", np.array(values, dtype=np.int64 if kind is int else np.float64))
            except OverflowError:  # ints beyond 64 bits stay Python ints
                pass
    return ("obj", list(values))


def _read_column(column: tuple[str, Any], index: int) -> Any:
    kind, data = column
    return data[index].item() if kind == "py" else data[index]


@dataclass
class CallSpec:
    """Everything a row needs that is common to the whole call.

    ``arguments`` maps each parameter (or ``(parameter, index)`` slot inside
    ``*args``/``**kwargs``) to its constant value; distribution slots are
    filled per row from ``roots`` and ``dist_slots``; swept slots from
    ``cells``; per-worker slots (``per_worker``: slot, argument name,
    :class:`~probpipe.PerWorker`) from values built on the worker for
    backend session ``session_id``. Values may be :class:`SharedRef`.
    """

    func: Any
    signature: inspect.Signature
    arguments: dict[str, Any]
    dist_slots: tuple[tuple[tuple, int, Any], ...]  # (slot, root index, materializer)
    root_shared: tuple[Any, ...]
    sweep_slots: tuple[tuple, ...]
    cells: tuple[tuple[Any, ...], ...]
    seed: int
    rng_param: str | None
    call_id: str = ""
    # Exceptions cross a process boundary: replace unpicklable ones by a
    # stand-in. In-process backends keep the original object.
    portable_errors: bool = True
    timeout: float | None = None
    beacon: tuple[str, int] | None = None  # where to report each finished row
    per_worker: tuple[tuple[tuple, str, Any], ...] = ()
    session_id: str = ""
    resolved: bool = field(default=False, repr=False)

    def resolve_shared(self, delivered: dict[str, Any] | None = None) -> CallSpec:
        """Fetch every SharedRef this spec holds (once per worker process)."""
        if self.resolved:
            return self
        self.arguments = {k: resolve(v, delivered) for k, v in self.arguments.items()}
        self.root_shared = tuple(resolve(v, delivered) for v in self.root_shared)
        self.cells = tuple(tuple(resolve(v, delivered) for v in cell) for cell in self.cells)
        self.resolved = True
        return self

    def build_call(
        self, task: RowTask, per_worker_values: Sequence[Any] = ()
    ) -> tuple[tuple, dict]:
        """The positional and keyword arguments of row ``task``.

        ``per_worker_values``: the built values of ``self.per_worker``, in order.
        """
        arguments = dict(self.arguments)
        for (slot, _name, _marker), value in zip(self.per_worker, per_worker_values):
            _set_slot(arguments, slot, value)
        for slot, root_index, materializer in self.dist_slots:
            value = materializer(self.root_shared[root_index], task.tokens[root_index])
            _set_slot(arguments, slot, value)
        for slot, value in zip(self.sweep_slots, self.cells[task.cell]):
            _set_slot(arguments, slot, value)
        if self.rng_param is not None:
            arguments[self.rng_param] = row_rng(self.seed, task.seed_key)
        bound = inspect.BoundArguments(self.signature, OrderedDict(arguments))
        return bound.args, bound.kwargs


def _set_slot(arguments: dict[str, Any], slot: tuple, value: Any) -> None:
    """Set a parameter (``(name,)``) or an item of ``*args``/``**kwargs`` (``(name, key)``)."""
    if len(slot) == 1:
        arguments[slot[0]] = value
        return
    name, key = slot
    container = arguments[name]
    if isinstance(container, tuple):
        items = list(container)
        items[key] = value
        arguments[name] = tuple(items)
    else:
        arguments[name] = {**container, key: value}


# ---------------------------------------------------------------------------
# Running a chunk
# ---------------------------------------------------------------------------


@dataclass
class RowFailure:
    """A row's exception, with the worker-side traceback as text."""

    exception: BaseException
    traceback: str
    host: str = ""


@dataclass
class ChunkResult:
    """What a chunk sends back: per row, a value or a :class:`RowFailure`."""

    rows: list[int]
    values: list[Any]  # None where the row failed
    failures: dict[int, RowFailure]
    seconds: list[float]
    worker: str = ""
    per_worker_builds: dict[str, int] = field(default_factory=dict)  # by fingerprint


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a stand-in with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RemoteRowError(f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc))


@contextlib.contextmanager
def row_deadline(seconds: float | None):
    """Raise RowTimeoutError in this thread if the block runs longer than ``seconds``.

    Only on a process's main thread (Ray workers, sequential), where a
    SIGALRM timer interrupts the row even inside ``time.sleep`` or a blocking
    read. Elsewhere a row cannot be stopped safely (an exception injected
    into a thread can land anywhere, even in the engine's own code), so the
    core refuses ``timeout=`` on backends without ``supports_timeout``; a
    backend that claims it but runs a row off the main thread gets an error.
    """
    if seconds is None:
        yield
        return
    if threading.current_thread() is threading.main_thread():

        def on_alarm(signum, frame):
            raise RowTimeoutError()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return
    raise RuntimeError(
        "timeout= needs the row to run on a process's main thread, and this worker runs "
        f"it on thread {threading.current_thread().name!r}; the backend should not claim "
        "supports_timeout"
    )


def pickle_error(value: Any) -> Exception | None:
    """Why ``value`` cannot be pickled (as the engines will), or None if it can.

    Out-of-band buffers are not copied, so large arrays cost nothing here.
    """
    import cloudpickle

    try:
        cloudpickle.dumps(value, protocol=5, buffer_callback=lambda buffer: None)
    except Exception as exc:
        return exc
    return None


def _check_sendable(value: Any, row: int) -> None:
    """Fail this row (not its whole chunk) if its value cannot travel back."""
    exc = pickle_error(value)
    if exc is not None:
        raise TypeError(
            f"row {row} returned a {type(value).__name__} that cannot be pickled, so it "
            f"cannot be sent back from the worker: {type(exc).__name__}: {exc}"
        ) from exc


def _worker_name() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


class WorkItem:
    """What a backend's ``map`` receives per task: the call's spec (handle) and a chunk.

    ``refs`` lists every SharedRef the call uses, for engines that must be told
    a task's data dependencies (Dask). A plain class on purpose: engines walk
    dataclasses, tuples and lists in task arguments looking for futures; this
    stays opaque to them.
    """

    __slots__ = ("chunk", "refs", "spec")

    def __init__(self, spec: Any, chunk: Chunk, refs: tuple[SharedRef, ...] = ()):
        self.spec = spec
        self.chunk = chunk
        self.refs = refs

    def __reduce__(self):
        return (WorkItem, (self.spec, self.chunk, self.refs))

    @property
    def label(self) -> str:
        return self.chunk.label


def run_item(item: WorkItem, delivered: dict[str, Any] | None = None) -> ChunkResult:
    """The function every backend maps over its items.

    ``delivered``: values of ``item.refs`` the engine already resolved, by key.
    """
    return run_chunk(item.spec, item.chunk, delivered)


def run_chunk(
    spec: CallSpec | SharedRef, chunk: Chunk, delivered: dict[str, Any] | None = None
) -> ChunkResult:
    """Run every row of ``chunk``, catching each row's exception."""
    spec = resolve(spec, delivered).resolve_shared(delivered)
    func = spec.func
    result = ChunkResult(rows=[], values=[], failures={}, seconds=[], worker=_worker_name())
    per_worker = ChunkValues(
        spec.per_worker, spec.session_id, spec.call_id, chunk.attempt, result.worker
    )
    for task in chunk.rows:
        start = time.perf_counter()
        try:
            per_worker_values = per_worker.get() if spec.per_worker else ()
            # A one-off build is not the row's time (auto chunking sizes by it).
            start = time.perf_counter()
            args, kwargs = spec.build_call(task, per_worker_values)
            with row_deadline(spec.timeout):
                value = func(*args, **kwargs)
            if spec.portable_errors:
                _check_sendable(value, task.row)
        except Exception as exc:
            value = None
            if isinstance(exc, RowTimeoutError):
                exc = RowTimeoutError(
                    f"row {task.row} ran longer than timeout={spec.timeout:g} s and was stopped"
                ).with_traceback(exc.__traceback__)
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            kept = _portable(exc) if spec.portable_errors else exc
            result.failures[task.row] = RowFailure(kept, tb, result.worker)
        result.rows.append(task.row)
        result.values.append(value)
        result.seconds.append(time.perf_counter() - start)
        row_finished(spec.beacon, spec.call_id, chunk, task.row in result.failures)
    chunk_ended(spec.beacon)
    result.per_worker_builds = per_worker.builds
    return result


def import_modules(names: Sequence[str]) -> None:
    """Import ``names`` on a worker ahead of its first task (``engines.*.preimport``)."""
    for name in names:
        importlib.import_module(name)
