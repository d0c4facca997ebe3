"""Validation of the framework options a workflow function accepts.

Options are checked when a function is wrapped or re-optioned, so a bad value
fails at definition time, long before any sampling or dispatch.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ._suggest import shown, unknown_name_message

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

# Rows in one call at most. Each row is a function call with its own task
# record; far beyond this no machine holds the plan, so a bigger number is a
# typo (an extra zero, 2**40), refused before anything is drawn.
MAX_ROWS = 100_000_000


def _is_int(value: Any) -> bool:
    # NumPy counts timedelta64 among its integers; as a count it is a mistake.
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.timedelta64))


def _type_name(value: Any) -> str:
    return type(value).__name__


def check_positive_int(name: str, value: Any, *, most: int | None = None) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive int, got {shown(value)} ({_type_name(value)})")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    if most is not None and value > most:
        raise ValueError(f"{name} must be at most {most:,}, got {value:,}")
    return int(value)


def check_chunksize(value: Any) -> int | str | None:
    if value is None or (isinstance(value, str) and value == "auto"):
        return value
    if _is_int(value):
        if value < 1:
            raise ValueError(f"chunksize must be a positive int or 'auto', got {value}")
        return int(value)
    raise TypeError(f"chunksize must be a positive int, 'auto' or None, got {shown(value)}")


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check and normalize options; TypeError/ValueError names the culprit."""
    for name in options:
        if name not in DEFAULTS:
            raise TypeError(unknown_name_message("option", name, list(DEFAULTS)))
    out = dict(options)
    if "n_broadcast_samples" in out:
        out["n_broadcast_samples"] = check_positive_int(
            "n_broadcast_samples", out["n_broadcast_samples"], most=MAX_ROWS
        )
    if "seed" in out and out["seed"] is not None:
        seed = out["seed"]
        if not _is_int(seed):
            raise TypeError(f"seed must be a non-negative int or None, got {shown(seed)}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed}")
        out["seed"] = int(seed)
    if "chunksize" in out:
        out["chunksize"] = check_chunksize(out["chunksize"])
    if "on_error" in out:
        on_error = out["on_error"]
        if not (isinstance(on_error, str) and on_error in ("raise", "collect")):
            raise ValueError(f"on_error must be 'raise' or 'collect', got {shown(on_error)}")
    if "retries" in out:
        retries = out["retries"]
        if not _is_int(retries):
            raise TypeError(f"retries must be a non-negative int, got {shown(retries)}")
        if retries < 0:
            raise ValueError(f"retries must be a non-negative int, got {retries}")
        out["retries"] = int(retries)
    if out.get("timeout") is not None:
        timeout = out["timeout"]
        if isinstance(timeout, (bool, np.timedelta64)) or not isinstance(
            timeout, (int, float, np.integer, np.floating)
        ):
            raise TypeError(f"timeout must be a number of seconds or None, got {shown(timeout)}")
        try:
            seconds = float(timeout)
        except OverflowError:
            seconds = math.inf
        if not seconds > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {shown(timeout)}")
        if math.isinf(seconds):
            raise ValueError(
                f"timeout must be a finite number of seconds, got {shown(timeout)}; "
                "use timeout=None for no timeout"
            )
        out["timeout"] = seconds
    if out.get("checkpoint") is not None:
        checkpoint = out["checkpoint"]
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a directory path or None, got {shown(checkpoint)}")
        path = os.fspath(checkpoint)
        if not isinstance(path, str) or not path or "\x00" in path:
            raise ValueError(
                f"checkpoint must name a directory, got {shown(checkpoint)}; "
                "use '.' for the current directory"
            )
        out["checkpoint"] = path
    if out.get("progress") is not None and not isinstance(out["progress"], bool):
        raise TypeError(
            f"progress must be True, False or None (auto), got {shown(out['progress'])}"
        )
    if out.get("resources") is not None:
        resources = out["resources"]
        if not isinstance(resources, dict) or not all(isinstance(k, str) for k in resources):
            raise TypeError(
                f"resources must be a dict like {{'num_cpus': 2}}, got {shown(resources)}"
            )
        out["resources"] = dict(resources)
    if out.get("backend") is not None:
        from ._registry import check_backend_spec

        check_backend_spec(out["backend"])
    return out
