"""Names and identities of the callables users hand to probpipe.

Users pass every kind of callable: ``def`` functions, lambdas, closures,
``functools.partial`` objects, callable objects, bound methods, NumPy ufuncs
and builtins. Two things are derived from one here:

:func:`display_name`
    A short readable name that engines accept as a run name (Prefect refuses
    ``< > / % &`` in flow and task names): ``lambda``, ``partial(scaled)``,
    ``Model.__call__``, ``Model.fit``, ``exp``, ``fit``. Never a memory address.

:func:`callable_identity`
    A JSON-safe description of what decides the callable's behaviour, by
    content: the code (nested functions and comprehensions included), the
    default values, closure cell values, the globals the code reads by name,
    a partial's function, arguments and keywords, a callable object's class
    and state, a bound method's function and ``self``. Equal content gives an
    equal identity in any process (a re-started notebook kernel included);
    memory addresses never enter. A checkpoint stores it, and
    :func:`identity_differences` says what changed when a re-run differs
    ("closure value 'shift' of 'shifted' differs: 0 there, 100 here").

Code is followed into the user's own modules (``__main__``, a notebook, a
project on ``sys.path``) but not into installed libraries or the standard
library: ``numpy.mean`` is identified by its name, a helper function defined
in the notebook by its content.
"""

from __future__ import annotations

import dis
import functools
import hashlib
import json
import os
import re
import site
import sys
import sysconfig
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------

# Prefect refuses / % & < > in flow and task names, and probpipe appends
# "[rows 0-9]" to task-run names (formatted with str.format): keep word
# characters, dots, dashes and parentheses only.
_UNSAFE = re.compile(r"[^\w.()\-]+")
_MAX_NAME = 100


def _unwrap_workflow(func: Any) -> Any:
    # Recognised by a class flag, not by importing _workflow (which imports this).
    while getattr(type(func), "is_workflow_function", False):
        func = func.func
    return func


def _bare(name: str) -> str:
    """``<lambda>`` -> ``lambda``: Python's own placeholder names without brackets."""
    return name[1:-1] if name.startswith("<") and name.endswith(">") else name


def _owner_name(obj: Any) -> str:
    """The class name a method is reached through (the class itself for classmethods)."""
    return obj.__name__ if isinstance(obj, type) else type(obj).__name__


def _raw_display_name(func: Any) -> str:
    func = _unwrap_workflow(func)
    if isinstance(func, functools.partial):
        return f"partial({_raw_display_name(func.func)})"
    if isinstance(func, types.MethodType):
        return f"{_owner_name(func.__self__)}.{_bare(func.__func__.__name__)}"
    if isinstance(func, types.BuiltinFunctionType):
        owner = func.__self__
        if owner is None or isinstance(owner, types.ModuleType):
            return func.__name__
        return f"{_owner_name(owner)}.{func.__name__}"
    name = getattr(func, "__name__", None)
    if isinstance(name, str):
        return _bare(name)
    return f"{type(func).__name__}.__call__"


def display_name(func: Any) -> str:
    """A readable name for ``func`` that Prefect and Ray accept as a run name.

    ``lambda``, ``partial(scaled)``, ``Model.__call__`` (a callable object),
    ``Model.fit`` (a bound method), ``exp`` (a ufunc), ``fit`` (a function,
    also when defined inside another function). Never a memory address.
    """
    name = _UNSAFE.sub("_", _raw_display_name(func))
    return name[:_MAX_NAME] or "function"


def qualified_name(func: Any) -> str:
    """Module and qualified name, without addresses: ``__main__.make.<locals>.shifted``.

    For provenance and identities; not necessarily a valid engine run name.
    """
    func = _unwrap_workflow(func)
    if isinstance(func, functools.partial):
        return f"functools.partial({qualified_name(func.func)})"
    if isinstance(func, types.MethodType):
        owner = func.__self__
        cls = owner if isinstance(owner, type) else type(owner)
        return f"{_class_name(cls)}.{func.__func__.__name__}"
    if isinstance(func, np.ufunc):
        return f"numpy.{func.__name__}"
    if isinstance(func, types.BuiltinFunctionType):
        owner = func.__self__
        if owner is None or isinstance(owner, types.ModuleType):
            return f"{func.__module__ or getattr(owner, '__name__', 'builtins')}.{func.__name__}"
        return f"{_class_name(type(owner))}.{func.__name__}"
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    if isinstance(qualname, str):
        return f"{module or '?'}.{qualname}"
    return f"{_class_name(type(func))}.__call__"


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _importable(obj: Any) -> bool:
    """Whether ``obj`` is what its module and qualified name lead to (as pickle checks)."""
    target: Any = sys.modules.get(getattr(obj, "__module__", None) or "")
    qualname = getattr(obj, "__qualname__", None)
    if target is None or not isinstance(qualname, str):
        return False
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target is obj


# ---------------------------------------------------------------------------
# User code or library code
# ---------------------------------------------------------------------------


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


@functools.cache
def _is_library_module(module_name: str | None) -> bool:
    """Installed packages, the standard library and probpipe itself.

    Everything else (``__main__``, a notebook, the user's project) is user
    code, followed by content.
    """
    if not module_name or module_name in ("__main__", "__mp_main__"):
        return False
    top = module_name.partition(".")[0]
    if top in sys.stdlib_module_names or top in ("builtins", "probpipe", "probpipe_ray"):
        return True
    module = sys.modules.get(module_name) or sys.modules.get(top)
    path = getattr(module, "__file__", None)
    if not path:
        return False
    return os.path.realpath(path).startswith(_library_dirs())


def _is_library(obj: Any) -> bool:
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        module = getattr(type(obj), "__module__", None)
    return _is_library_module(module)


# ---------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------

# Numbers whose repr is exact and short are kept as "=<repr>", so a changed
# value can be shown in the error; everything else becomes a hash.
_SHORT = 60


def callable_identity(func: Any) -> dict[str, Any]:
    """What decides ``func``'s behaviour, by content (a JSON-safe dict).

    Compare two with ``==``; :func:`identity_digest` hashes one;
    :func:`identity_differences` says what differs between two.
    """
    return _Walker().callable(_unwrap_workflow(func))


def identity_digest(identity: dict[str, Any]) -> str:
    """A short hash of an identity (equal identities, equal digests)."""
    doc = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


class _Walker:
    """One identity computation: remembers what it is inside of, to stop at cycles."""

    _MAX_DEPTH = 40

    def __init__(self) -> None:
        self._inside: set[int] = set()  # callables and objects on the current path

    # -- callables ------------------------------------------------------------
    def callable(self, func: Any) -> dict[str, Any]:
        func = _unwrap_workflow(func)
        key = id(func)
        if key in self._inside or len(self._inside) > self._MAX_DEPTH:
            # A function that reads its own name (recursion), or a very deep chain.
            return {"kind": "reference", "name": qualified_name(func)}
        self._inside.add(key)
        try:
            return self._callable(func)
        finally:
            self._inside.discard(key)

    def _callable(self, func: Any) -> dict[str, Any]:
        name = qualified_name(func)
        if isinstance(func, functools.partial):
            return {
                "kind": "partial",
                "name": name,
                "func": self.callable(func.func),
                "args": [self.member(a) for a in func.args],
                "keywords": {k: self.member(v) for k, v in func.keywords.items()},
            }
        if isinstance(func, types.MethodType):
            owner = func.__self__
            return {
                "kind": "method",
                "name": name,
                "func": self.callable(func.__func__),
                "self": self.callable(owner) if isinstance(owner, type) else self.instance(owner),
            }
        if isinstance(func, np.ufunc):
            return {"kind": "ufunc", "name": name}
        if isinstance(func, types.BuiltinFunctionType):
            owner = func.__self__
            ident: dict[str, Any] = {"kind": "builtin", "name": name}
            if owner is not None and not isinstance(owner, types.ModuleType):
                ident["self"] = self.instance(owner)
            return ident
        if _is_library(func) and _importable(func):
            # numpy.mean, scipy.special.logsumexp: identified by name.
            return {"kind": "library", "name": name}
        if isinstance(func, types.FunctionType):
            return self.function(func)
        if isinstance(func, type):
            return self.klass(func)
        return {"kind": "callable object", **self._instance(func)}

    def function(self, func: types.FunctionType) -> dict[str, Any]:
        code = func.__code__
        ident: dict[str, Any] = {
            "kind": "function",
            "name": qualified_name(func),
            "code": _code_digest(code),
        }
        defaults = _defaults(func)
        if defaults:
            ident["defaults"] = {k: self.member(v) for k, v in defaults.items()}
        if func.__closure__:
            closure = {}
            for var, cell in zip(code.co_freevars, func.__closure__):
                try:
                    closure[var] = self.member(cell.cell_contents)
                except ValueError:  # a cell not yet assigned
                    closure[var] = "unassigned"
            ident["closure"] = closure
        if not _is_library_module(func.__module__):
            # The globals it reads by name: data, the user's helpers and classes.
            names = {}
            for var in sorted(_global_names(code)):
                if var in func.__globals__:
                    value = func.__globals__[var]
                    if not isinstance(value, types.ModuleType):
                        names[var] = self.member(value)
            if names:
                ident["globals"] = names
        return ident

    def klass(self, cls: type) -> dict[str, Any]:
        ident: dict[str, Any] = {"kind": "class", "name": _class_name(cls)}
        if _is_library(cls):
            return ident
        methods = {}
        for base in cls.__mro__:
            if base is object or _is_library(base):
                continue
            for attr, value in vars(base).items():
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                elif isinstance(value, property):
                    value = value.fget
                if isinstance(value, types.FunctionType) and attr not in methods:
                    methods[attr] = self.callable(value)
        if methods:
            ident["methods"] = methods
        return ident

    def instance(self, obj: Any) -> dict[str, Any]:
        """An object reached as a callable or as a method's ``self``: class and state."""
        key = id(obj)
        if key in self._inside:
            return {"kind": "reference", "name": _class_name(type(obj))}
        self._inside.add(key)
        try:
            return self._instance(obj)
        finally:
            self._inside.discard(key)

    def _instance(self, obj: Any) -> dict[str, Any]:
        ident: dict[str, Any] = {"name": _class_name(type(obj)), "class": self.klass(type(obj))}
        state = _state(obj)
        if state is _NO_STATE:
            ident["state"] = hashlib.sha256(_opaque_bytes(obj)).hexdigest()[:32]
        elif isinstance(state, Mapping) and all(isinstance(k, str) for k in state):
            ident["state"] = {k: self.member(v) for k, v in sorted(state.items())}
        else:
            ident["state"] = self.data(state)
        return ident

    # -- values -----------------------------------------------------------------
    def member(self, value: Any) -> Any:
        """A closure value, global, default, partial argument or attribute.

        Callables become identities (so a difference inside them can be
        named); library callables are identified by name; data is hashed.
        """
        if isinstance(value, types.ModuleType):
            return f"module {value.__name__}"
        if callable(value) and not isinstance(value, np.ndarray):
            return self.callable(value)
        return self.data(value)

    def data(self, value: Any) -> str:
        """A value's content as a string: ``=<repr>`` for short scalars, else a hash."""
        if value is None or isinstance(value, (bool, int, float, complex)):
            text = repr(value)
            if len(text) <= _SHORT:
                return "=" + text
        # Strings are hashed like everything else: a checkpoint's manifest must
        # not spell out a token or password a closure happens to hold.
        h = hashlib.sha256()
        self._feed(h, value, 0)
        return h.hexdigest()[:32]

    def _feed(self, h: Any, value: Any, depth: int) -> None:
        from ._distributions import Distribution
        from ._provenance import fingerprint
        from ._record import Record

        if value is None or isinstance(
            value,
            (bool, int, float, complex, str, bytes, np.generic, np.ndarray, Distribution, Record),
        ):
            if isinstance(value, np.ndarray) and value.dtype == object:
                h.update(f"objarray{value.shape};".encode())
                for item in value.ravel():
                    self._feed(h, item, depth + 1)
                return
            h.update(fingerprint(value).encode())
            return
        if depth > self._MAX_DEPTH:
            h.update(f"deep:{_class_name(type(value))};".encode())
            return
        if isinstance(value, (list, tuple)):
            h.update(f"{type(value).__name__}[{len(value)}];".encode())
            for item in value:
                self._feed(h, item, depth + 1)
            return
        if isinstance(value, (set, frozenset)):
            # Sets of strings iterate in a per-process order: sort the parts.
            parts = sorted(self.data(item) for item in value)
            h.update(f"set{parts!r};".encode())
            return
        if isinstance(value, Mapping) and type(value).__module__ in ("builtins", "collections"):
            h.update(f"map[{len(value)}];".encode())
            for k, v in sorted(value.items(), key=lambda kv: self.data(kv[0])):
                self._feed(h, k, depth + 1)
                self._feed(h, v, depth + 1)
            return
        if isinstance(value, types.ModuleType):
            h.update(f"module:{value.__name__};".encode())
            return
        if callable(value) or isinstance(value, type):
            h.update(json.dumps(self.member(value), sort_keys=True).encode())
            return
        # Distributions, Records and other objects: class, then state.
        key = id(value)
        if key in self._inside:
            h.update(f"cycle:{_class_name(type(value))};".encode())
            return
        self._inside.add(key)
        try:
            h.update(f"object:{_class_name(type(value))};".encode())
            state = _state(value)
            if state is _NO_STATE:
                h.update(_opaque_bytes(value))
            else:
                self._feed(h, state, depth + 1)
        finally:
            self._inside.discard(key)


_NO_STATE = object()


def _state(obj: Any) -> Any:
    """What pickling would save of ``obj``: ``__getstate__()``, ``__dict__`` or slots."""
    getstate = getattr(type(obj), "__getstate__", None)
    if getstate is not None and getstate is not getattr(object, "__getstate__", None):
        try:
            state = obj.__getstate__()
        except Exception:
            return _NO_STATE
        # None: the object keeps its content elsewhere (numpy's Generator
        # pickles its bit generator through __reduce__).
        return _NO_STATE if state is None else state
    state: dict[str, Any] = {}
    if hasattr(obj, "__dict__"):
        state.update(vars(obj))
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                state[slot] = getattr(obj, slot)
    if not state and not hasattr(obj, "__dict__"):
        return _NO_STATE  # a C-level object: only pickling knows its content
    return state


def _opaque_bytes(obj: Any) -> bytes:
    """Content of an object with no Python-level state: its pickle, else its class."""
    import pickle

    try:
        return pickle.dumps(obj, protocol=4)
    except Exception:
        return f"opaque:{_class_name(type(obj))};".encode()


def _defaults(func: types.FunctionType) -> dict[str, Any]:
    """Default values by parameter name."""
    code = func.__code__
    out: dict[str, Any] = {}
    if func.__defaults__:
        positional = code.co_varnames[: code.co_argcount]
        out.update(zip(positional[-len(func.__defaults__) :], func.__defaults__))
    out.update(func.__kwdefaults__ or {})
    return out


def _nested_codes(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _nested_codes(const)


def _global_names(code: types.CodeType) -> set[str]:
    """Names the code (and functions defined in it) read as globals."""
    names = set()
    for inner in _nested_codes(code):
        for instruction in dis.get_instructions(inner):
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                names.add(instruction.argval)
    return names


def _const_text(const: Any) -> str:
    if isinstance(const, types.CodeType):
        return f"code:{_code_digest(const)}"
    if isinstance(const, tuple):
        return "(" + ",".join(_const_text(c) for c in const) + ")"
    if isinstance(const, frozenset):  # iteration order of strings varies per process
        return "frozenset(" + ",".join(sorted(_const_text(c) for c in const)) + ")"
    return f"{type(const).__name__}:{const!r}"


def _code_digest(code: types.CodeType) -> str:
    """The behaviour of a code object: bytecode, constants (nested code by content), names.

    Not the file name or line numbers: a notebook cell re-run, or a function
    moved down a file, is the same code.
    """
    parts = [
        code.co_code.hex(),
        _const_text(code.co_consts),
        repr(code.co_names),
        repr(code.co_varnames),
        repr(code.co_freevars),
        repr(code.co_cellvars),
        repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------
# What differs
# ---------------------------------------------------------------------------

_FIELD_LABELS = {
    "defaults": "default of parameter",
    "closure": "closure value",
    "globals": "global",
    "keywords": "keyword",
    "state": "attribute",
    "methods": "method",
}


def _short(name: str) -> str:
    """``__main__.make.<locals>.shifted`` -> ``shifted`` for messages."""
    inner = name
    if inner.startswith("functools.partial(") and inner.endswith(")"):
        return "partial(" + _short(inner[len("functools.partial(") : -1]) + ")"
    parts = [p for p in inner.split(".") if p != "<locals>"]
    return ".".join(parts[-2:]) if len(parts) > 1 and parts[-1] == "__call__" else parts[-1]


def _value_text(a: Any, b: Any) -> str:
    if isinstance(a, str) and isinstance(b, str) and a.startswith("=") and b.startswith("="):
        return f": {a[1:]} there, {b[1:]} here"
    return ""


def identity_differences(old: Any, new: Any) -> list[str]:
    """What differs between two identities, as short sentences (empty if equal).

    ``old`` is the recorded one ("there"), ``new`` this call's ("here").
    """
    return _diff(old, new)


def _diff(old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return ["it differs" + _value_text(old, new)]
    if old.get("kind") != new.get("kind") or old.get("name") != new.get("name"):
        was, now = old.get("name", "?"), new.get("name", "?")
        if was == now:
            return [f"{_short(now)!r} is a {new.get('kind')} here, a {old.get('kind')} there"]
        return [f"the function is {now!r} here, {was!r} there"]
    name = _short(new.get("name", "?"))
    out: list[str] = []
    for key in sorted(set(old) | set(new), key=_field_order):
        if key in ("kind", "name") or old.get(key) == new.get(key):
            continue
        a, b = old.get(key), new.get(key)
        if key == "code":
            out.append(f"code of {name!r} differs")
        elif key in ("func", "self", "class"):
            inner = _diff(a, b)
            where = {"func": "", "self": f"self of {name!r}: ", "class": ""}[key]
            out.extend(where + d for d in inner)
        elif key == "args":
            a, b = a or [], b or []
            if len(a) != len(b):
                out.append(f"{name!r} has {len(b)} bound arguments here, {len(a)} there")
            else:
                for i, (x, y) in enumerate(zip(a, b)):
                    out.extend(_member_diff(f"bound argument {i} of {name!r}", x, y))
        elif (
            key in _FIELD_LABELS
            and isinstance(a, (dict, type(None)))
            and isinstance(b, (dict, type(None)))
        ):
            a, b = a or {}, b or {}
            label = _FIELD_LABELS[key]
            for sub in sorted(set(a) | set(b)):
                what = f"{label} {sub!r} of {name!r}"
                if sub not in a:
                    out.append(f"{what} is new here")
                elif sub not in b:
                    out.append(f"{what} is not there any more")
                else:
                    out.extend(_member_diff(what, a[sub], b[sub]))
        else:
            out.append(f"{_FIELD_LABELS.get(key, key)} of {name!r} differs")
    return out or ["it differs"]


def _member_diff(what: str, a: Any, b: Any) -> list[str]:
    if a == b:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        inner = _diff(a, b)
        return [f"{what}: {d}" for d in inner]
    return [f"{what} differs{_value_text(a, b)}"]


_ORDER = ["func", "code", "defaults", "closure", "globals", "args", "keywords", "self"]


def _field_order(key: str) -> int:
    return _ORDER.index(key) if key in _ORDER else len(_ORDER)
