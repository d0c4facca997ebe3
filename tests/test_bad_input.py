"""Bad input fails early and clearly: the right type, a message naming the culprit,
and nothing sampled, run or dispatched first (API.md section 1, "Bad input")."""

from __future__ import annotations

import atexit
import hashlib
import os
import pickle
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

import probpipe as pp


class MapCounter:
    """An observer plugin counting calls that dispatched rows."""

    def __init__(self) -> None:
        self.started = 0

    @pp.hookimpl
    def probpipe_map_started(self, call):
        self.started += 1


class SpyNormal(pp.Normal):
    """A Normal that records every time it is sampled."""

    draws: list[int] = []

    def sample(self, n, rng=None):
        SpyNormal.draws.append(n)
        return super().sample(n, rng)


def wf(f, **options):
    return pp.WorkflowFunction(f, **{"n_broadcast_samples": 4, **options})


def unstarted(name, **options):
    """A backend object, not selected and not started (what backend= accepts)."""
    from probpipe._selection import create_backend

    return create_backend(name, **options)


def mvn(mean, cov):
    return pp.MultivariateNormal(np.asarray(mean, float), np.asarray(cov, float))


# (id, trigger, expected exception, regex the message must match).
# ``trigger`` receives ``f``, a function whose body records that it ran.
CASES = [
    # -- n_broadcast_samples ---------------------------------------------------
    ("n-float", lambda f: wf(f, n_broadcast_samples=2.5), TypeError, r"n_broadcast_samples.*2\.5"),
    ("n-zero", lambda f: wf(f, n_broadcast_samples=0), ValueError, r"n_broadcast_samples.*\b0\b"),
    (
        "n-negative",
        lambda f: wf(f).with_options(n_broadcast_samples=-1),
        ValueError,
        r"n_broadcast_samples.*-1",
    ),
    (
        "n-bool",
        lambda f: pp.workflow_function(n_broadcast_samples=True)(f),
        TypeError,
        r"n_broadcast_samples.*True",
    ),
    # -- unknown options -------------------------------------------------------
    (
        "unknown-option",
        lambda f: pp.WorkflowFunction(f, n_broadcast_sample=10),
        TypeError,
        r"unknown option 'n_broadcast_sample'\. Did you mean 'n_broadcast_samples'",
    ),
    (
        "unknown-option-decorator",
        lambda f: pp.workflow_function(sed=1),
        TypeError,
        r"unknown option 'sed'\. Did you mean 'seed'",
    ),
    (
        "unknown-option-with-options",
        lambda f: wf(f).with_options(retry=2),
        TypeError,
        r"unknown option 'retry'\. Did you mean 'retries'",
    ),
    # -- chunksize, on_error, retries, seed ----------------------------------------
    ("chunksize-zero", lambda f: wf(f, chunksize=0), ValueError, r"chunksize.*\b0\b"),
    ("chunksize-negative", lambda f: wf(f, chunksize=-3), ValueError, r"chunksize.*-3"),
    ("chunksize-float", lambda f: wf(f, chunksize=2.5), TypeError, r"chunksize.*2\.5"),
    ("chunksize-text", lambda f: wf(f, chunksize="big"), TypeError, r"chunksize.*'big'"),
    ("on-error", lambda f: wf(f, on_error="ignore"), ValueError, r"on_error.*'ignore'"),
    ("retries-negative", lambda f: wf(f, retries=-1), ValueError, r"retries.*-1"),
    ("retries-float", lambda f: wf(f, retries=1.5), TypeError, r"retries.*1\.5"),
    ("seed-negative", lambda f: wf(f, seed=-1), ValueError, r"seed.*-1"),
    ("seed-text", lambda f: wf(f, seed="x"), TypeError, r"seed.*'x'"),
    ("not-callable", lambda f: pp.WorkflowFunction(42), TypeError, r"callable.*42"),
    # -- backends --------------------------------------------------------------
    (
        "unknown-backend",
        lambda f: wf(f, backend="sequental"),
        pp.BackendNotFoundError,
        r"unknown backend 'sequental' \(option backend=\)\. Did you mean 'sequential'\? "
        r"Known:.*prefect.*sequential\.$",
    ),
    (
        "unknown-backend-use",
        lambda f: pp.use_backend("no-such-engine"),
        pp.BackendNotFoundError,
        r"unknown backend 'no-such-engine'.*Known:.*sequential",
    ),
    # -- calling ---------------------------------------------------------------
    (
        "empty-sweep",
        lambda f: wf(f)(SpyNormal(0.0, 1.0), y=pp.sweep([])),
        ValueError,
        r"sweep for argument 'y' is empty",
    ),
    (
        "rng-by-keyword",
        lambda f: wf(f)(SpyNormal(0.0, 1.0), rng=np.random.default_rng(0)),
        TypeError,
        r"f\(\) receives 'rng' from probpipe",
    ),
    (
        "rng-by-position",
        lambda f: wf(f)(SpyNormal(0.0, 1.0), 2.0, np.random.default_rng(0)),
        TypeError,
        r"f\(\) receives 'rng' from probpipe",
    ),
    (
        "unbindable-call",
        lambda f: wf(f)(SpyNormal(0.0, 1.0), z=pp.sweep([1, 2])),
        TypeError,
        r"f\(\).*'z'",
    ),
    ("sweep-text", lambda f: pp.sweep("abc"), TypeError, r"sweep\(\).*str 'abc'"),
    ("sweep-scalar", lambda f: pp.sweep(5), TypeError, r"sweep\(\).*int 5"),
    (
        "sweep-of-distributions",
        lambda f: pp.sweep([pp.Normal(0.0, 1.0)]),
        TypeError,
        r"sweep\(\) values must be concrete",
    ),
    # -- bootstrap sources ---------------------------------------------------------
    (
        "bootstrap-unequal-record",
        lambda f: pp.BootstrapReplicateDistribution(pp.Record(X=np.zeros(5), y=np.zeros(4))),
        ValueError,
        r"equal lengths.*X=5, y=4",
    ),
    (
        "bootstrap-scalar",
        lambda f: pp.BootstrapReplicateDistribution(3.0),
        TypeError,
        r"rows to resample.*got float 3\.0",
    ),
    (
        "bootstrap-parametric",
        lambda f: pp.BootstrapReplicateDistribution(pp.Normal(0.0, 1.0)),
        TypeError,
        r"source must be .*got Normal",
    ),
    # -- distribution parameters -----------------------------------------------------
    ("normal-scale-negative", lambda f: pp.Normal(0.0, -1.0), ValueError, r"Normal: scale.*> 0"),
    ("normal-scale-zero", lambda f: pp.Normal(0.0, 0.0), ValueError, r"Normal: scale.*> 0"),
    ("normal-loc-nan", lambda f: pp.Normal(np.nan, 1.0), ValueError, r"Normal.*'loc'.*finite"),
    (
        "uniform-equal-bounds",
        lambda f: pp.Uniform(1.0, 1.0),
        ValueError,
        r"Uniform: high must be > low",
    ),
    (
        "uniform-reversed-bounds",
        lambda f: pp.Uniform(2.0, 1.0),
        ValueError,
        r"Uniform: high must be > low.*low=2\.0, high=1\.0",
    ),
    ("gamma-shape-zero", lambda f: pp.Gamma(0.0, 1.0), ValueError, r"Gamma: shape must be > 0"),
    ("gamma-shape-negative", lambda f: pp.Gamma(-2.0, 1.0), ValueError, r"Gamma: shape.*-2"),
    ("gamma-rate-zero", lambda f: pp.Gamma(1.0, 0.0), ValueError, r"Gamma: rate must be > 0"),
    ("beta-a-zero", lambda f: pp.Beta(0.0, 1.0), ValueError, r"Beta: a must be > 0"),
    ("beta-b-negative", lambda f: pp.Beta(1.0, -1.0), ValueError, r"Beta: b must be > 0"),
    (
        "mvn-not-psd",
        lambda f: mvn([0, 0], [[1, 2], [2, 1]]),
        ValueError,
        r"MultivariateNormal: cov must be positive semi-definite",
    ),
    (
        "mvn-wrong-shape",
        lambda f: mvn([0, 0, 0], np.eye(2)),
        ValueError,
        r"MultivariateNormal: cov must have shape \(3, 3\).*\(2, 2\)",
    ),
    (
        "mvn-not-symmetric",
        lambda f: mvn([0, 0], [[1, 0.5], [0, 1]]),
        ValueError,
        r"MultivariateNormal: cov must be symmetric",
    ),
    (
        "mvn-matrix-mean",
        lambda f: mvn(np.zeros((2, 2)), np.eye(2)),
        ValueError,
        r"MultivariateNormal: mean must be a 1-d vector",
    ),
    (
        "bootstrap-no-rows",
        lambda f: pp.BootstrapReplicateDistribution(np.zeros((0, 3))),
        ValueError,
        r"source has no rows",
    ),
    (
        "mixture-shapes-differ",
        lambda f: pp.MixtureDistribution([pp.Normal(0.0, 1.0), mvn([0, 0], np.eye(2))]),
        ValueError,
        r"different event shapes",
    ),
    (
        "empirical-weights-shape",
        lambda f: pp.EmpiricalDistribution([1.0, 2.0, 3.0], weights=[1.0, 2.0]),
        ValueError,
        r"weights must have shape \(3,\)",
    ),
    # -- reliability options ---------------------------------------------------------
    ("timeout-negative", lambda f: wf(f, timeout=-1), ValueError, r"timeout must be > 0.*-1"),
    ("timeout-text", lambda f: wf(f, timeout="soon"), TypeError, r"timeout.*'soon'"),
    ("checkpoint-number", lambda f: wf(f, checkpoint=123), TypeError, r"checkpoint.*123"),
    ("resources-text", lambda f: wf(f, resources="gpu"), TypeError, r"resources.*'gpu'"),
    ("progress-text", lambda f: wf(f, progress="yes"), TypeError, r"progress.*'yes'"),
    ("backend-number", lambda f: wf(f, backend=42), TypeError, r"backend must be .*42"),
    # -- choosing and reaching backends ---------------------------------------------
    (
        "backend-option-misspelled",
        lambda f: pp.use_backend("prefect-ray", adress="auto"),
        TypeError,
        r"backend 'prefect-ray': unknown option 'adress'\. Did you mean 'address'",
    ),
    (
        "max-workers-zero",
        lambda f: pp.use_backend("prefect", max_workers=0),
        ValueError,
        r"max_workers must be a positive int, got 0",
    ),
    (
        "ray-address-malformed",
        lambda f: pp.use_backend("prefect-ray", address="ray:/head"),
        ValueError,
        r"Ray address must be .*'ray:/head'",
    ),
    (
        "dask-address-no-scheme",
        lambda f: pp.use_backend("prefect-dask", address="127.0.0.1:8786"),
        ValueError,
        r"Dask address .*tcp://.*'127\.0\.0\.1:8786'",
    ),
    (
        "dask-address-unreachable",
        lambda f: wf(f, backend=unstarted("prefect-dask", address="tcp://127.0.0.1:9"))(
            x=pp.sweep([1.0])
        ),
        pp.BackendConnectionError,
        r"cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:9': nothing listens",
    ),
    (
        "ray-address-unreachable",
        lambda f: wf(f, backend=unstarted("prefect-ray", address="127.0.0.1:9"))(x=pp.sweep([1.0])),
        pp.BackendConnectionError,
        r"cannot reach the Ray head \(GCS\) at '127\.0\.0\.1:9'.*ray start --head",
    ),
    (
        "unpicklable-argument",
        lambda f: wf(f, backend=unstarted("prefect-dask"))(x=pp.sweep([1.0]), y=threading.Lock()),
        TypeError,
        r"argument 'y' of f\(\) cannot be pickled, so backend 'prefect-dask'.*_thread\.lock",
    ),
    (
        "unpicklable-function",
        lambda f: wf(_holding_a_lock(f), backend=unstarted("prefect-ray"))(x=pp.sweep([1.0])),
        TypeError,
        r"function f\(\) cannot be pickled, so backend 'prefect-ray'",
    ),
]


# -- second round (issue 15): where a mistake came from, and what the fuzzer found --
# Each "fuzz F<n>" case is a failure tests/test_fuzz.py found before the fix;
# the comment gives what it raised then.


def nested(depth):
    """A list nested ``depth`` deep."""
    value = [1.0]
    for _ in range(depth - 1):
        value = [value]
    return value


def holding_itself():
    """``[1.0, [...]]``: a list that contains itself."""
    loop = [1.0]
    loop.append(loop)
    return loop


class NegativeLen:
    """A broken sequence: its ``__len__`` returns -1."""

    def __len__(self):
        return -1

    def __iter__(self):
        return iter([1.0])


def in_env(name, value, thunk):
    """Run ``thunk()`` with environment variable ``name`` set to ``value``."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        return thunk()
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


_JUNK_ROOT = tempfile.mkdtemp(prefix="pp-bad-input-")
atexit.register(shutil.rmtree, _JUNK_ROOT, True)


def junk_checkpoint(files):
    """A fresh checkpoint directory holding ``files`` ({name: bytes})."""
    directory = Path(tempfile.mkdtemp(dir=_JUNK_ROOT))
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return directory


def with_checksum(payload):
    """A checkpoint file's header (magic and SHA-256) over ``payload``."""
    digest = hashlib.sha256(payload).hexdigest().encode()
    return b"probpipe-checkpoint 1 sha256=" + digest + b"\n" + payload


CASES += [
    # -- the issue's own cases ---------------------------------------------------
    (
        "engine-name-dask",
        lambda f: pp.use_backend("dask"),
        pp.BackendNotFoundError,
        r"^unknown backend 'dask'\. Did you mean 'prefect-dask'\? Known: .*sequential\.$",
    ),
    (
        "underscore-for-dash",
        lambda f: pp.use_backend("prefect_ray"),
        pp.BackendNotFoundError,
        r"^unknown backend 'prefect_ray'\. Did you mean 'prefect-ray'\?",
    ),
    (
        "dash-left-out",
        lambda f: pp.use_backend("prefectray"),
        pp.BackendNotFoundError,
        r"Did you mean 'prefect-ray'\?",
    ),
    (
        "capitalized-name",
        lambda f: pp.use_backend("Sequential"),
        pp.BackendNotFoundError,
        r"Did you mean 'sequential'\?",
    ),
    (
        "option-to-backend-without-options",
        lambda f: pp.use_backend("sequential", foo=1),
        TypeError,
        r"^unknown option 'foo': backend 'sequential' takes no options\.$",
    ),
    (
        "environment-variable-typo",
        lambda f: in_env("PROBPIPE_BACKEND", "prefect-rey", lambda: wf(f)(SpyNormal(0.0, 1.0))),
        pp.BackendNotFoundError,
        r"^unknown backend 'prefect-rey' \(environment variable PROBPIPE_BACKEND\)\. "
        r"Did you mean 'prefect-ray'\?",
    ),
    # -- fuzz F1: a long value was echoed whole (5,000 to 11,000 characters) ---
    (
        "long-option-value",
        lambda f: wf(f, chunksize="x" * 5000),
        TypeError,
        r"^chunksize must be a positive int, 'auto' or None, got 'x{50,60}\.\.\. "
        r"\(str of length 5000\)$",
    ),
    (
        "long-backend-name",
        lambda f: pp.use_backend("x" * 5000),
        pp.BackendNotFoundError,
        r"^unknown backend 'x+\.\.\. \(str of length 5000\)\. Known: [^?]*$",
    ),
    (
        "long-record-name",
        lambda f: pp.Record(name=list(range(2000)), X=np.zeros(3)),
        TypeError,
        r"^Record name must be a string or None, got \[0, 1, 2, .{0,60} \(list of length 2000\)$",
    ),
    # -- fuzz F2, F3, F23: values NumPy accepts where an option wants a word or a count --
    # F2: ValueError: The truth value of an empty array is ambiguous. ...
    ("chunksize-array", lambda f: wf(f, chunksize=np.array([])), TypeError, r"chunksize.*array"),
    # F3: the same ValueError
    ("on-error-array", lambda f: wf(f, on_error=np.array([])), ValueError, r"on_error.*array"),
    # F23: accepted, then the call raised TypeError: int() argument must be ... timedelta
    (
        "chunksize-timedelta",
        lambda f: wf(f, chunksize=np.timedelta64(5, "s")),
        TypeError,
        r"chunksize must be .*timedelta64\(5,'s'\)",
    ),
    # F30: accepted, then the call raised TypeError: float() argument must be ... timedelta
    (
        "timeout-timedelta",
        lambda f: wf(f, timeout=np.timedelta64(5, "s")),
        TypeError,
        r"^timeout must be a number of seconds or None, got np\.timedelta64\(5,'s'\)$",
    ),
    # -- fuzz F4: numpy MemoryError "Unable to allocate 8.00 TiB" at the call ---
    (
        "n-huge",
        lambda f: wf(f, n_broadcast_samples=2**40),
        ValueError,
        r"^n_broadcast_samples must be at most 100,000,000, got 1,099,511,627,776$",
    ),
    (
        "rows-beyond-limit",
        lambda f: wf(f, n_broadcast_samples=10_000)(
            SpyNormal(0.0, 1.0), y=pp.sweep(range(100_000))
        ),
        ValueError,
        r"^this call would run 1,000,000,000 rows \(n_broadcast_samples=10,000, "
        r"sweep 'y': 100,000\); a call runs at most 100,000,000 rows\. Split it",
    ),
    (
        "draw-beyond-memory",  # 10^8 replicates of 10^6 rows: 400 TB of indices
        lambda f: wf(f, n_broadcast_samples=100_000_000)(
            pp.BootstrapReplicateDistribution(np.zeros(1_000_000))
        ),
        ValueError,
        r"^drawing n_broadcast_samples=100,000,000 rows of BootstrapReplicateDistribution.* "
        r"needs more memory than this machine has; lower n_broadcast_samples$",
    ),
    # -- fuzz F5: the message ran over two lines (an array's repr) ---------------
    (
        "array-shown-on-one-line",
        lambda f: pp.Beta(1.0, np.zeros((2, 1), np.float16)),
        ValueError,
        r"^Beta: b must be > 0, got <float16 array of shape \(2, 1\)>$",
    ),
    # -- fuzz F6, F7: nested lists as parameters ----------------------------------
    # F6: RuntimeError: this function only supports up to 32 dimensions but the array has 51.
    (
        "parameter-51-dimensions",
        lambda f: pp.Beta(1.0, nested(51)),
        ValueError,
        r"^Beta: parameter 'b' has 51 dimensions; at most 32 are supported$",
    ),
    # F7: RecursionError: maximum recursion depth exceeded while getting the repr of an object
    (
        "parameter-nested-3000-deep",
        lambda f: pp.Beta(0.0, nested(3000)),
        TypeError,
        r"^Beta: parameter 'b' must be an array, got .*which is not one",
    ),
    # F31: accepted, with a ComplexWarning, the imaginary part silently dropped
    (
        "parameter-complex-in-object-array",
        lambda f: pp.Normal(np.array([1j, 1.0], object)),
        TypeError,
        r"^Normal: parameter 'loc' must be real numbers, got array\(\[1j, 1\.0\], dtype=object\)$",
    ),
    # F32: a field named "\n" split the message over two lines
    (
        "record-field-name-with-newline",
        lambda f: pp.BootstrapReplicateDistribution(
            pp.Record(**{"": np.zeros(0), "\n": np.zeros(3)})
        ),
        ValueError,
        r"^Record fields must have equal lengths for row-wise use, got ''=0, '\\n'=3$",
    ),
    # -- fuzz F8, F15, F20: mixture components that are not a list -----------------
    # F8: TypeError: 'NoneType' object is not iterable
    (
        "mixture-of-none",
        lambda f: pp.MixtureDistribution(None),
        TypeError,
        r"^MixtureDistribution: components must be a list of probpipe distributions, got None$",
    ),
    # F15: TypeError: iteration over a 0-d array
    (
        "mixture-of-0d-array",
        lambda f: pp.MixtureDistribution(np.array(0.0)),
        TypeError,
        r"MixtureDistribution: components must be a list .*got array\(0\.\)$",
    ),
    # F20: ValueError: __len__() should return >= 0
    (
        "mixture-of-broken-sequence",
        lambda f: pp.MixtureDistribution(NegativeLen()),
        TypeError,
        r"^MixtureDistribution: could not read the components .*__len__\(\) should return >= 0",
    ),
    # -- fuzz F9: rows that have no mean (the fuzzer's [None, None] now means NaN) --
    (
        "bootstrap-mean-of-text",
        lambda f: pp.BootstrapReplicateDistribution(np.array(["a", "b"])).mean(),
        TypeError,
        r"^BootstrapReplicateDistribution\.mean\(\): the source is not numeric \(dtype <U1\)",
    ),
    # -- fuzz F10: ValueError: setting an array element with a sequence. ... inhomogeneous
    (
        "bootstrap-of-list-holding-itself",
        lambda f: pp.BootstrapReplicateDistribution(holding_itself()),
        TypeError,
        r"^BootstrapReplicateDistribution: source must be an array, got \[1\.0, \[\.\.\.\]\], "
        r"which is not one",
    ),
    # -- fuzz F11: ValueError: __len__() should return >= 0 -----------------------
    (
        "sweep-of-broken-sequence",
        lambda f: pp.sweep(NegativeLen()),
        TypeError,
        r"^sweep\(\) could not read the values of .*ValueError: __len__\(\) should return >= 0$",
    ),
    # -- fuzz F13: IndexError: only integers, slices ... are valid indices ----------
    (
        "provenance-from-array",
        lambda f: pp.Provenance.from_dict(np.array([None], object)),
        ValueError,
        r"^Provenance\.from_dict needs a dict as made by Provenance\.to_dict\(\), got ndarray",
    ),
    (
        "provenance-parent-not-a-dict",
        lambda f: pp.Provenance.from_dict({"operation": "broadcast", "parents": [1]}),
        ValueError,
        r"^Provenance\.from_dict: parents\[0\] must be a dict with name, type and fingerprint",
    ),
    # -- fuzz F14, F25, F26: checkpoint directories with junk in them ------------------
    # F14: AttributeError: 'NoneType' object has no attribute 'get'
    (
        "checkpoint-file-of-none",
        lambda f: wf(
            f,
            checkpoint=junk_checkpoint(
                {"rows-00000000-00000000.ckpt": with_checksum(pickle.dumps(None))}
            ),
        )(x=pp.sweep([1.0, 2.0])),
        pp.CheckpointError,
        r"rows-00000000-00000000\.ckpt is not a probpipe checkpoint \(it holds NoneType None\)",
    ),
    # F25: TypeError: 'NoneType' object is not iterable
    (
        "checkpoint-manifest-inputs-null",
        lambda f: wf(
            f, checkpoint=junk_checkpoint({"manifest.json": b'{"": null, "inputs": null}'})
        )(x=pp.sweep([1.0, 2.0])),
        pp.CheckpointError,
        r"manifest\.json|holds rows of a different call",
    ),
    # F26: AttributeError: 'list' object has no attribute 'get'
    (
        "checkpoint-manifest-inputs-list",
        lambda f: wf(
            f, checkpoint=junk_checkpoint({"manifest.json": b'{"format": 2, "inputs": []}'})
        )(x=pp.sweep([1.0, 2.0])),
        pp.CheckpointError,
        r"holds rows of a different call: function None there",
    ),
    (
        "checkpoint-manifest-a-list",
        lambda f: wf(f, checkpoint=junk_checkpoint({"manifest.json": b"[1, 2]"}))(
            x=pp.sweep([1.0, 2.0])
        ),
        pp.CheckpointError,
        r"manifest\.json is not a probpipe manifest \(it holds list \[1, 2\]\)",
    ),
    ("checkpoint-empty-path", lambda f: wf(f, checkpoint=""), ValueError, r"checkpoint must name"),
    (
        "checkpoint-nul-in-path",
        lambda f: wf(f, checkpoint="runs\x00boot"),
        ValueError,
        r"checkpoint must name a directory, got 'runs\\x00boot'",
    ),
    # -- found reviewing the messages: the error listed FULL but refused "FULL" --
    (
        "provenance-mode-unknown",
        lambda f: setattr(pp.provenance_config, "mode", "none"),
        ValueError,
        r"^provenance mode must be one of FULL, LIGHTWEIGHT, OFF \(a ProvenanceMode, or its name "
        r"in any case\), got 'none'$",
    ),
    (
        "timeout-infinite",
        lambda f: wf(f, timeout=float("inf")),
        ValueError,
        r"timeout must be a finite number of seconds, got inf; use timeout=None",
    ),
    (
        "timeout-beyond-float",
        lambda f: wf(f, timeout=10**400),
        ValueError,
        r"timeout must be a finite number of seconds",
    ),
]


# Fuzz findings whose input is valid: these raised before the fix and now work.
def test_fuzz_findings_that_now_work():
    f = pp.WorkflowFunction(lambda x, y=1.0: 0.0, seed=1)
    # F12: RecursionError in the provenance fingerprint of a list holding itself
    assert len(f(x=pp.sweep(holding_itself()))) == 2
    # F18: TypeError: memoryview: cannot cast view with zeros in shape or strides
    assert len(f(x=pp.sweep([np.zeros((0, 0))]))) == 1
    # F19: ValueError: cannot include dtype 'M' in a buffer
    assert len(f(x=pp.sweep([np.datetime64("2020-01-01")]))) == 1
    # F9: TypeError: unsupported operand type(s) for +: 'NoneType' and 'NoneType';
    # NumPy reads None as NaN, so the mean of such rows is NaN
    boot = pp.BootstrapReplicateDistribution(np.array([None, None], object))
    assert np.isnan(boot.mean()).all()
    # F17: ZeroDivisionError inside np.average for rows of no values
    assert pp.BootstrapReplicateDistribution(np.zeros((1, 0))).mean().shape == (1, 0)
    # F16, F21: a Record's repr showed long fields and names whole (5,000+ characters)
    assert len(repr(pp.Record(name="n" * 5000, x="x" * 5000))) < 200
    # Review: the mode's error message named FULL, LIGHTWEIGHT, OFF; those names now work
    before = pp.provenance_config.mode
    try:
        pp.provenance_config.mode = "OFF"
        assert pp.provenance_config.mode is pp.ProvenanceMode.OFF
    finally:
        pp.provenance_config.mode = before
    # F22: RecursionError in repr() of a sweep over a list nested 3000 deep
    assert repr(pp.sweep(nested(3000))) == "sweep([<list object>])"


@pytest.mark.parametrize(
    "array",
    [np.arange(6.0).reshape(2, 3), np.arange(6.0).reshape(2, 3).T, np.arange(4), np.ones(3, bool)],
    ids=["float", "transposed", "int", "bool"],
)
def test_fingerprints_of_plain_arrays_are_unchanged_by_the_fix(array):
    """F18/F19's fix reads array bytes another way; checkpoints written before still match."""
    from probpipe._provenance import fingerprint

    before = hashlib.sha256(f"array:{array.dtype.str}:{array.shape};".encode())
    before.update(memoryview(np.ascontiguousarray(array)).cast("B"))  # how it was read
    assert fingerprint(array) == before.hexdigest()[:32]


def _holding_a_lock(f):
    """``f`` plus a reference to a lock, which no pickler can ship."""
    lock = threading.Lock()

    def wrapped(x, y=1.0, rng=None):
        with lock:
            return f(x, y)

    wrapped.__name__ = "f"
    return wrapped


@pytest.mark.parametrize(
    ("trigger", "expected", "pattern"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_fails_before_anything_runs(trigger, expected, pattern):
    ran = []

    def f(x, y=1.0, rng=None):
        ran.append((x, y))
        return float(x) * y

    counter = MapCounter()
    pp.register_plugin(counter)
    SpyNormal.draws.clear()
    try:
        with pytest.raises(expected, match=pattern):
            trigger(f)
    finally:
        pp.unregister_plugin(counter)
    assert ran == [], "the function ran"
    assert SpyNormal.draws == [], "a distribution was sampled"
    assert counter.started == 0, "rows were dispatched"
    assert pp.current_backend().name == "sequential"
