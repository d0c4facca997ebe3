"""Row functions the conformance suite runs.

They live in the package (not in a test file) so that every worker process
of every engine can import them by reference.
"""

from __future__ import annotations

import collections
import os
import time
import uuid

import numpy as np


class ConformanceError(Exception):
    """A user-defined exception type a row raises on purpose."""


class Unpicklable:
    """Holds a lock, so it cannot be pickled."""

    def __init__(self):
        import threading

        self.lock = threading.Lock()


def noisy_value(x, scale=1.0, rng=None):
    """A scalar that depends on the argument and on the row's generator."""
    return float(x) * scale + rng.normal()


def vector_value(x, rng=None):
    """A length-3 vector per row."""
    return np.array([x, x**2, rng.normal()])


def bootstrap_stats(X, y, rng=None):
    """Statistics of a co-sampled bootstrap replicate (X and y share indices)."""
    X = np.asarray(X)
    y = np.asarray(y)
    return np.array([X.mean(), y.mean(), float(np.corrcoef(X, y)[0, 1]), rng.normal()])


def gaussian_posterior(x, rng=None):
    """A distribution per row (so results form a mixture)."""
    from probpipe import EmpiricalDistribution

    return EmpiricalDistribution(x + rng.normal(size=(50, 2)))


def describe_row(x, label="row"):
    """A non-numeric row: a dict."""
    return {"label": label, "x": round(float(x), 12)}


def slow_first(x, index_scale=0.02, n=16, rng=None):
    """Rows with small x sleep longest, so rows finish out of order."""
    time.sleep(max(0.0, (n - x)) * index_scale)
    return float(x) + rng.normal()


def fail_on(x, bad=(), rng=None):
    """Raise ConformanceError on the rows whose x is in ``bad``."""
    if int(x) in bad:
        raise ConformanceError(f"row with x={int(x)} fails on purpose")
    return float(x) + rng.normal()


def fail_first_attempt(x, marker_dir, bad=(), rng=None):
    """Fail the first attempt of rows in ``bad`` (markers on disk work across processes)."""
    value = float(x) + rng.normal()
    if int(x) in bad:
        marker = os.path.join(marker_dir, f"attempt-{int(x)}")
        if not os.path.exists(marker):
            with open(marker, "w") as fh:
                fh.write("failed once")
            raise ConformanceError(f"transient failure at x={int(x)}")
    return value


def uses_shared(data, i):
    """Touch a large shared array."""
    return float(data[int(i) % data.shape[0]].sum()) + float(i)


def identity(x):
    return x


def pid_of_row(x):
    """The process that ran the row."""
    return os.getpid()


def die_on(x, bad=(), rng=None):
    """The row's whole process dies (as if killed or segfaulting) for x in ``bad``."""
    if int(x) in bad:
        os._exit(17)
    return float(x) + rng.normal()


def spin_on(x, bad=(), rng=None):
    """Rows in ``bad`` loop forever in Python code (only a timeout stops them)."""
    value = float(x) + rng.normal()
    while int(x) in bad:
        value += 1.0
    return value


def sleep_on(x, bad=(), seconds=60.0, rng=None):
    """Rows in ``bad`` block in time.sleep (a C call)."""
    if int(x) in bad:
        time.sleep(seconds)
    return float(x) + rng.normal()


def marked_fail_first(x, marker_dir, seconds=0.5, rng=None):
    """Row 0 fails at once; the others leave a marker, then take ``seconds``."""
    if int(x) == 0:
        raise ConformanceError("row 0 fails at once")
    with open(os.path.join(marker_dir, f"ran-{int(x)}"), "w"):
        pass
    time.sleep(seconds)
    return float(x) + rng.normal()


def marked_value(x, marker_dir, seconds=0.0, rng=None):
    """Leave a marker per execution (name includes the pid), then return a value."""
    with open(os.path.join(marker_dir, f"ran-{int(x)}-{os.getpid()}-{time.time_ns()}"), "w"):
        pass
    time.sleep(seconds)
    return float(x) + rng.normal()


def unsendable_on(x, bad=(), rng=None):
    """Rows in ``bad`` return something that cannot be pickled back from a worker."""
    import threading

    if int(x) in bad:
        return threading.Lock()
    return float(x) + rng.normal()


# -- per-worker values ---------------------------------------------------------


class Sampler:
    """A stand-in for a compiled model: built once per worker, used by every row there.

    It holds a lock, so it cannot be pickled: a backend that tried to send it
    anywhere would fail (per-worker values never travel).
    """

    def __init__(self, loc, scale):
        import threading

        self.loc = float(loc)
        self.scale = float(scale)
        self.lock = threading.Lock()

    def draw(self, x, rng):
        return self.loc + self.scale * float(x) + rng.normal()


def build_sampler(loc, scale, marker_dir=None, seconds=0.0):
    """A per-worker factory. Each build leaves a file named by its process id in
    ``marker_dir`` (see :func:`builds_by_pid`), then takes ``seconds``."""
    if marker_dir is not None:
        name = f"build-{os.getpid()}-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        with open(os.path.join(marker_dir, name), "w"):
            pass
    time.sleep(seconds)
    return Sampler(loc, scale)


def builds_by_pid(marker_dir):
    """{process id: builds} from the files :func:`build_sampler` left."""
    pids = [name.split("-")[1] for name in os.listdir(marker_dir) if name.startswith("build-")]
    return dict(collections.Counter(int(pid) for pid in pids))


def broken_build(loc=0.0, scale=1.0, fail_once_marker=None):
    """A per-worker factory that raises ConformanceError: always, or (with
    ``fail_once_marker``) only the first time anywhere."""
    if fail_once_marker is None:
        raise ConformanceError("the factory fails on purpose")
    if not os.path.exists(fail_once_marker):
        with open(fail_once_marker, "w") as fh:
            fh.write("failed once")
        raise ConformanceError("the factory fails on its first build")
    return Sampler(loc, scale)


def sample_with(x, sampler, shift=0.0, rng=None):
    """A row that uses a per-worker value."""
    return sampler.draw(x, rng) + float(shift)
