"""`Record`: an immutable bundle of named fields (a small dataset, a fit's output)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ._suggest import shown


def _read_only_throughout(arr: np.ndarray) -> bool:
    """True if no writable array (or buffer) can reach ``arr``'s memory."""
    base: Any = arr
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        base = base.base
    return base is None or isinstance(base, bytes)


def _frozen(value: Any, owned: bool = False) -> Any:
    """Read-only storage for a field, so a Record never changes once made.

    An array the caller could still write to (itself, or another view of its
    memory) is copied first; ``owned`` marks fresh arrays nothing else holds
    (rows taken by :meth:`Record.take`, unpickled fields), which are frozen in
    place. The stored value is a read-only view of a read-only array, so its
    ``writeable`` flag cannot be switched back on either.
    """
    if isinstance(value, np.ndarray):
        if not owned and not _read_only_throughout(value):
            value = value.copy()
        value.flags.writeable = False
        view = value.view()
        view.flags.writeable = False
        return view
    if isinstance(value, list):
        return tuple(value)
    return value


def _label(key: str) -> str:
    """A field name as a message shows it: bare if it is an identifier, else quoted."""
    return key if key.isidentifier() else shown(key)


class Record(Mapping):
    """Immutable named fields: ``Record(name="challenger", X=X, y=y)``.

    Fields are read with ``rec["X"]`` (or ``rec.X``); ``rec.fields`` lists their
    names in the order given. Arrays are stored read-only, copied first if the
    caller could still write to them, so a Record never changes. A Record of
    equal-length arrays is a dataset that
    :class:`~probpipe.BootstrapReplicateDistribution` can resample row-wise.
    """

    __slots__ = ("_data", "_name")

    def __init__(self, name: str | None = None, **fields: Any):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Record name must be a string or None, got {shown(name)}")
        if not fields:
            raise ValueError("Record needs at least one field, e.g. Record(X=X, y=y)")
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_data", {key: _frozen(value) for key, value in fields.items()})

    @classmethod
    def _from_owned(cls, name: str | None, fields: dict[str, Any]) -> Record:
        """A Record of fresh arrays nothing else references: frozen without a copy."""
        if not fields:
            raise ValueError("Record needs at least one field, e.g. Record(X=X, y=y)")
        record = cls.__new__(cls)
        object.__setattr__(record, "_name", name)
        object.__setattr__(
            record, "_data", {key: _frozen(value, owned=True) for key, value in fields.items()}
        )
        return record

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
            try:
                ndim = np.ndim(value)
            except (TypeError, ValueError, OverflowError, RecursionError):
                raise ValueError(
                    f"Record field {shown(key)} is not an array (rows of different lengths, or "
                    "nested too deep); row-wise use needs arrays of equal length in every field"
                ) from None
            if ndim == 0:
                raise ValueError(
                    f"Record field {shown(key)} is a scalar; row-wise use needs arrays "
                    "of equal length in every field"
                )
            lengths[key] = len(value)
        if len(set(lengths.values())) > 1:
            raise ValueError(
                "Record fields must have equal lengths for row-wise use, got "
                + ", ".join(f"{_label(k)}={n}" for k, n in lengths.items())
            )
        return next(iter(lengths.values()))

    def take(self, indices: np.ndarray) -> Record:
        """The Record of rows ``indices`` (every field indexed the same way)."""
        return Record._from_owned(
            self._name, {key: np.asarray(value)[indices] for key, value in self._data.items()}
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
                parts.append(f"{key}={shown(value)}")
        name = f"name={shown(self._name)}, " if self._name else ""
        return f"Record({name}{', '.join(parts)})"

    def __reduce__(self):
        return (_rebuild_record, (self._name, dict(self._data)))


def _rebuild_record(name: str | None, data: dict[str, Any]) -> Record:
    return Record._from_owned(name, data)
