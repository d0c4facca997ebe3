"""Workflow functions: plain Python functions that broadcast over distributions."""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any

from ._call import execute
from ._checkpoint import Checkpoint, call_fingerprint, func_identity, recorded_seed
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

    def __init__(self, func: Any, **options: Any):
        if isinstance(func, WorkflowFunction):
            options = {**func._given_options, **options}
            func = func.func
        if not callable(func):
            raise TypeError(f"workflow_function needs a callable, got {shown(func)}")
        self.func = func
        self._given_options = validate_options(options)
        self.options: dict[str, Any] = {**DEFAULTS, **self._given_options}
        self.signature = inspect.signature(func)
        self.rng_param = RNG_PARAMETER if RNG_PARAMETER in self.signature.parameters else None
        functools.update_wrapper(self, func)

    def with_options(self, **options: Any) -> WorkflowFunction:
        """A new workflow function with some options changed; this one is unchanged."""
        return WorkflowFunction(self.func, **{**self._given_options, **options})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = getattr(self.func, "__name__", "function")
        arguments = bind(self.signature, name, args, kwargs, self.rng_param)
        seed = self.options["seed"]
        keys = None
        if self.options["checkpoint"] is not None:
            keys = _checkpoint_keys(self, arguments)
            if seed is None:  # resume an unseeded call with the seed it used
                seed = recorded_seed(self.options["checkpoint"], keys["unseeded"])
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
        if plan is not None and keys is not None:
            plan.checkpoint = Checkpoint(
                self.options["checkpoint"],
                call_fingerprint(keys["func"], keys["inputs"], keys["n"], plan.seed),
                unseeded_fingerprint=keys["unseeded"],
                func=keys["func"],
                seed=plan.seed,
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
        name = getattr(self.func, "__qualname__", repr(self.func))
        return f"<WorkflowFunction {name}{' ' + opts if opts else ''}>"

    def __reduce__(self):
        return (_rebuild, (self.func, self._given_options))


def _checkpoint_keys(wf: WorkflowFunction, arguments: dict[str, Any]) -> dict[str, Any]:
    """What identifies a call for its checkpoint: function, inputs, size (seed aside)."""
    inputs = {
        name: fingerprint(value.values if isinstance(value, Sweep) else value)
        for name, value in arguments.items()
        if name != wf.rng_param
    }
    func = func_identity(wf.func)
    n = wf.options["n_broadcast_samples"]
    return {
        "func": func,
        "inputs": inputs,
        "n": n,
        "unseeded": call_fingerprint(func, inputs, n, None),
    }


def _rebuild(func: Any, options: dict[str, Any]) -> WorkflowFunction:
    return WorkflowFunction(func, **options)


def workflow_function(func: Any = None, /, **options: Any) -> Any:
    """Decorator: ``@workflow_function`` or ``@workflow_function(n_broadcast_samples=64, ...)``."""
    if func is None:
        validate_options(options)  # fail at the decorator line, not at first call
        return lambda f: WorkflowFunction(f, **options)
    return WorkflowFunction(func, **options)
