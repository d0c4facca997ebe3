"""Where every random number of a call comes from: a pure function of (seed, stream).

Row ``i`` receives ``default_rng(SeedSequence(seed, spawn_key=(i,)))``; the
draws of the broadcast inputs use two-element keys ``(INPUT_STREAM, k)``, so
they can never collide with a row's. Nothing here depends on the backend,
the chunking, the worker or the order work finishes in.
"""

from __future__ import annotations

import numpy as np

INPUT_STREAM = 0x5EED


def fresh_seed() -> int:
    """A new seed from the OS's entropy (recorded in provenance, so runs repeat)."""
    return int(np.random.SeedSequence().entropy)


def row_rng(seed: int, seed_key: int) -> np.random.Generator:
    """The generator row ``seed_key`` receives as ``rng``: a pure function of (seed, row)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(seed_key,)))


def input_rng(seed: int, k: int) -> np.random.Generator:
    """The generator that draws broadcast input ``k`` of a call."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(INPUT_STREAM, k)))
