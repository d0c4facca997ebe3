"""Workflow functions: plain Python functions that broadcast over distributions."""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any

from ._call import execute
from ._callables import callable_identity, display_name, identity_digest, qualified_name
from ._checkpoint import Checkpoint, call_fingerprint, recorded_seed
from ._options import DEFAULTS, validate_options
from ._plan import Sweep, bind, build_per_worker_here, plan_call
from ._provenance import fingerprint
from ._seeds import fresh_seed, row_rng
from ._selection import resolve_backend
from ._suggest import shown

RNG_PARAMETER = "rng"


class WorkflowFunction:
    """A function that, called with distributions or sweeps, runs once per row.

    ``WorkflowFunction(func, **options)`` or the :func:`workflow_function`
    decorator. Options (``n_broadcast_samples``, ``seed``, ``backend``,
    ``chunksize``, ``on_error``, ``retries``, ``timeout``, ``checkpoint``,
    ``progress``, ``resources``) are fixed at construction or with
    :meth:`with_options`; every call argument goes to the wrapped function,
    so a parameter called ``seed`` keeps working.
    """

    is_workflow_function = True  # how _callables recognises it without an import

    def __init__(self, func: Any, **options: Any):
        if isinstance(func, WorkflowFunction):
            options = {**func._given_options, **options}
            func = func.func
        if not callable(func):
            raise TypeError(f"workflow_function needs a callable, got {shown(func)}")
        self.func = func
        self._given_options = validate_options(options)
        self.options: dict[str, Any] = {**DEFAULTS, **self._given_options}
        self.signature = _signature(func)
        self.rng_param = RNG_PARAMETER if RNG_PARAMETER in self.signature.parameters else None
        # Name and docs, and the callable's own attributes where they do not
        # clash with ours (a callable object's `options` must not replace ours).
        functools.update_wrapper(self, func, updated=())
        for key, value in getattr(func, "__dict__", {}).items():
            if key not in vars(self) and not hasattr(type(self), key):
                setattr(self, key, value)

    def with_options(self, **options: Any) -> WorkflowFunction:
        """A new workflow function with some options changed; this one is unchanged."""
        return WorkflowFunction(self.func, **{**self._given_options, **options})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        arguments = bind(self.signature, display_name(self.func), args, kwargs, self.rng_param)
        # Defaults stay the function's own (never passed), but they are part
        # of what the call computed: provenance and checkpoints record them.
        defaults = defaults_not_given(self.signature, arguments)
        seed = self.options["seed"]
        keys = None
        seed_drawn_here = False
        if self.options["checkpoint"] is not None:
            keys = _checkpoint_keys(self, {**arguments, **defaults})
            if seed is None:  # resume an unseeded call with the seed it used
                seed = recorded_seed(self.options["checkpoint"], keys["unseeded"])
                seed_drawn_here = seed is None
        # Resolved before anything is drawn: a bad PROBPIPE_BACKEND fails here.
        backend = resolve_backend(self.options["backend"])
        plan = plan_call(
            self.func,
            self.signature,
            arguments,
            n_samples=self.options["n_broadcast_samples"],
            seed=seed,
            rng_param=self.rng_param,
        )
        if plan is not None:
            plan.inputs = _with_defaults(self.signature, plan.inputs, defaults)
        if plan is not None and keys is not None:
            plan.checkpoint = Checkpoint(
                self.options["checkpoint"],
                call_fingerprint(keys["digest"], keys["inputs"], keys["n"], plan.seed),
                unseeded_fingerprint=keys["unseeded"],
                func=keys["name"],
                identity=keys["identity"],
                seed=plan.seed,
                seed_drawn_here=seed_drawn_here,
                n_rows=plan.n_rows,
                inputs=keys["inputs"],
            )
        if plan is None:
            # Nothing to broadcast or sweep: run once, here, and return as is.
            if self.rng_param is not None:
                seed = self.options["seed"]
                if seed is None:
                    seed = fresh_seed()
                arguments[self.rng_param] = row_rng(seed, 0)
            build_per_worker_here(self.signature, arguments)
            bound = inspect.BoundArguments(self.signature, arguments)
            return self.func(*bound.args, **bound.kwargs)
        return execute(self, plan, backend)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._given_options.items())
        name = qualified_name(self.func)
        return f"<WorkflowFunction {name}{' ' + opts if opts else ''}>"

    def __reduce__(self):
        return (_rebuild, (self.func, self._given_options))


def _signature(func: Any) -> inspect.Signature:
    """The callable's signature; ``(*args, **kwargs)`` where Python cannot tell (``max``)."""
    try:
        return inspect.signature(func)
    except ValueError:
        P = inspect.Parameter
        return inspect.Signature([P("args", P.VAR_POSITIONAL), P("kwargs", P.VAR_KEYWORD)])


def defaults_not_given(signature: inspect.Signature, given: dict[str, Any]) -> dict[str, Any]:
    """The default value of every parameter the caller did not give."""
    return {
        name: p.default
        for name, p in signature.parameters.items()
        if name not in given and p.default is not inspect.Parameter.empty
    }


def _with_defaults(
    signature: inspect.Signature, inputs: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any]:
    """Provenance inputs with the defaults added, in the signature's order."""
    if not defaults:
        return inputs
    order = {name: i for i, name in enumerate(signature.parameters)}
    merged = {**inputs, **defaults}
    return dict(sorted(merged.items(), key=lambda kv: order[kv[0].partition("[")[0]]))


def _checkpoint_keys(wf: WorkflowFunction, arguments: dict[str, Any]) -> dict[str, Any]:
    """What identifies a call for its checkpoint: function, inputs, size (seed aside)."""
    inputs = {
        name: fingerprint(value.values if isinstance(value, Sweep) else value)
        for name, value in arguments.items()
        if name != wf.rng_param
    }
    identity = callable_identity(wf.func)
    digest = identity_digest(identity)
    n = wf.options["n_broadcast_samples"]
    return {
        "name": qualified_name(wf.func),
        "identity": identity,
        "digest": digest,
        "inputs": inputs,
        "n": n,
        "unseeded": call_fingerprint(digest, inputs, n, None),
    }


def _rebuild(func: Any, options: dict[str, Any]) -> WorkflowFunction:
    return WorkflowFunction(func, **options)


def workflow_function(func: Any = None, /, **options: Any) -> Any:
    """Decorator: ``@workflow_function`` or ``@workflow_function(n_broadcast_samples=64, ...)``."""
    if func is None:
        validate_options(options)  # fail at the decorator line, not at first call
        return lambda f: WorkflowFunction(f, **options)
    return WorkflowFunction(func, **options)
