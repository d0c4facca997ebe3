"""Row functions for the plugin's tests; Ray workers import this module by reference."""

from __future__ import annotations

import numpy as np


def weighted_sum(data, x, rng=None):
    """Uses a large constant array and the row's generator."""
    return float(data[:, 0].sum()) * x + rng.normal()


def record_run(x, log_path):
    """Appends to ``log_path`` so a test can tell whether any row ran."""
    with open(log_path, "a") as fh:
        fh.write(f"{x}\n")
    return float(x)


def noisy(x, rng=None):
    return float(x) + rng.normal()


def row_vector(x, rng=None):
    return np.array([x, rng.normal()])


def die_on(x, bad=3):
    """Ends its worker process abruptly on row ``bad`` (as a segfault or OOM kill would)."""
    import os

    if int(x) == bad:
        os._exit(1)
    return float(x)
