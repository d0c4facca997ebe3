"""Property-based fuzzing of the public surface (hypothesis).

The property, for every public constructor and option: given any value (wrong
type, shape, sign, size or encoding), probpipe either works, or raises a
TypeError, ValueError or probpipe error whose one-line message names the
culprit, before anything is sampled or dispatched. Never a MemoryError,
RecursionError, AttributeError, KeyError, a hang, or an engine's (NumPy's,
pickle's, the OS's) own exception.

Only pure-Python entry points and the ``sequential`` backend are fuzzed: no
engine is started here.

Profiles (environment variable ``PROBPIPE_FUZZ_PROFILE``):

``ci`` (default)
    A few hundred examples per property, derandomized so CI sees the same
    inputs every run; the whole file takes well under a minute.
``long``
    ``make fuzz``: thousands of random examples per property, new ones every
    run. Run it after changing validation code.

Every distinct failure the fuzzer found has a plain regression case in
tests/test_bad_input.py.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from datetime import timedelta
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import probpipe as pp

PROFILES = {
    # No per-example deadline in CI: on a loaded 2-core machine a timing check
    # only adds flaky failures (hypothesis replays a slow example and calls it
    # flaky when the replay is fast). A hang still fails, through the per-test
    # timeout below. The long profile keeps a deadline to point at slow paths.
    "ci": settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    ),
    "long": settings(
        max_examples=5000,
        deadline=timedelta(seconds=10),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    ),
}
PROFILE = os.environ.get("PROBPIPE_FUZZ_PROFILE", "ci")
if PROFILE not in PROFILES:
    raise ValueError(
        f"unknown fuzz profile {PROFILE!r} (environment variable PROBPIPE_FUZZ_PROFILE). "
        f"Known: {', '.join(PROFILES)}."
    )
fuzz = PROFILES[PROFILE]
# A hang is a failure too; the long profile runs far more examples.
hang_limit = pytest.mark.timeout(600 if PROFILE == "long" else 120)

MAX_MESSAGE = 600  # characters: a message is one readable line, not a dump


class Boom(Exception):
    """Raised by the hostile objects below: the user's own exception may surface."""


# ---------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------


def assert_clear(exc: BaseException, *culprits: str) -> None:
    """``exc`` is a clear user-facing error: right type, one line, names a culprit."""
    if isinstance(exc, Boom):
        return  # the user's object raised it (its __len__, __iter__...): fine as is
    assert isinstance(exc, (TypeError, ValueError, pp.ProbpipeError)), (
        f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
    )
    module = type(exc).__module__
    assert module == "builtins" or module.startswith("probpipe"), (
        f"an engine's own exception reached the user: {module}.{type(exc).__qualname__}: {exc}"
    )
    message = str(exc)
    assert "\n" not in message, f"message is not one line: {message!r}"
    assert len(message) <= MAX_MESSAGE, f"message is {len(message)} characters: {message[:200]!r}"
    lowered = message.lower()
    assert any(c.lower() in lowered for c in culprits), (
        f"message names none of {culprits}: {message!r}"
    )


def outcome(thunk, *culprits: str):
    """Run ``thunk``; return its value, or None after checking the error is clear."""
    try:
        return thunk()
    except Exception as exc:
        assert_clear(exc, *culprits)
        return None


# ---------------------------------------------------------------------------
# Strategies: wrong types, shapes, signs, sizes and encodings
# ---------------------------------------------------------------------------


class Hostile:
    """An object whose every protocol method raises the user's own exception."""

    def __init__(self, what: str):
        self.what = what

    def __repr__(self):
        if self.what == "repr":
            raise Boom("repr")
        return f"Hostile({self.what})"

    def __len__(self):
        if self.what == "len":
            raise Boom("len")
        return -1 if self.what == "negative-len" else 3

    def __iter__(self):
        if self.what == "iter":
            raise Boom("iter")
        return iter([1.0, 2.0, 3.0])

    def __float__(self):
        raise Boom("float")

    def __index__(self):
        raise Boom("index")


def _self_referencing_list():
    loop: list = [1.0]
    loop.append(loop)
    return loop


class DeepList(list):
    """A list nested ``depth`` deep; hypothesis reports it by its depth."""

    def _repr_pretty_(self, printer, cycle):
        printer.text(f"_deep_list({self.depth})")


def _deep_list(depth: int):
    deep: list = [1.0]
    for _ in range(depth - 1):
        deep = [deep]
    outer = DeepList([deep])
    outer.depth = depth
    return outer


numpy_scalars = st.sampled_from(
    [
        np.int64(3),
        np.uint8(200),
        np.int8(-5),
        np.float32(2.5),
        np.float16(np.inf),
        np.float64(np.nan),
        np.bool_(True),
        np.complex64(1j),
        np.datetime64("2020-01-01"),
        np.timedelta64(5, "s"),
        np.str_("x"),
        np.bytes_(b"x"),
    ]
)

huge_ints = st.sampled_from([2**40, 2**62, 2**63, 2**64 + 1, 10**30, 10**400, -(10**400)])

plain_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10, max_value=10),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=12),
    numpy_scalars,
)

odd_objects = st.one_of(
    st.sampled_from(["repr", "len", "negative-len", "iter", "float"]).map(Hostile),
    st.builds(_self_referencing_list),
    st.sampled_from([50, 3000]).map(_deep_list),
    st.just("x" * 5000),  # a long string
    st.just(list(range(2000))),  # a long list
    st.just(b"\xff\xfe\x00"),
    st.just("\ud800"),  # a lone surrogate: cannot be encoded
    st.just(object()),
    st.just(int),
    st.just(lambda: None),
    st.just(range(3)),
    st.just({1.0, 2.0}),
    st.just(frozenset()),
    st.just({"a": 1.0}),
    st.just(iter([1.0, 2.0])),
    st.just(Path("/tmp")),
)

array_dtypes = st.one_of(
    hnp.floating_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.datetime64_dtypes(),
    hnp.unicode_string_dtypes(max_len=3),
    hnp.byte_string_dtypes(max_len=3),
)
small_arrays = hnp.arrays(
    dtype=array_dtypes,
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
)
float_arrays = hnp.arrays(
    dtype=np.float64,
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    elements=st.floats(-1e6, 1e6) | st.sampled_from([0.0, -1.0, np.inf, np.nan, 1e308]),
)
object_arrays = st.lists(plain_scalars, max_size=4).map(lambda xs: np.array([*xs, None], object))
ragged = st.sampled_from([[[1.0, 2.0], [3.0]], [1.0, [2.0, 3.0]], [[1.0], [[2.0]]]])
containers = st.one_of(
    st.lists(plain_scalars, max_size=4),
    st.tuples(plain_scalars, plain_scalars),
    st.dictionaries(st.text(max_size=4), plain_scalars, max_size=3),
    ragged,
)

anything = st.one_of(
    plain_scalars, small_arrays, float_arrays, object_arrays, containers, odd_objects
)
"""Any value a user might pass by mistake."""

numbers = st.one_of(
    st.floats(-1e6, 1e6),
    st.sampled_from([0.0, -1.0, 1e-300, 1e308, np.inf, -np.inf, np.nan]),
    st.integers(-5, 5),
)
numeric_like = st.one_of(numbers, float_arrays, st.lists(numbers, min_size=0, max_size=4))


def maybe_anything(good):
    """Mostly well-formed values, sometimes anything at all."""
    return st.one_of(good, good, anything)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class SpyNormal(pp.Normal):
    """A Normal that counts its draws (nothing must be sampled before an error)."""

    draws = 0

    def sample(self, n, rng=None):
        SpyNormal.draws += 1
        return super().sample(n, rng)


def spy_function():
    """A workflow-able function that records each run."""
    ran: list = []

    def f(x, y=1.0):
        ran.append(x)
        return 0.0

    return f, ran


@pytest.fixture(autouse=True, scope="module")
def _warm():
    """Load the plugin registry once, so the first example is not timed with it."""
    pp.available_backends()


# ---------------------------------------------------------------------------
# WorkflowFunction options
# ---------------------------------------------------------------------------

OPTION_VALUES = {
    "n_broadcast_samples": st.one_of(st.integers(-3, 6), huge_ints),
    "seed": st.one_of(st.none(), st.integers(-3, 2**70)),
    "backend": st.one_of(st.none(), st.sampled_from(["sequential", "sequental", "dask", ""])),
    "chunksize": st.one_of(st.none(), st.just("auto"), st.integers(-2, 5), huge_ints),
    "on_error": st.sampled_from(["raise", "collect", "ignore", "RAISE"]),
    "retries": st.integers(-2, 3),
    "timeout": st.one_of(st.none(), st.floats(allow_nan=True), st.just(10**400)),
    "progress": st.one_of(st.none(), st.booleans()),
    "resources": st.one_of(st.none(), st.dictionaries(st.text(max_size=8), numbers, max_size=2)),
    "checkpoint": st.one_of(st.none(), st.just(""), st.just("\x00bad"), st.just(b"dir")),
}

option_sets = st.dictionaries(
    st.sampled_from(sorted(OPTION_VALUES)),
    st.none(),
    max_size=4,
).flatmap(
    lambda keys: st.fixed_dictionaries(
        {key: maybe_anything(OPTION_VALUES[key]) for key in keys},
    )
)


@hang_limit
@fuzz
@given(options=option_sets, unknown=st.one_of(st.none(), st.text(max_size=20)))
def test_workflow_options(options, unknown):
    if unknown is not None:
        assume(unknown not in OPTION_VALUES)
        options = {**options, unknown: 1}
    f, ran = spy_function()
    culprits = [*options, "option"]
    wf = outcome(lambda: pp.WorkflowFunction(f, **options), *culprits)
    decorated = outcome(lambda: pp.workflow_function(**options)(f), *culprits)
    assert (wf is None) == (decorated is None), "WorkflowFunction and decorator disagree"
    rebuilt = outcome(lambda: pp.WorkflowFunction(f).with_options(**options), *culprits)
    assert (wf is None) == (rebuilt is None), "WorkflowFunction and with_options disagree"
    if wf is None:
        return
    repr(wf)
    cloudpickle.loads(cloudpickle.dumps(wf))
    # Call it (sequential only; no checkpoint or timeout games in this property).
    wf = wf.with_options(backend=None, checkpoint=None, timeout=None, progress=False)
    SpyNormal.draws = 0
    result = outcome(lambda: wf(SpyNormal(0.0, 1.0), y=pp.sweep([1.0, 2.0])), *culprits)
    if result is None:
        assert ran == [], "the function ran before the error"
        assert SpyNormal.draws == 0, "a distribution was sampled before the error"
    else:
        assert len(result) == 2


# ---------------------------------------------------------------------------
# Distributions
# ---------------------------------------------------------------------------

DISTRIBUTIONS = {
    "Normal": (pp.Normal, ("loc", "scale")),
    "Uniform": (pp.Uniform, ("low", "high")),
    "Gamma": (pp.Gamma, ("shape", "rate")),
    "Beta": (pp.Beta, ("a", "b")),
    "MultivariateNormal": (pp.MultivariateNormal, ("mean", "cov")),
    "EmpiricalDistribution": (pp.EmpiricalDistribution, ("samples", "weights")),
}

# Values that are not numbers at all: a distribution must refuse them.
_NOT_NUMBERS = (str, bytes, bool, np.bool_, type(None), complex, np.complexfloating, dict, set)


def _not_numeric(value) -> bool:
    if isinstance(value, _NOT_NUMBERS):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "bcSUMm"
    return False


def exercise(dist) -> None:
    """A distribution that was built must be usable: draw, summarize, show."""
    out = dist.sample(3, rng=0)
    assert out.shape[0] == 3
    assert len(repr(dist)) < 2000
    for method in (dist.mean, dist.var):
        try:
            method()
        except NotImplementedError:
            pass


@hang_limit
@fuzz
@given(
    name=st.sampled_from(sorted(DISTRIBUTIONS)),
    data=st.data(),
)
def test_distribution_parameters(name, data):
    cls, params = DISTRIBUTIONS[name]
    kwargs = {p: data.draw(maybe_anything(numeric_like), label=p) for p in params}
    dist = outcome(lambda: cls(**kwargs), name)
    if dist is None:
        return
    # Anything that is not a number at all must have been refused.
    if name != "EmpiricalDistribution":
        assert not any(_not_numeric(v) for v in kwargs.values()), f"{name} accepted {kwargs!r}"
    outcome(lambda: exercise(dist), name)


@hang_limit
@fuzz
@given(
    components=maybe_anything(
        st.lists(st.builds(pp.Normal, st.floats(-5, 5), st.floats(0.1, 5)), max_size=3)
    ),
    weights=maybe_anything(st.one_of(st.none(), numeric_like)),
)
def test_mixture_parameters(components, weights):
    mix = outcome(lambda: pp.MixtureDistribution(components, weights), "MixtureDistribution")
    if mix is not None:
        outcome(lambda: exercise(mix), "MixtureDistribution")


# ---------------------------------------------------------------------------
# Records and bootstrap sources
# ---------------------------------------------------------------------------

field_names = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["name", "fields", "replace", "_private", "__class__", "X"]),
)


@hang_limit
@fuzz
@given(
    name=maybe_anything(st.one_of(st.none(), st.text(max_size=8))),
    fields=st.dictionaries(field_names, maybe_anything(numeric_like), max_size=3),
)
def test_record_fields(name, fields):
    fields.pop("name", None)
    culprits = ["Record", "Bootstrap", *(repr(k) for k in fields)]
    rec = outcome(lambda: pp.Record(name=name, **fields), *culprits)
    if rec is None:
        return
    assert rec.fields == tuple(fields)
    assert len(repr(rec)) < 2000
    n_rows = outcome(rec.n_rows, *culprits)
    boot = outcome(lambda: pp.BootstrapReplicateDistribution(rec), *culprits)
    assert (n_rows is None or n_rows == 0) == (boot is None)
    if boot is not None:
        draw = boot.sample(2, rng=0)
        assert all(isinstance(r, pp.Record) and r.n_rows() == n_rows for r in draw)
        for key in rec.fields:
            assert boot[key].sample(2, rng=0).shape[:2] == (2, n_rows)
    try:
        cloudpickle.dumps(fields)
    except Exception:
        return  # the values themselves do not pickle (pickle's own depth limit, say)
    assert cloudpickle.loads(cloudpickle.dumps(rec)).fields == rec.fields


@hang_limit
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # moments of 1e308 rows overflow: inf
@fuzz
@given(source=anything)
def test_bootstrap_sources(source):
    boot = outcome(lambda: pp.BootstrapReplicateDistribution(source), "Bootstrap")
    if boot is not None:
        outcome(lambda: exercise(boot), "Bootstrap")


# ---------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------


@hang_limit
@fuzz
@given(
    values=maybe_anything(st.lists(anything, max_size=4)),
    other=st.one_of(st.none(), st.lists(st.integers(), min_size=0, max_size=3)),
)
def test_sweep(values, other):
    s = outcome(lambda: pp.sweep(values), "sweep")
    if s is None:
        return
    repr(s)
    f, ran = spy_function()
    wf = pp.WorkflowFunction(f, seed=1)
    kwargs = {"x": s} if other is None else {"x": s, "y": pp.sweep(other)}
    result = outcome(lambda: wf(**kwargs), "sweep", "'x'", "'y'")
    if result is None:
        assert ran == []
        return
    assert len(result) == len(s) * (1 if other is None else len(other))
    json.dumps(result.provenance.to_dict())


# ---------------------------------------------------------------------------
# use_backend names and options
# ---------------------------------------------------------------------------

KNOWN_BACKENDS = ["sequential", "prefect", "prefect-dask", "prefect-ray", "ray"]
backend_names = st.one_of(
    st.sampled_from(KNOWN_BACKENDS),
    st.sampled_from(["dask", "Ray", "prefect_ray", "prefectray", "SEQUENTIAL", " sequential"]),
    st.text(max_size=16),
)
option_keys = st.one_of(
    st.sampled_from(["address", "n_workers", "max_workers", "num_cpus", "init_options"]),
    st.text(max_size=10),
)
# Values of an engine backend's own options stay short and flat: those
# validators live with the engines (engines/, backends/prefect.py, the Ray
# plugin) and are fuzzed here for types, signs and names, not for how they
# show a 5,000-character or nested value.
flat_values = st.one_of(
    plain_scalars,
    st.lists(plain_scalars, max_size=3),
    st.dictionaries(st.text(max_size=6), plain_scalars, max_size=2),
)


def _accepted_options(name) -> tuple[str, ...]:
    from probpipe._registry import registry

    cls = registry.backends().get(name, (None,))[0] if isinstance(name, str) else None
    return tuple(getattr(cls, "option_defaults", {}))


@hang_limit
@fuzz
@given(name=maybe_anything(backend_names), data=st.data())
def test_use_backend(name, data):
    accepted = _accepted_options(name)
    keys = data.draw(st.lists(option_keys, max_size=2, unique=True), label="keys")
    options = {
        key: data.draw(flat_values if key in accepted else anything, label=key) for key in keys
    }
    culprits = ["backend", *options]
    if isinstance(name, str):
        culprits.append(repr(name))
    before = pp.current_backend()
    choice = outcome(lambda: pp.use_backend(name, **options), *culprits)
    if choice is None:
        assert pp.current_backend() is before, "a refused backend was selected anyway"
        return
    # Entered and left again: nothing of an engine is started by selecting it.
    with choice as backend:
        assert backend.name == name
        if name == "sequential":
            f, _ = spy_function()
            assert len(pp.WorkflowFunction(f)(x=pp.sweep([1, 2]))) == 2
    assert pp.current_backend() is before


@hang_limit
@fuzz
@given(name=st.one_of(backend_names, st.text(max_size=80)))
def test_unknown_name_message_shape(name):
    """What was wrong, where from, and a known name or none: one line, one sentence shape."""
    from probpipe._suggest import ENGINE_ALIASES, shown, unknown_name_message

    known = ["prefect", "prefect-dask", "prefect-ray", "sequential"]
    assume(name not in known)
    message = unknown_name_message(
        "backend", name, known, source="environment variable X", aliases=ENGINE_ALIASES
    )
    assert message.startswith(f"unknown backend {shown(name)} (environment variable X). ")
    assert message.endswith(f"Known: {', '.join(known)}.")
    assert "\n" not in message and len(message) < 250
    if "Did you mean" in message:
        assert message.split("Did you mean '")[1].split("'?")[0] in known


def test_suggestions_name_a_known_backend_or_none():
    """The "did you mean" of every fuzzed name is a known backend, never a made-up one."""
    from probpipe._suggest import ENGINE_ALIASES, suggest

    known = list(pp.available_backends())
    for name in [*ENGINE_ALIASES, "prefect_dask", "PREFECT-RAY", "sequental", "x" * 100, ""]:
        assert suggest(name, known, ENGINE_ALIASES) in (*known, None)
    assert suggest("dask", known, ENGINE_ALIASES) == "prefect-dask"
    assert suggest("ray", known, ENGINE_ALIASES) == "ray"  # the native plugin is installed
    assert suggest("ray", ["prefect-ray", "sequential"], ENGINE_ALIASES) == "prefect-ray"


# ---------------------------------------------------------------------------
# Provenance payloads
# ---------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
parent_payloads = st.one_of(
    st.fixed_dictionaries(
        {"name": st.text(max_size=6), "type": st.text(max_size=6), "fingerprint": st.text()}
    ),
    json_values,
)
provenance_payloads = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "operation": st.one_of(st.sampled_from(["broadcast", "sweep"]), json_values),
            "parents": st.one_of(st.lists(parent_payloads, max_size=3), json_values),
            "metadata": st.one_of(st.dictionaries(st.text(max_size=6), json_values), json_values),
        },
    ),
    json_values,
    anything,
)


@hang_limit
@fuzz
@given(payload=provenance_payloads)
def test_provenance_from_dict(payload):
    prov = outcome(lambda: pp.Provenance.from_dict(payload), "provenance")
    if prov is None:
        return
    text = prov.to_json()
    assert pp.Provenance.from_dict(json.loads(text)) == prov
    repr(prov)


@hang_limit
@fuzz
@given(value=st.one_of(st.sampled_from(["full", "FULL", "Lightweight", "off", "none"]), anything))
def test_provenance_mode(value):
    before = pp.provenance_config.mode
    try:
        outcome(lambda: setattr(pp.provenance_config, "mode", value), "provenance mode")
        assert isinstance(pp.provenance_config.mode, pp.ProvenanceMode)
    finally:
        pp.provenance_config.mode = before


# ---------------------------------------------------------------------------
# Checkpoint directories with junk in them
# ---------------------------------------------------------------------------

CHECKPOINT_NAMES = [
    "manifest.json",
    "rows-00000000-00000000.ckpt",
    "rows-00000000-00000001.ckpt",
    "rows-00000001-00000099.ckpt",
    "rows-0-0.ckpt",
    ".manifest.json.abc",
    "notes.txt",
]
MAGIC = b"probpipe-checkpoint 1 sha256="


def _with_checksum(payload: bytes) -> bytes:
    import hashlib

    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


junk_contents = st.one_of(
    st.binary(max_size=40),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "format": json_values,
            "fingerprint": json_values,
            "unseeded_fingerprint": json_values,
            "seed": json_values,
            "n_rows": json_values,
            "inputs": json_values,
        },
    ).map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: _with_checksum(pickle.dumps(v))),
    st.fixed_dictionaries(
        {}, optional={"call": json_values, "rows": json_values, "values": json_values}
    ).map(lambda d: _with_checksum(pickle.dumps(d))),
    st.just(None),  # a directory of that name
)


@hang_limit
@fuzz
@given(
    junk=st.dictionaries(st.sampled_from(CHECKPOINT_NAMES), junk_contents, max_size=3),
    seed=st.one_of(st.none(), st.just(7)),
    as_file=st.booleans(),
)
def test_checkpoint_directory_with_junk(junk, seed, as_file):
    with tempfile.TemporaryDirectory(prefix="pp-fuzz-") as tmp:
        directory = Path(tmp) / "ckpt"
        if as_file and not junk:
            directory.write_bytes(b"not a directory")
        else:
            directory.mkdir()
        for name, content in junk.items():
            if content is None:
                (directory / name).mkdir()
            else:
                (directory / name).write_bytes(content)
        f, ran = spy_function()
        wf = pp.WorkflowFunction(f, checkpoint=directory, seed=seed)
        result = outcome(lambda: wf(x=pp.sweep([1.0, 2.0])), "checkpoint")
        if result is None:
            assert ran == [], "rows ran before the checkpoint was refused"
        else:
            assert list(result) == [0.0, 0.0]


def test_profiles_are_bounded():
    """The CI profile stays small and fixed enough for `make test`'s budget."""
    assert PROFILES["ci"].max_examples <= 500
    assert PROFILES["ci"].derandomize
    assert PROFILES["long"].max_examples > PROFILES["ci"].max_examples
