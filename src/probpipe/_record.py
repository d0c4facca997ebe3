"""`Record`: an immutable bundle of named fields (a small dataset, a fit's output)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np


def _frozen(value: Any) -> Any:
    """A read-only view of arrays, so a Record cannot be changed through itself."""
    if isinstance(value, np.ndarray):
        view = value.view()
        view.flags.writeable = False
        return view
    if isinstance(value, list):
        return tuple(value)
    return value


class Record(Mapping):
    """Immutable named fields: ``Record(name="challenger", X=X, y=y)``.

    Fields are read with ``rec["X"]`` (or ``rec.X``); ``rec.fields`` lists their
    names in the order given. Arrays are stored as read-only views. A Record of
    equal-length arrays is a dataset that
    :class:`~probpipe.BootstrapReplicateDistribution` can resample row-wise.
    """

    __slots__ = ("_data", "_name")

    def __init__(self, name: str | None = None, **fields: Any):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Record name must be a string or None, got {name!r}")
        if not fields:
            raise ValueError("Record needs at least one field, e.g. Record(X=X, y=y)")
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_data", {key: _frozen(value) for key, value in fields.items()})

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names, in the order they were given."""
        return tuple(self._data)

    def __getitem__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(
                f"Record has no field {key!r}; its fields are {list(self._data)}"
            ) from None

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(
                f"Record has no field {key!r}; its fields are {list(self._data)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Record is immutable; use Record.replace(...) instead")

    def __delattr__(self, key: str) -> None:
        raise AttributeError("Record is immutable")

    def replace(self, **fields: Any) -> Record:
        """A new Record with some fields replaced or added."""
        return Record(name=self._name, **{**self._data, **fields})

    def n_rows(self) -> int:
        """The common length of the fields; ValueError if they differ."""
        lengths = {}
        for key, value in self._data.items():
            if np.ndim(value) == 0:
                raise ValueError(
                    f"Record field {key!r} is a scalar; row-wise use needs arrays "
                    "of equal length in every field"
                )
            lengths[key] = len(value)
        if len(set(lengths.values())) > 1:
            raise ValueError(
                "Record fields must have equal lengths for row-wise use, got "
                + ", ".join(f"{k}={n}" for k, n in lengths.items())
            )
        return next(iter(lengths.values()))

    def take(self, indices: np.ndarray) -> Record:
        """The Record of rows ``indices`` (every field indexed the same way)."""
        return Record(
            name=self._name,
            **{key: np.asarray(value)[indices] for key, value in self._data.items()},
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        if self._name != other._name or self.fields != other.fields:
            return False
        return all(
            np.array_equal(np.asarray(self._data[k]), np.asarray(other._data[k]))
            for k in self._data
        )

    __hash__ = None  # fields may be arrays

    def __repr__(self) -> str:
        parts = []
        for key, value in self._data.items():
            if isinstance(value, np.ndarray):
                parts.append(f"{key}=<{value.dtype} array {value.shape}>")
            else:
                parts.append(f"{key}={value!r}")
        name = f"name={self._name!r}, " if self._name else ""
        return f"Record({name}{', '.join(parts)})"

    def __reduce__(self):
        return (_rebuild_record, (self._name, dict(self._data)))


def _rebuild_record(name: str | None, data: dict[str, Any]) -> Record:
    return Record(name=name, **data)
