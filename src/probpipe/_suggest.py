"""The wording of user-facing errors: "did you mean", and how values are shown.

One place decides how a mistake is reported, so every message has the same
shape: what was wrong, where it came from, and the fix. Two helpers:

:func:`unknown_name_message`
    ``unknown backend 'dask'. Did you mean 'prefect-dask'? Known: ...``. The
    suggestion comes from spelling (case, ``_`` for ``-``, letters swapped)
    and from the engine a user names (``dask`` is served by ``prefect-dask``).
:func:`shown`
    A value as an error message shows it: one line, at most a few dozen
    characters, and never an exception of its own (a value's ``repr`` may
    fail, recurse or run to megabytes).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

# Names users type for an engine, and the backend that runs on it (keys are
# written as _squash leaves them: lower case, no separators). Only consulted
# for a name that is not registered: with the native Ray plugin installed,
# "ray" is a backend of its own and stays that.
ENGINE_ALIASES: dict[str, str] = {
    "dask": "prefect-dask",
    "distributed": "prefect-dask",
    "daskdistributed": "prefect-dask",
    "ray": "prefect-ray",
    "serial": "sequential",
    "sync": "sequential",
    "loop": "sequential",
}

_MAX_NAME = 64  # longer names are not matched by spelling (and are shown cut)


def _squash(name: str) -> str:
    """``'Prefect_Ray '`` -> ``'prefectray'``: the name without case or separators."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def suggest(
    name: Any, known: Iterable[str], aliases: Mapping[str, str] | None = None
) -> str | None:
    """The known name ``name`` most likely meant, or None."""
    known = list(known)
    if not isinstance(name, str) or not known or len(name) > _MAX_NAME:
        return None
    squashed = _squash(name)
    if squashed:
        by_squash = {_squash(k): k for k in known}
        if squashed in by_squash:
            return by_squash[squashed]
        target = (aliases or {}).get(squashed)
        if target in known:
            return target
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_name_message(
    kind: str,
    name: Any,
    known: Iterable[str],
    *,
    owner: str | None = None,
    source: str | None = None,
    aliases: Mapping[str, str] | None = None,
) -> str:
    """``"unknown {kind} 'x' ({source}). Did you mean 'y'? Known: a, b."``

    ``owner`` prefixes the message (``backend 'prefect-ray': unknown option
    ...``) and is who "takes no options" when ``known`` is empty; ``source``
    says where the name came from (``environment variable PROBPIPE_BACKEND``).
    """
    known = sorted(known)
    where = f" ({source})" if source else ""
    text = f"unknown {kind} {shown(name)}{where}"
    if not known:
        return f"{text}: {owner or 'it'} takes no {kind}s."
    if owner:
        text = f"{owner}: {text}"
    close = suggest(name, known, aliases)
    hint = f" Did you mean {close!r}?" if close is not None else ""
    return f"{text}.{hint} Known: {', '.join(known)}."


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for an error message: one line, at most about ``limit`` characters."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None and (len(shape) > 1 or _size(value) > 6):
        return f"<{dtype} array of shape {shape}>"
    try:
        text = repr(value)
    except Exception:  # a failing __repr__, or one nested too deep (RecursionError)
        return f"<{type(value).__name__} object>"
    text = " ".join(text.split())  # one line: arrays and dicts print over several
    if len(text) <= limit:
        return text
    size = _size(value)
    what = f" ({type(value).__name__} of length {size})" if size >= 0 else ""
    return f"{text[: limit - 3]}...{what}"


def brief(text: str, limit: int = 100) -> str:
    """Text (another exception's message, say) on one line, cut to about ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _size(value: Any) -> int:
    """``len(value)``, or -1 when it has none (or it fails)."""
    try:
        return int(getattr(value, "size", None) or len(value))
    except Exception:
        return -1
