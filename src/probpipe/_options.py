"""Validation of the framework options a workflow function accepts.

Options are checked when a function is wrapped or re-optioned, so a bad value
fails at definition time, long before any sampling or dispatch.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import numpy as np

DEFAULTS: dict[str, Any] = {
    "n_broadcast_samples": 128,
    "seed": None,
    "backend": None,
    "chunksize": None,
    "on_error": "raise",
    "retries": 0,
    "timeout": None,
    "checkpoint": None,
    "progress": None,
    "resources": None,
}


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """``"unknown {kind} 'x'; did you mean 'y'? Known: ..."`` for every name lookup."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} Known: {', '.join(sorted(known))}"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_positive_int(name: str, value: Any) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def check_chunksize(value: Any) -> int | str | None:
    if value is None or value == "auto":
        return value
    if _is_int(value):
        if value < 1:
            raise ValueError(f"chunksize must be a positive int or 'auto', got {value}")
        return int(value)
    raise TypeError(f"chunksize must be a positive int, 'auto' or None, got {value!r}")


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check and normalize options; TypeError/ValueError names the culprit."""
    for name in options:
        if name not in DEFAULTS:
            raise TypeError(unknown_name_message("option", name, list(DEFAULTS)))
    out = dict(options)
    if "n_broadcast_samples" in out:
        out["n_broadcast_samples"] = check_positive_int(
            "n_broadcast_samples", out["n_broadcast_samples"]
        )
    if "seed" in out and out["seed"] is not None:
        seed = out["seed"]
        if not _is_int(seed):
            raise TypeError(f"seed must be a non-negative int or None, got {seed!r}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed}")
        out["seed"] = int(seed)
    if "chunksize" in out:
        out["chunksize"] = check_chunksize(out["chunksize"])
    if "on_error" in out and out["on_error"] not in ("raise", "collect"):
        raise ValueError(f"on_error must be 'raise' or 'collect', got {out['on_error']!r}")
    if "retries" in out:
        retries = out["retries"]
        if not _is_int(retries):
            raise TypeError(f"retries must be a non-negative int, got {retries!r}")
        if retries < 0:
            raise ValueError(f"retries must be a non-negative int, got {retries}")
        out["retries"] = int(retries)
    if out.get("timeout") is not None:
        timeout = out["timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.number)):
            raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        out["timeout"] = float(timeout)
    if out.get("checkpoint") is not None:
        checkpoint = out["checkpoint"]
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a directory path or None, got {checkpoint!r}")
        out["checkpoint"] = os.fspath(checkpoint)
    if out.get("progress") is not None and not isinstance(out["progress"], bool):
        raise TypeError(f"progress must be True, False or None (auto), got {out['progress']!r}")
    if out.get("resources") is not None:
        resources = out["resources"]
        if not isinstance(resources, dict) or not all(isinstance(k, str) for k in resources):
            raise TypeError(f"resources must be a dict like {{'num_cpus': 2}}, got {resources!r}")
        out["resources"] = dict(resources)
    if out.get("backend") is not None:
        from ._registry import check_backend_spec

        check_backend_spec(out["backend"])
    return out
