"""Resumable calls: finished rows on disk, keyed by a fingerprint of the call.

``checkpoint="runs/boot"`` makes a call write every finished row to that
directory as its chunk comes back. Re-running the same call (same function,
inputs, ``n_broadcast_samples`` and seed) after a crash restores those rows
and computes only the missing ones; because each row's randomness depends
only on (seed, row), the result is bit-identical to an uninterrupted run.
Without an explicit seed, the seed recorded in the directory is reused.

The function counts by content (:mod:`probpipe._callables`): its code,
closure values, the globals it reads, a partial's arguments, a callable
object's state. A directory written by a different function is refused with
an error that says what differs; rows of two functions are never mixed.

Layout: ``manifest.json`` (format, call fingerprint, function and its
identity, seed, rows)
and one ``rows-<first>-<last>.ckpt`` per finished chunk: a header line with a
SHA-256 of the payload, then the payload (a pickle). Files are written to a
temporary name and renamed, so a crash never leaves a half-written file under
a real name. A directory from a different call, or a file whose checksum or
call fingerprint does not match, is refused with :class:`CheckpointError`;
nothing is ever silently mixed in.

Checkpoint files are pickles: load only directories you (or someone you
trust) wrote. The checksum detects corruption, not a deliberate forgery.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

from ._callables import identity_differences
from ._errors import CheckpointError
from ._suggest import brief, shown

# 2: the function is identified by content (closures, partials, objects), not
# by its bytecode alone.
FORMAT = 2
MAGIC = b"probpipe-checkpoint 1 sha256="
_ROW_FILE = re.compile(r"^rows-(\d+)-(\d+)\.ckpt$")


def call_fingerprint(func_digest: str, inputs: dict[str, str], n_samples: int, seed: Any) -> str:
    """The identity of a call: function (by content), input fingerprints, size and seed."""
    doc = json.dumps(
        {
            "format": FORMAT,
            "func": func_digest,
            "inputs": inputs,
            "n_samples": n_samples,
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


def recorded_seed(directory: str | os.PathLike, unseeded_fingerprint: str) -> int | None:
    """The seed an earlier run of this (unseeded) call used, if it left a checkpoint."""
    manifest = Path(directory) / "manifest.json"
    if not manifest.exists():
        return None
    data = _read_manifest(manifest)
    if data.get("unseeded_fingerprint") == unseeded_fingerprint:
        seed = data.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise CheckpointError(
                f"checkpoint manifest {manifest} records the seed {shown(seed)}, which is not "
                "a seed; delete the directory to start over"
            )
        return seed
    return None


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint manifest {path} is unreadable ({brief(str(exc), 100)}); "
            "delete the directory to start over"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"checkpoint manifest {path} is not a probpipe manifest (it holds "
            f"{type(data).__name__} {shown(data)}); delete the directory to start over"
        )
    return data


class Checkpoint:
    """One call's checkpoint directory."""

    def __init__(
        self,
        directory: str | os.PathLike,
        fingerprint: str,
        *,
        unseeded_fingerprint: str,
        func: str,
        seed: int,
        n_rows: int,
        identity: dict[str, Any] | None = None,
        inputs: dict[str, str] | None = None,
        seed_drawn_here: bool = False,
    ):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        # A seed drawn for this call (none given, none recorded) differs from
        # any recorded one; not worth naming when something else differs.
        self._seed_drawn_here = seed_drawn_here
        self._meta = {
            "format": FORMAT,
            "fingerprint": fingerprint,
            "unseeded_fingerprint": unseeded_fingerprint,
            "func": func,
            "identity": identity or {},
            "seed": seed,
            "n_rows": n_rows,
            "inputs": inputs or {},
        }

    def open(self) -> dict[int, Any]:
        """Create or check the directory; return the rows restored from it."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(
                f"cannot create checkpoint directory {self.directory}: {exc}"
            ) from None
        manifest = self.directory / "manifest.json"
        if manifest.exists():
            found = _read_manifest(manifest)
            if found.get("fingerprint") != self.fingerprint:
                raise CheckpointError(
                    f"checkpoint directory {self.directory} holds rows of a different call: "
                    f"{self._differences(found)}. Use a new directory for this call, or "
                    "delete that one to start over."
                )
        else:
            self._atomic_write(manifest, json.dumps(self._meta, indent=2).encode())
        restored: dict[int, Any] = {}
        for path in sorted(self.directory.iterdir()):
            if _ROW_FILE.match(path.name):
                rows, values = self._read_rows(path)
                restored.update(zip(rows, values))
        bad = [row for row in restored if not 0 <= row < self._meta["n_rows"]]
        if bad:
            raise CheckpointError(
                f"checkpoint directory {self.directory} has rows outside this call: {bad[:5]}"
            )
        return restored

    def _differences(self, found: dict[str, Any]) -> str:
        mine = self._meta
        if found.get("format") != FORMAT:
            return (
                f"it was written by another probpipe version (checkpoint format "
                f"{shown(found.get('format'))}, this one writes {FORMAT})"
            )
        diffs = []
        if found.get("func") != mine["func"]:
            diffs.append(f"function {shown(found.get('func'))} there, {shown(mine['func'])} here")
        else:
            diffs.extend(identity_differences(found.get("identity"), mine["identity"]))
        if found.get("n_rows") != mine["n_rows"]:
            diffs.append(f"n_rows {shown(found.get('n_rows'))} there, {mine['n_rows']!r} here")
        theirs, ours = found.get("inputs"), mine["inputs"]
        if not isinstance(theirs, dict):  # a hand-edited or foreign manifest
            theirs = {}
        changed = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if changed:
            diffs.append(f"argument{'s' if len(changed) > 1 else ''} {', '.join(changed)} differ")
        if found.get("seed") != mine["seed"] and not (self._seed_drawn_here and diffs):
            diffs.append(f"seed {shown(found.get('seed'))} there, {mine['seed']!r} here")
        return "; ".join(diffs) or "its recorded fingerprint differs"

    def write(self, rows: list[int], values: list[Any]) -> None:
        """Persist finished rows (one file per chunk)."""
        if not rows:
            return
        try:
            payload = pickle.dumps(
                {"call": self.fingerprint, "rows": list(rows), "values": list(values)},
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        except Exception as exc:
            raise CheckpointError(
                f"rows {rows[0]}-{rows[-1]} returned values that cannot be pickled, so they "
                f"cannot be checkpointed: {type(exc).__name__}: {exc}"
            ) from exc
        digest = hashlib.sha256(payload).hexdigest().encode()
        name = f"rows-{min(rows):08d}-{max(rows):08d}.ckpt"
        self._atomic_write(self.directory / name, MAGIC + digest + b"\n" + payload)

    def _read_rows(self, path: Path) -> tuple[list[int], list[Any]]:
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(
                f"checkpoint file {path} cannot be read ({type(exc).__name__}: "
                f"{exc.strerror or exc}); delete it to recompute its rows"
            ) from None
        header, _, payload = blob.partition(b"\n")
        if not header.startswith(MAGIC):
            raise CheckpointError(f"checkpoint file {path} is not a probpipe checkpoint")
        if hashlib.sha256(payload).hexdigest().encode() != header[len(MAGIC) :]:
            raise CheckpointError(
                f"checkpoint file {path} is corrupt or was modified (checksum mismatch); "
                "delete it to recompute its rows"
            )
        try:
            data = pickle.loads(payload)
        except Exception as exc:
            raise CheckpointError(
                f"checkpoint file {path} cannot be read: {brief(str(exc), 100)}"
            ) from None
        if not isinstance(data, dict):
            raise CheckpointError(
                f"checkpoint file {path} is not a probpipe checkpoint (it holds "
                f"{type(data).__name__} {shown(data)}); delete it to recompute its rows"
            )
        if data.get("call") != self.fingerprint:
            raise CheckpointError(
                f"checkpoint file {path} belongs to a different call; it is not mixed in. "
                "Delete it, or use a new directory."
            )
        rows, values = data.get("rows"), data.get("values")
        if (
            not isinstance(rows, list)
            or not isinstance(values, list)
            or len(rows) != len(values)
            or not all(isinstance(r, int) and not isinstance(r, bool) for r in rows)
        ):
            raise CheckpointError(
                f"checkpoint file {path} is malformed (its rows and values do not match); "
                "delete it to recompute its rows"
            )
        return rows, values

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
