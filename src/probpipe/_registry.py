"""Finding backends: pluggy plugins loaded lazily from the ``probpipe`` entry points.

The first lookup loads every module registered under the entry-point group
``probpipe`` (the shipped backends are one of them) and asks each to
register its backends. A plugin that fails to import is skipped with a
warning that names it; two backends claiming one name is an error naming
both sources.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import pluggy

from . import _hookspecs
from ._errors import BackendNotFoundError, BackendUnavailableError, PluginConflictError
from ._suggest import ENGINE_ALIASES, shown, unknown_name_message

ENTRY_POINT_GROUP = "probpipe"
_REQUIRED_MEMBERS = ("map", "gather", "__enter__", "__exit__")


@dataclass(frozen=True)
class BackendInfo:
    """What :func:`probpipe.available_backends` reports for one backend."""

    name: str
    installed: bool
    provenance_tag: str
    description: str
    install_hint: str
    source: str
    missing: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "installed": self.installed,
            "provenance_tag": self.provenance_tag,
            "description": self.description,
            "install_hint": self.install_hint,
            "source": self.source,
        }


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pm: pluggy.PluginManager | None = None
        self._backends: dict[str, tuple[type, str]] = {}

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        with self._lock:
            if self._pm is None:
                self._load()
            return self._pm

    def _load(self) -> None:
        pm = pluggy.PluginManager(_hookspecs.PROJECT)
        pm.add_hookspecs(_hookspecs)
        self._pm = pm
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep.dist, "name", None) or "?"
            source = f"{dist} (entry point {ep.name!r} = {ep.value!r})"
            try:
                module = ep.load()
            except Exception as exc:
                warnings.warn(
                    f"probpipe plugin {ep.name!r} from {dist} ({ep.value}) failed to "
                    f"import and is skipped: {type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=4,
                )
                continue
            if pm.is_registered(module):
                continue
            pm.register(module, name=source)
        from ._progress import ProgressBar

        pm.register(ProgressBar(), name="probpipe.progress")
        for impl in pm.hook.probpipe_register_backends.get_hookimpls():
            source = pm.get_name(impl.plugin) or repr(impl.plugin)
            impl.function(register=lambda cls, _source=source: self._add(cls, _source))

    def _add(self, cls: type, source: str) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{source}: backend class {cls!r} needs a non-empty string `name`")
        if not isinstance(getattr(cls, "provenance_tag", None), str):
            raise TypeError(f"{source}: backend {name!r} needs a string `provenance_tag`")
        missing = [m for m in _REQUIRED_MEMBERS if not callable(getattr(cls, m, None))]
        if missing:
            raise TypeError(f"{source}: backend {name!r} lacks {', '.join(missing)}")
        if name in self._backends and self._backends[name][0] is not cls:
            other = self._backends[name][1]
            raise PluginConflictError(
                f"two plugins register a backend named {name!r}: {other} and {source}. "
                "Uninstall one of them."
            )
        self._backends[name] = (cls, source)

    def register_plugin(self, plugin: Any, name: str | None = None) -> None:
        """Register an in-process plugin object (observers, or extra backends)."""
        pm = self.plugin_manager
        with self._lock:
            pm.register(plugin, name=name)
            impls = [
                i for i in pm.hook.probpipe_register_backends.get_hookimpls() if i.plugin is plugin
            ]
            for impl in impls:
                impl.function(register=lambda cls: self._add(cls, name or repr(plugin)))

    def unregister_plugin(self, plugin: Any) -> None:
        pm = self.plugin_manager
        with self._lock:
            pm.unregister(plugin)

    def backends(self) -> dict[str, tuple[type, str]]:
        _ = self.plugin_manager  # loads the plugins on first use
        return dict(self._backends)

    def lookup(self, name: str, source: str | None = None) -> type:
        """The backend class for ``name``; errors list the known names / install command.

        ``source`` says where the name came from (``"environment variable
        PROBPIPE_BACKEND"``), so the message can point there.
        """
        where = f" ({source})" if source else ""
        if not isinstance(name, str):
            raise TypeError(f"a backend name{where} must be a string, got {shown(name)}")
        known = self.backends()
        if name not in known:
            raise BackendNotFoundError(
                unknown_name_message(
                    "backend", name, list(known), source=source, aliases=ENGINE_ALIASES
                )
            )
        cls = known[name][0]
        missing = _missing_modules(cls)
        if missing:
            hint = getattr(cls, "install_hint", "") or f"pip install {' '.join(missing)}"
            raise BackendUnavailableError(
                f"backend {name!r}{where} needs {', '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not installed. Install with: {hint}"
            )
        return cls

    def info(self) -> dict[str, BackendInfo]:
        out = {}
        for name, (cls, source) in sorted(self.backends().items()):
            missing = _missing_modules(cls)
            out[name] = BackendInfo(
                name=name,
                installed=not missing,
                provenance_tag=cls.provenance_tag,
                description=getattr(cls, "description", "") or (cls.__doc__ or "").strip(),
                install_hint=getattr(cls, "install_hint", ""),
                source=source,
                missing=tuple(missing),
            )
        return out


def _missing_modules(cls: type) -> list[str]:
    missing = []
    for module in getattr(cls, "requires", ()):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


registry = _Registry()


def check_backend_spec(spec: Any) -> None:
    """Validate a ``backend=`` option: a known, installed name or a backend object."""
    if isinstance(spec, str):
        registry.lookup(spec, source="option backend=")
    elif not (callable(getattr(spec, "map", None)) and callable(getattr(spec, "gather", None))):
        raise TypeError(
            f"backend must be a backend name (see probpipe.available_backends()) or a "
            f"backend object, got {shown(spec)}"
        )
