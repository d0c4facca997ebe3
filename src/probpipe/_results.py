"""Turning rows back into results: empirical distributions, mixtures, items, sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._distributions import Distribution, EmpiricalDistribution, MixtureDistribution

# Every Distribution may carry the provenance of the call that produced it.
Distribution.provenance = None  # type: ignore[attr-defined]


class ItemsResult(Sequence):
    """Broadcast rows that are neither numbers nor distributions, in row order.

    ``.items`` is the list of row values; the object also behaves as that list.
    """

    def __init__(self, items: list[Any], provenance: Any = None):
        self.items = list(items)
        self.provenance = provenance

    def __getitem__(self, index):
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"ItemsResult({len(self.items)} items)"


class SweepResult(Sequence):
    """One entry per sweep cell (row-major, last sweep fastest), plus ``.coords``.

    ``result[i]`` is what the single call with cell ``i``'s values returns;
    ``result.coords[i]`` maps each swept argument to its value in that cell.
    """

    def __init__(
        self,
        cells: list[Any],
        coords: list[dict[str, Any]],
        shape: tuple[int, ...],
        provenance: Any = None,
    ):
        self.cells = list(cells)
        self.coords = list(coords)
        self.shape = tuple(shape)
        self.provenance = provenance

    def __getitem__(self, index):
        return self.cells[index]

    def __len__(self) -> int:
        return len(self.cells)

    def cell(self, **coords: Any) -> Any:
        """The entry whose swept values equal ``coords`` (e.g. ``result.cell(lam=0.1)``)."""
        matches = [
            value
            for value, c in zip(self.cells, self.coords)
            if all(_same(c.get(k), v) for k, v in coords.items())
        ]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} cells match {coords}; coords are {self.coords}")
        return matches[0]

    def __repr__(self) -> str:
        names = list(self.coords[0]) if self.coords else []
        return f"SweepResult({len(self.cells)} cells over {names}, shape={self.shape})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.all(a == b))
    except Exception:
        return a is b


def _is_numeric(arr: np.ndarray) -> bool:
    return arr.dtype != object and (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool)


def _numeric_stack(values: list[Any]) -> np.ndarray | None:
    """Stack rows into one numeric array, or None if they are not all numeric alike."""
    if values and not isinstance(values[0], (str, bytes)):
        # One conversion, as np.stack would give: rows of one numeric shape.
        # (Row by row, a million scalars became a million 0-d arrays first.)
        try:
            stacked = np.asarray(values)
        except Exception:
            stacked = None
        if stacked is not None and len(stacked) == len(values) and _is_numeric(stacked):
            return stacked
    shape = None
    arrays = []
    for value in values:
        if isinstance(value, (str, bytes, dict, Distribution)) or value is None:
            return None
        try:
            arr = np.asarray(value)
        except Exception:
            return None
        if not _is_numeric(arr):
            return None
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            return None
        arrays.append(arr)
    return np.stack(arrays) if arrays else None


def assemble(values: list[Any], provenance: Any) -> Any:
    """Rows to a result: EmpiricalDistribution, MixtureDistribution or ItemsResult."""
    if values and all(isinstance(v, Distribution) for v in values):
        try:
            result = MixtureDistribution(values)
        except (ValueError, TypeError):
            result = ItemsResult(values)
    else:
        stacked = _numeric_stack(values)
        result = EmpiricalDistribution(stacked) if stacked is not None else ItemsResult(values)
    result.provenance = provenance
    return result
