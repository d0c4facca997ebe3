"""Planning a call: bind the arguments, draw the broadcast inputs, lay out the rows.

The planner turns ``wf(*args, **kwargs)`` into a :class:`CallPlan`: one
:class:`~probpipe._worker.CallSpec` (what every row shares) and one
:class:`~probpipe._worker.RowTask` per row (what is private to it). Nothing is
dispatched here; errors in the arguments surface before any work starts.

Row layout. Sweeps form a row-major cartesian grid of cells (last sweep
fastest); each cell holds ``n`` rows (``n_broadcast_samples``, or 1 without
distributions). Row ``cell * n + i`` gets draw ``i`` of every distribution and
the generator of seed key ``i``: every cell sees the same draws (common random
numbers), so cell ``c`` of a sweep equals the single call with that cell's
values and the same seed.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._distributions import Distribution
from ._options import MAX_ROWS
from ._per_worker import PerWorker, build_here
from ._seeds import fresh_seed, input_rng
from ._suggest import brief, shown
from ._worker import CallSpec, RowTask, _set_slot


class Sweep:
    """An argument whose values are tried one by one: ``f(x=pp.sweep([1, 2, 3]))``."""

    __slots__ = ("values",)
    expanded_by_planner = True  # a per_worker() argument may not be one (see _per_worker)

    def __init__(self, values: Iterable[Any]):
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(
                f"sweep() takes a sequence of values, got {type(values).__name__} {shown(values)}"
            )
        if getattr(values, "ndim", None) == 0:  # a 0-d array claims to be iterable
            raise TypeError(f"sweep() takes a sequence of values, got the scalar {shown(values)}")
        try:
            size = len(values)  # type: ignore[arg-type]
        except Exception:
            size = None  # an iterator: counted as it is read
        if size is not None and size > MAX_ROWS:
            raise ValueError(f"sweep() got {size:,} values; a call runs at most {MAX_ROWS:,} rows")
        try:
            self.values = list(values)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"sweep() could not read the values of {shown(values)}: "
                f"{type(exc).__name__}: {brief(str(exc), 120)}"
            ) from exc
        for value in self.values:
            if isinstance(value, (Distribution, Sweep)):
                raise TypeError(
                    "sweep() values must be concrete; sweeping over distributions or "
                    "nested sweeps is not supported (make one call per distribution)"
                )
            if isinstance(value, PerWorker):
                raise TypeError(
                    f"sweep() values must be concrete, got {value!r}: a per-worker value is "
                    "built once per worker and shared by every row, so it cannot vary from "
                    "cell to cell. Make one call per factory argument instead."
                )

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        values = self.values
        parts = [shown(v, 40) for v in (values if len(values) <= 6 else values[:3])]
        if len(values) > 6:
            parts += ["...", shown(values[-1], 40)]
        return f"sweep([{', '.join(parts)}])"


def sweep(values: Iterable[Any]) -> Sweep:
    """Mark an argument as swept: the call runs once per value (cartesian over several)."""
    return Sweep(values)


@dataclass
class CallPlan:
    """Everything the engine needs to run a broadcast or sweep call."""

    spec: CallSpec
    tasks: list[RowTask]
    n_per_cell: int
    cell_coords: list[dict[str, Any]]
    sweep_shape: tuple[int, ...]
    broadcast_args: list[str]
    sweep_args: list[str]
    per_worker_args: list[tuple[str, PerWorker]]  # (argument name, marker)
    inputs: dict[str, Any]  # every bound argument, for provenance parents
    seed: int
    seed_given: bool
    checkpoint: Any = None  # a probpipe._checkpoint.Checkpoint, when asked for

    @property
    def seed_source(self) -> str:
        return "given" if self.seed_given else "fresh entropy"

    @property
    def n_rows(self) -> int:
        return len(self.tasks)

    @property
    def is_sweep(self) -> bool:
        return bool(self.sweep_args)

    @property
    def has_distributions(self) -> bool:
        return bool(self.broadcast_args)


def _slot_name(slot: tuple) -> str:
    return slot[0] if len(slot) == 1 else f"{slot[0]}[{slot[1]!r}]"


def _iter_slots(signature: inspect.Signature, arguments: dict[str, Any]):
    """Yield ``(slot, value)`` for each argument and each item of ``*args``/``**kwargs``."""
    for name, value in arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            for i, item in enumerate(value):
                yield (name, i), item
        elif kind is inspect.Parameter.VAR_KEYWORD:
            for key, item in value.items():
                yield (name, key), item
        else:
            yield (name,), value


def bind(
    signature: inspect.Signature,
    func_name: str,
    args: tuple,
    kwargs: dict,
    rng_param: str | None,
) -> dict[str, Any]:
    """Bind call arguments to the wrapped function's parameters: only those given.

    Defaults are not filled in: the function applies its own, so a callable
    that tells "given" from "defaulted" apart (a NumPy ufunc refuses both
    ``dtype`` and ``signature``, even as None) behaves as when called directly.
    """
    if rng_param is not None and rng_param in kwargs:
        raise TypeError(
            f"{func_name}() receives {rng_param!r} from probpipe (a generator derived "
            "from the seed and the row); do not pass it"
        )
    n_positional = sum(
        1
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
    names = list(signature.parameters)
    if rng_param is not None and rng_param in names[: min(len(args), n_positional)]:
        raise TypeError(f"{func_name}() receives {rng_param!r} from probpipe; do not pass it")
    if rng_param is not None:
        kwargs = {**kwargs, rng_param: None}  # placeholder; filled per row
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{func_name}(): {exc}") from None
    return dict(bound.arguments)


def build_per_worker_here(signature: inspect.Signature, arguments: dict[str, Any]) -> None:
    """Replace per-worker markers by their values, for a plain call run in this process."""
    for slot, value in list(_iter_slots(signature, arguments)):
        if isinstance(value, PerWorker):
            _set_slot(arguments, slot, build_here(value, _slot_name(slot)))


def _check_size(n: int, sweep_slots: list[tuple[tuple, Sweep]]) -> None:
    """Refuse a call of more than MAX_ROWS rows before anything is drawn or laid out."""
    n_rows = n * math.prod(len(s) for _, s in sweep_slots)
    if n_rows > MAX_ROWS:
        sizes = ", ".join(f"sweep {_slot_name(slot)!r}: {len(s):,}" for slot, s in sweep_slots)
        raise ValueError(
            f"this call would run {n_rows:,} rows (n_broadcast_samples={n:,}, {sizes}); "
            f"a call runs at most {MAX_ROWS:,} rows. Split it into several calls."
        )


def plan_call(
    func: Any,
    signature: inspect.Signature,
    arguments: dict[str, Any],
    *,
    n_samples: int,
    seed: int | None,
    rng_param: str | None,
) -> CallPlan | None:
    """Lay out the rows of a call, or None when nothing is broadcast or swept."""
    dist_slots: list[tuple[tuple, Distribution]] = []
    sweep_slots: list[tuple[tuple, Sweep]] = []
    per_worker_slots: list[tuple[tuple, PerWorker]] = []
    for slot, value in _iter_slots(signature, arguments):
        if slot == (rng_param,):
            continue
        if isinstance(value, PerWorker):
            per_worker_slots.append((slot, value))
        elif isinstance(value, Sweep):
            if len(value) == 0:
                raise ValueError(
                    f"sweep for argument {_slot_name(slot)!r} is empty; give at least one value"
                )
            sweep_slots.append((slot, value))
        elif isinstance(value, Distribution):
            dist_slots.append((slot, value))
    if not dist_slots and not sweep_slots:
        return None

    n = n_samples if dist_slots else 1
    _check_size(n, sweep_slots)

    seed_given = seed is not None
    if seed is None:
        seed = fresh_seed()

    # Draw each distinct root once: the same object twice, or two co-sampled
    # views of one bootstrap, share a draw; equal but distinct objects do not.
    roots: list[Distribution] = []
    root_index: dict[int, int] = {}
    spec_dist_slots = []
    for slot, dist in dist_slots:
        root = dist._root()
        if id(root) not in root_index:
            root_index[id(root)] = len(roots)
            roots.append(root)
        spec_dist_slots.append((slot, root_index[id(root)], dist._materializer()))
    shared, tokens = [], []
    for k, root in enumerate(roots):
        try:
            root_shared, root_tokens = root._draw(n, input_rng(seed, k))
        except MemoryError:
            raise ValueError(
                f"drawing n_broadcast_samples={n:,} rows of {shown(root)} needs more memory "
                "than this machine has; lower n_broadcast_samples"
            ) from None
        shared.append(root_shared)
        tokens.append(root_tokens)

    axes = [s.values for _, s in sweep_slots]
    cells = list(itertools.product(*axes)) if axes else [()]
    # Distribution, sweep and per-worker slots are emptied: the worker fills
    # them per row, and the distribution objects themselves must not travel
    # with the call (per-worker markers travel once, in ``per_worker``).
    constants = {name: value for name, value in arguments.items() if name != rng_param}
    for slot, _ in [*dist_slots, *sweep_slots, *per_worker_slots]:
        _set_slot(constants, slot, None)
    row_tokens = [tuple(t[i] for t in tokens) for i in range(n)]
    tasks = [
        RowTask(row=c * n + i, seed_key=i, cell=c, tokens=row_tokens[i])
        for c in range(len(cells))
        for i in range(n)
    ]
    spec = CallSpec(
        func=func,
        signature=signature,
        arguments=constants,
        dist_slots=tuple(spec_dist_slots),
        root_shared=tuple(shared),
        sweep_slots=tuple(slot for slot, _ in sweep_slots),
        cells=tuple(tuple(cell) for cell in cells),
        seed=seed,
        rng_param=rng_param,
        per_worker=tuple((slot, _slot_name(slot), marker) for slot, marker in per_worker_slots),
    )
    sweep_names = [_slot_name(slot) for slot, _ in sweep_slots]
    return CallPlan(
        spec=spec,
        tasks=tasks,
        n_per_cell=n,
        cell_coords=[dict(zip(sweep_names, cell)) for cell in cells],
        sweep_shape=tuple(len(a) for a in axes),
        broadcast_args=[_slot_name(slot) for slot, _ in dist_slots],
        sweep_args=sweep_names,
        per_worker_args=[(_slot_name(slot), marker) for slot, marker in per_worker_slots],
        inputs={
            _slot_name(slot): value
            for slot, value in _iter_slots(signature, arguments)
            if slot != (rng_param,)
        },
        seed=seed,
        seed_given=seed_given,
    )
