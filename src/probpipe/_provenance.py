"""Provenance: how a result was computed, as a JSON-safe record.

Every broadcast or sweep result carries ``.provenance``: the operation, the
tracked inputs (``parents``: name, type and content fingerprint of each) and
``metadata`` (backend, seed, chunking, failures, timings...).
``provenance_config.mode`` selects FULL (parents also keep a live reference
to the input), LIGHTWEIGHT (the default: no live references) or OFF.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._suggest import shown

__all__ = [
    "Parent",
    "Provenance",
    "ProvenanceMode",
    "fingerprint",
    "json_safe",
    "provenance_config",
]


class ProvenanceMode(enum.Enum):
    FULL = "full"
    LIGHTWEIGHT = "lightweight"
    OFF = "off"


class _ProvenanceConfig:
    """Process-wide provenance settings: ``provenance_config.mode = ProvenanceMode.OFF``."""

    def __init__(self) -> None:
        self._mode = ProvenanceMode.LIGHTWEIGHT

    @property
    def mode(self) -> ProvenanceMode:
        return self._mode

    @mode.setter
    def mode(self, value: ProvenanceMode | str) -> None:
        if isinstance(value, ProvenanceMode):
            self._mode = value
            return
        by_name = {m.value: m for m in ProvenanceMode}  # "full", "lightweight", "off"
        if isinstance(value, str) and value.lower() in by_name:
            self._mode = by_name[value.lower()]
            return
        choices = ", ".join(m.name for m in ProvenanceMode)
        raise ValueError(
            f"provenance mode must be one of {choices} (a ProvenanceMode, or its name in any "
            f"case), got {shown(value)}"
        )

    def __repr__(self) -> str:
        return f"provenance_config(mode={self._mode.name})"


provenance_config = _ProvenanceConfig()
"""Process-wide provenance settings; ``provenance_config.mode`` is a :class:`ProvenanceMode`."""


# ---------------------------------------------------------------------------
# Fingerprints
# ---------------------------------------------------------------------------


def fingerprint(obj: Any) -> str:
    """A content hash of ``obj`` (hex): equal content gives equal fingerprints.

    Arrays hash their dtype, shape and bytes; distributions their class and
    parameters; containers their items. Objects that cannot be pickled (and
    containers that hold themselves, or nest deeper than ``_MAX_DEPTH``) get a
    fingerprint based on their identity and are marked ``"id:"``.
    """
    h = hashlib.sha256()  # hardware-accelerated on x86: ~1.7 GB/s
    if not _feed(h, obj, ()):
        return f"id:{type(obj).__qualname__}:{id(obj):x}"
    return h.hexdigest()[:32]


# Containers nested deeper than this are identified by id: hashing them
# would exhaust the interpreter's recursion limit.
_MAX_DEPTH = 100


def _feed(h: Any, obj: Any, outer: tuple[int, ...]) -> bool:
    """Feed ``obj`` into hash ``h``; False if it can only be identified by id.

    ``outer`` holds the ids of the containers ``obj`` sits in: one that holds
    itself, or a nesting deeper than ``_MAX_DEPTH``, is not hashed by content.
    """
    from ._distributions import Distribution
    from ._record import Record

    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
        return True
    if isinstance(obj, np.generic):
        obj = np.asarray(obj)
    if isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
        h.update(f"array:{obj.dtype.str}:{obj.shape};".encode())
        if obj.size:
            # The raw bytes, read as uint8: works for every plain dtype (dates
            # included), where a memoryview refuses some.
            h.update(np.ascontiguousarray(obj).reshape(-1).view(np.uint8))
        return True
    if id(obj) in outer or len(outer) >= _MAX_DEPTH:
        return False
    inner = (*outer, id(obj))
    if isinstance(obj, np.ndarray):  # an array of Python objects
        h.update(f"objarray{obj.shape};".encode())
        return all(_feed(h, item, inner) for item in obj.ravel())
    if isinstance(obj, Record):
        h.update(f"Record:{obj.name!r};".encode())
        return all(_feed(h, key, inner) and _feed(h, obj[key], inner) for key in obj.fields)
    if isinstance(obj, Distribution):
        h.update(f"{type(obj).__module__}.{type(obj).__qualname__};".encode())
        return all(_feed(h, k, inner) and _feed(h, v, inner) for k, v in obj._params().items())
    if isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[{len(obj)}];".encode())
        return all(_feed(h, item, inner) for item in obj)
    if isinstance(obj, Mapping):
        h.update(f"map[{len(obj)}];".encode())
        items = sorted(obj.items(), key=lambda kv: _sort_key(kv[0]))
        return all(_feed(h, k, inner) and _feed(h, v, inner) for k, v in items)
    import cloudpickle

    try:
        h.update(cloudpickle.dumps(obj, protocol=5))
    except Exception:
        return False
    return True


def _sort_key(key: Any) -> str:
    try:
        return repr(key)
    except Exception:
        return f"<{type(key).__qualname__}>"


# ---------------------------------------------------------------------------
# JSON safety
# ---------------------------------------------------------------------------


def json_safe(value: Any, _depth: int = 0) -> Any:
    """Convert ``value`` to something ``json.dumps`` accepts, losing as little as possible.

    Containers nested deeper than ``_MAX_DEPTH`` (or holding themselves) are
    kept as a short description rather than recursed into.
    """
    if _depth > _MAX_DEPTH:
        return shown(value)
    inner = _depth + 1
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.generic):
        return json_safe(value.item(), inner)
    if isinstance(value, np.ndarray):
        if value.size <= 64 and value.dtype != object:
            return json_safe(value.tolist(), inner)
        return f"<{value.dtype} array {value.shape}>"
    if isinstance(value, enum.Enum):
        return json_safe(value.value, inner)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, inner) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, inner) for v in value]
    try:
        return repr(value)
    except Exception:  # a failing __repr__
        return shown(value)


# ---------------------------------------------------------------------------
# Provenance records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Parent:
    """One tracked input: its parameter ``name``, ``type`` and content ``fingerprint``.

    ``ref`` holds the input itself in FULL mode and is None otherwise.
    """

    name: str
    type: str
    fingerprint: str
    ref: Any = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class Provenance:
    """How a result was computed.

    ``operation`` is ``"broadcast"`` or ``"sweep"``; ``parents`` the tracked
    inputs; ``metadata`` a JSON-safe dict (see the provenance docs page for
    every key).
    """

    operation: str
    parents: tuple[Parent, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parents", tuple(self.parents))
        object.__setattr__(self, "metadata", json_safe(dict(self.metadata)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; :meth:`from_dict` reads it back."""
        return {
            "operation": self.operation,
            "parents": [p.to_dict() for p in self.parents],
            "metadata": self.metadata,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Read back what :meth:`to_dict` wrote; a malformed dict is a ValueError naming the key."""
        where = "Provenance.from_dict"
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{where} needs a dict as made by Provenance.to_dict(), "
                f"got {type(data).__name__} {shown(data)}"
            )
        if "operation" not in data:
            raise ValueError(f"not a provenance dict: {where} found no 'operation' key")
        operation = data["operation"]
        if not isinstance(operation, str):
            raise ValueError(
                f"{where}: 'operation' must be a string such as 'broadcast', got {shown(operation)}"
            )
        parents = data.get("parents", ())
        if not isinstance(parents, (list, tuple)):
            raise ValueError(
                f"{where}: 'parents' must be a list of {{name, type, fingerprint}} dicts, "
                f"got {shown(parents)}"
            )
        read = []
        for i, parent in enumerate(parents):
            if not isinstance(parent, Mapping):
                raise ValueError(
                    f"{where}: parents[{i}] must be a dict with name, type and fingerprint, "
                    f"got {shown(parent)}"
                )
            for key in ("name", "type", "fingerprint"):
                if not isinstance(parent.get(key), str):
                    raise ValueError(
                        f"{where}: parents[{i}][{key!r}] must be a string, "
                        f"got {shown(parent.get(key))}"
                    )
            read.append(
                Parent(name=parent["name"], type=parent["type"], fingerprint=parent["fingerprint"])
            )
        metadata = data.get("metadata", {})
        if not isinstance(metadata, Mapping):
            raise ValueError(f"{where}: 'metadata' must be a dict, got {shown(metadata)}")
        return cls(operation=operation, parents=tuple(read), metadata=dict(metadata))

    def __repr__(self) -> str:
        meta = self.metadata
        keys = ("func", "backend", "orchestrate", "n_rows", "seed", "chunksize")
        shown = ", ".join(f"{k}={meta[k]!r}" for k in keys if k in meta)
        names = ", ".join(p.name for p in self.parents)
        return f"Provenance({self.operation!r}, parents=[{names}], {shown})"
