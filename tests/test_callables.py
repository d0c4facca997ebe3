"""Any callable works on every backend (API.md section 1, "Any callable").

A ``def`` function, a lambda, a closure, a ``functools.partial``, a callable
object, a bound method and a NumPy ufunc give identical results on every
backend; engines get safe, readable run names; only the arguments the caller
gave are passed; a checkpoint knows its function by content, refuses one
written by a different function (saying what differs) and resumes an equal
one, in another process too; scripts piped on stdin or run with ``python -c``
work on process backends.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

import probpipe as pp
from probpipe._callables import (
    callable_identity,
    display_name,
    identity_differences,
    qualified_name,
)
from probpipe.engines import dask as dask_engine
from probpipe.testing import shared_backend
from support import REPO, run_script

# ---------------------------------------------------------------------------
# One callable of each kind (module level, so process backends can ship them
# by reference as well as by value).
# ---------------------------------------------------------------------------


def scaled(x, k=2.0):
    return k * x + 1.0


def make_shifted(shift):
    def shifted(x):
        return x + shift

    return shifted


class Model:
    def __init__(self, a):
        self.a = a

    def __call__(self, x):
        return self.a * x * x

    def fit(self, x):
        return self.a - x


def kinds() -> dict[str, object]:
    return {
        "def": scaled,
        "lambda": lambda x: 3.0 * x - 1.0,
        "closure": make_shifted(10.0),
        "partial": functools.partial(scaled, k=5.0),
        "callable object": Model(1.5),
        "bound method": Model(2.5).fit,
        "ufunc": np.exp,
    }


def run_kind(func, backend="sequential"):
    wf = pp.WorkflowFunction(func, n_broadcast_samples=8, seed=7, chunksize=3, backend=backend)
    return wf(pp.Normal(0.0, 1.0))


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("def", "scaled"),
        ("lambda", "lambda"),
        ("closure", "shifted"),
        ("partial", "partial(scaled)"),
        ("callable object", "Model.__call__"),
        ("bound method", "Model.fit"),
        ("ufunc", "exp"),
    ],
)
def test_display_names_are_readable(kind, name):
    assert display_name(kinds()[kind]) == name


def test_display_names_are_safe_for_engines_and_hold_no_address():
    extra = [
        functools.partial(lambda x, y: x + y, y=1),
        math.sqrt,
        [].append,
        np.random.default_rng(0).normal,
        Model,
        pp.WorkflowFunction(lambda x: x),
    ]
    for func in [*kinds().values(), *extra]:
        name = display_name(func)
        assert name and not set(name) & set("<>/%&{}[] "), name
        assert "0x" not in name and "0x" not in qualified_name(func), name
    assert display_name(extra[0]) == "partial(lambda)"
    assert display_name(extra[2]) == "list.append"


def test_a_ufunc_and_a_partial_in_a_sweep_are_named_in_errors():
    wf = pp.WorkflowFunction(functools.partial(scaled, k="two"), seed=1)
    with pytest.raises(TypeError) as info:
        wf(x=pp.sweep([1.0, 2.0]))
    assert any("row 0 of partial(scaled)()" in note for note in info.value.__notes__)


# ---------------------------------------------------------------------------
# Only the arguments the caller gave
# ---------------------------------------------------------------------------

_NOT_GIVEN = object()


def given_or_not(x, k=_NOT_GIVEN, **extra):
    """Tells a defaulted k apart from a given one, as ufuncs do for dtype/signature."""
    return (x, "default" if k is _NOT_GIVEN else k, sorted(extra))


def test_only_given_arguments_are_passed():
    wf = pp.WorkflowFunction(given_or_not, n_broadcast_samples=3, seed=2)
    assert wf(1.0) == given_or_not(1.0)
    rows = wf(pp.Uniform(0, 1)).items
    assert [r[1:] for r in rows] == [("default", [])] * 3
    rows = wf(pp.Uniform(0, 1), k=5, z=1).items
    assert [r[1:] for r in rows] == [(5, ["z"])] * 3


def test_defaults_are_recorded_in_provenance_though_not_passed():
    result = pp.WorkflowFunction(scaled, n_broadcast_samples=3, seed=2)(pp.Normal(0, 1))
    assert [p.name for p in result.provenance.parents] == ["x", "k"]


def test_ufunc_runs_as_a_plain_call_and_broadcast():
    assert pp.WorkflowFunction(np.exp)(1.0) == np.exp(1.0)
    got = pp.WorkflowFunction(np.add, n_broadcast_samples=4, seed=3)(pp.Normal(0, 1), 10.0)
    draws = pp.WorkflowFunction(lambda x: x, n_broadcast_samples=4, seed=3)(pp.Normal(0, 1))
    np.testing.assert_array_equal(got.samples, draws.samples + 10.0)


def test_a_builtin_without_a_signature_works():
    assert pp.WorkflowFunction(max)(3, 7, 5) == 7
    got = pp.WorkflowFunction(max, n_broadcast_samples=5, seed=1)(pp.Normal(0, 1), 0.0)
    assert (got.samples >= 0).all()


def test_a_callable_objects_attributes_do_not_replace_the_wrappers():
    class Clashing:
        options = "mine"
        func = "mine too"

        def __init__(self):
            self.signature = "and this"

        def __call__(self, x):
            return 2 * x

    wf = pp.WorkflowFunction(Clashing(), n_broadcast_samples=2, seed=1)
    assert wf.options["n_broadcast_samples"] == 2
    np.testing.assert_array_equal(wf(pp.Normal(0, 1)).samples.shape, (2,))


def test_a_functions_own_attributes_stay_readable_on_the_wrapper():
    def tagged(x):
        return x

    tagged.unit = "kg"
    assert pp.WorkflowFunction(tagged).unit == "kg"


# ---------------------------------------------------------------------------
# Identity by content, and what differs
# ---------------------------------------------------------------------------

SCALE = 3.0


def uses_global(x):
    return SCALE * helper(x)


def helper(x):
    return x + 1


def test_identity_is_equal_for_equal_content_and_holds_no_address():
    for kind, func in kinds().items():
        again = kinds()[kind]  # new objects with the same content
        assert callable_identity(func) == callable_identity(again), kind
        assert "0x" not in json.dumps(callable_identity(func)), kind


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            make_shifted(0),
            make_shifted(100),
            "closure value 'shift' of 'shifted' differs: 0 there, 100 here",
        ),
        (
            functools.partial(scaled, k=2),
            functools.partial(scaled, k=3),
            "keyword 'k' of 'partial(scaled)' differs: 2 there, 3 here",
        ),
        (
            functools.partial(scaled, 1.0),
            functools.partial(scaled, 2.0),
            "bound argument 0 of 'partial(scaled)' differs: 1.0 there, 2.0 here",
        ),
        (Model(1), Model(3), "attribute 'a' of 'Model' differs: 1 there, 3 here"),
        (Model(1).fit, Model(3).fit, "self of 'fit': attribute 'a' of 'Model' differs"),
        (np.exp, np.log, "the function is 'numpy.log' here, 'numpy.exp' there"),
    ],
)
def test_differences_are_named(old, new, message):
    assert message in "; ".join(
        identity_differences(callable_identity(old), callable_identity(new))
    )


def redefined(source: str, name: str, namespace: dict | None = None):
    """A function defined from source, as a re-run notebook cell does."""
    namespace = {"__name__": __name__, **(namespace or {})}
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), namespace)
    return namespace[name]


def test_edited_code_defaults_globals_and_helpers_are_differences():
    fit = redefined("def fit(x, k=1):\n    return k * x\n", "fit")
    edited = redefined("def fit(x, k=1):\n    return k * x + 1\n", "fit")
    new_default = redefined("def fit(x, k=2):\n    return k * x\n", "fit")
    ident = callable_identity(fit)
    assert identity_differences(ident, callable_identity(edited)) == ["code of 'fit' differs"]
    assert identity_differences(ident, callable_identity(new_default)) == [
        "default of parameter 'k' of 'fit' differs: 1 there, 2 here"
    ]

    source = "def fit(x):\n    return SCALE * helper(x)\n"
    helper_v1 = redefined("def helper(x):\n    return x + 1\n", "helper")
    helper_v2 = redefined("def helper(x):\n    return x + 2\n", "helper")
    base = callable_identity(redefined(source, "fit", {"SCALE": 3.0, "helper": helper_v1}))
    scale = callable_identity(redefined(source, "fit", {"SCALE": 4.0, "helper": helper_v1}))
    edited_helper = callable_identity(redefined(source, "fit", {"SCALE": 3.0, "helper": helper_v2}))
    assert identity_differences(base, scale) == [
        "global 'SCALE' of 'fit' differs: 3.0 there, 4.0 here"
    ]
    assert identity_differences(base, edited_helper) == [
        "global 'helper' of 'fit': code of 'helper' differs"
    ]


def test_library_functions_are_identified_by_name_and_recursion_terminates():
    ident = callable_identity(redefined("def f(x):\n    return mean(x)\n", "f", {"mean": np.mean}))
    assert ident["globals"] == {"mean": {"kind": "library", "name": "numpy.mean"}}
    fact = redefined("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n", "fact")
    assert callable_identity(fact)["globals"]["fact"]["kind"] == "reference"


_SCRIPT = """
import functools, json, sys
import numpy as np
import probpipe as pp
from probpipe._callables import callable_identity, identity_digest

WORDS = {"alpha", "beta", "gamma", "delta"}  # a set: iteration order varies per process

def make(shift):
    def shifted(x):
        return x + shift + len(WORDS)
    return shifted

class Model:
    def __init__(self, a):
        self.a = a
        self.tags = set(WORDS)
    def __call__(self, x):
        return self.a * x
    def fit(self, x):
        return self.a - x

def scaled(x, k=1.0):
    return k * x

funcs = {
    "lambda": lambda x: 2 * x,
    "closure": make(3.0),
    "partial": functools.partial(scaled, k=4.0),
    "callable object": Model(1.5),
    "bound method": Model(2.5).fit,
    "class": Model,
}
out = {"digest": {}, "restored": {}}
for name, func in funcs.items():
    out["digest"][name] = identity_digest(callable_identity(func))
    if name == "class":
        continue
    wf = pp.WorkflowFunction(func, n_broadcast_samples=6, seed=5, chunksize=2,
                             checkpoint=f"{sys.argv[1]}/{name.replace(' ', '-')}")
    result = wf(pp.Normal(0, 1))
    out["restored"][name] = result.provenance.metadata["n_rows_restored"]
    out.setdefault("samples", {})[name] = result.samples.tolist()
print(json.dumps(out))
"""


def _run_main_script(checkpoints, hash_seed: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-", str(checkpoints)],
        input=_SCRIPT,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_identity_and_resume_across_processes(tmp_path):
    """Functions defined in __main__ (a script on stdin) keep their identity in a new process.

    The second run restores every row the first one wrote: no memory address
    or per-process hash order enters the identity.
    """
    first = _run_main_script(tmp_path, "1")
    second = _run_main_script(tmp_path, "2")
    assert first["digest"] == second["digest"]
    assert set(first["restored"].values()) == {0}
    assert set(second["restored"].values()) == {6}
    assert first["samples"] == second["samples"]


# ---------------------------------------------------------------------------
# Checkpoints: refuse a different function, resume an equal one
# ---------------------------------------------------------------------------


def _checkpointed(func, directory, n=9):
    wf = pp.WorkflowFunction(
        func, n_broadcast_samples=n, seed=4, chunksize=3, checkpoint=str(directory)
    )
    return wf(pp.Normal(0, 1))


def _interrupt(directory):
    """As if the run had died before its second chunk was written."""
    sorted(directory.glob("rows-*.ckpt"))[1].unlink()


def test_a_closure_with_another_value_is_refused_and_an_equal_one_resumes(tmp_path):
    first = _checkpointed(make_shifted(0), tmp_path)
    _interrupt(tmp_path)
    with pytest.raises(pp.CheckpointError) as info:
        _checkpointed(make_shifted(100), tmp_path)
    message = str(info.value).split("different call:")[1]
    assert "closure value 'shift' of 'shifted' differs: 0 there, 100 here" in message
    assert "Use a new directory" in message and "delete that one" in message
    assert "seed" not in message  # the seed matches; only the closure differs
    resumed = _checkpointed(make_shifted(0), tmp_path)
    assert resumed.provenance.metadata["n_rows_restored"] == 6
    np.testing.assert_array_equal(resumed.samples, first.samples)


def test_a_new_but_equal_partial_resumes(tmp_path):
    first = _checkpointed(functools.partial(scaled, k=3.0), tmp_path)
    _interrupt(tmp_path)
    resumed = _checkpointed(functools.partial(scaled, k=3.0), tmp_path)
    assert resumed.provenance.metadata["n_rows_restored"] == 6
    np.testing.assert_array_equal(resumed.samples, first.samples)
    with pytest.raises(pp.CheckpointError, match="keyword 'k' of 'partial\\(scaled\\)' differs"):
        _checkpointed(functools.partial(scaled, k=4.0), tmp_path)


def test_an_unseeded_call_with_another_function_is_refused_without_seed_noise(tmp_path):
    def run(func):
        wf = pp.WorkflowFunction(func, n_broadcast_samples=4, checkpoint=str(tmp_path))
        return wf(pp.Normal(0, 1))

    run(Model(1.0))
    with pytest.raises(pp.CheckpointError) as info:
        run(Model(2.0))
    message = str(info.value).split("different call:")[1]
    assert message.count("differs") == 1 and "seed" not in message


def test_strings_a_closure_holds_are_not_written_to_the_manifest(tmp_path):
    def with_token(token):
        def call_service(x):
            return x + len(token)

        return call_service

    _checkpointed(with_token("token-1234-keep-private"), tmp_path)
    assert "keep-private" not in (tmp_path / "manifest.json").read_text()
    with pytest.raises(pp.CheckpointError, match="closure value 'token' of 'call_service' differs"):
        _checkpointed(with_token("token-5678-keep-private"), tmp_path)


def test_an_older_checkpoint_format_is_refused_with_the_fix(tmp_path):
    _checkpointed(scaled, tmp_path)
    manifest = tmp_path / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "format": 1, "fingerprint": "old"}))
    with pytest.raises(pp.CheckpointError, match=r"another probpipe version.*new directory"):
        _checkpointed(scaled, tmp_path)


# ---------------------------------------------------------------------------
# Every kind on every backend
# ---------------------------------------------------------------------------

ENGINES = [
    pytest.param("prefect", {}, marks=pytest.mark.prefect),
    pytest.param("prefect-dask", {}, marks=[pytest.mark.prefect, pytest.mark.dask]),
    pytest.param("prefect-ray", {}, marks=[pytest.mark.prefect, pytest.mark.ray]),
    pytest.param("ray", {}, marks=pytest.mark.ray),
]


@pytest.mark.parametrize(("name", "options"), ENGINES)
def test_every_kind_of_callable_gives_the_sequential_result(name, options):
    backend = shared_backend(name, **options)
    for kind, func in kinds().items():
        got = run_kind(func, backend)
        want = run_kind(func)
        np.testing.assert_array_equal(got.samples, want.samples, err_msg=kind)


@pytest.mark.prefect
def test_prefect_flow_runs_carry_the_display_names():
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    from probpipe.engines import prefect as prefect_engine

    backend = shared_backend("prefect")
    names = {display_name(f) for f in kinds().values()}
    for func in kinds().values():
        run_kind(func, backend)

    async def read():
        with prefect_engine.settings_for_flows(prefect_engine.api_url()):
            async with get_client() as client:
                runs = await client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=sorted(names))),
                    sort=FlowRunSort.START_TIME_DESC,
                    limit=200,
                )
        return {run.name for run in runs}

    assert asyncio.run(read()) == names


# ---------------------------------------------------------------------------
# Scripts on stdin and python -c
# ---------------------------------------------------------------------------


def test_main_file_that_names_no_file_is_forgotten(monkeypatch, tmp_path):
    script = tmp_path / "analysis.py"
    script.write_text("")
    for path, kept in (("<stdin>", False), (str(script), True)):
        main = types.ModuleType("__main__")
        main.__file__ = path
        main.__spec__ = None
        monkeypatch.setitem(sys.modules, "__main__", main)
        dask_engine.forget_main_file_that_names_no_file()
        assert hasattr(main, "__file__") is kept, path


_PROCESS_SCRIPT = """
import json
import numpy as np
import probpipe as pp

shift = 2.0
add = lambda x: x + shift  # noqa: E731
out = {}
for name, options in [("prefect-dask", {"n_workers": 1}), ("ray", {"address": RAY})]:
    with pp.use_backend(name, **options):
        out[name] = pp.WorkflowFunction(add, n_broadcast_samples=4, seed=9)(
            pp.Normal(0, 1)).samples.tolist()
out["sequential"] = pp.WorkflowFunction(add, n_broadcast_samples=4, seed=9)(
    pp.Normal(0, 1)).samples.tolist()
print(json.dumps(out))
"""


@pytest.mark.prefect
@pytest.mark.dask
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("how", ["stdin", "-c"])
def test_scripts_on_stdin_and_python_c_run_on_process_backends(how):
    """Functions defined in a script that has no file reach Dask and Ray workers.

    The scripts attach to this session's Prefect API and Ray (no new server,
    no new Ray): the Dask cluster is the part that used to fail on stdin.
    """
    import ray

    from probpipe.engines import prefect as prefect_engine

    run_kind(scaled, shared_backend("prefect"))  # this session's API is up
    run_kind(scaled, shared_backend("ray"))  # and its Ray
    gcs = ray.get_runtime_context().gcs_address
    code = _PROCESS_SCRIPT.replace("RAY", repr(gcs))
    env = {"PREFECT_API_URL": prefect_engine.api_url()}
    if how == "-c":
        out = run_script(code, env=env)
    else:
        proc = subprocess.run(
            [sys.executable, "-"],
            input=code,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
            env={**os.environ, **env},
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["prefect-dask"] == out["sequential"]
    assert out["ray"] == out["sequential"]


@pytest.mark.prefect
@pytest.mark.dask
def test_a_script_without_the_main_guard_on_prefect_dask_is_told_how_to_fix_it(tmp_path):
    """Dask's workers import the main script again ('spawn'); unguarded, each one
    tries to start Dask itself and dies. The error says what to do."""
    from probpipe.engines import prefect as prefect_engine

    run_kind(scaled, shared_backend("prefect"))  # this session's API is up
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import probpipe as pp\n"
        "with pp.use_backend('prefect-dask', n_workers=1):\n"
        "    pp.WorkflowFunction(abs, n_broadcast_samples=2)(pp.Normal(0, 1))\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PREFECT_API_URL": prefect_engine.api_url()},
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "BackendConnectionError: Dask" in last, proc.stderr[-3000:]
    assert 'if __name__ == "__main__":' in last
