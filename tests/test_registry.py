"""Plugins: entry points loaded lazily, broken plugins warn, name clashes fail, hooks fire."""

from __future__ import annotations

import sys
import textwrap

import pytest

import probpipe as pp
from probpipe._registry import _Registry
from support import run_script


def make_distribution(root, dist: str, entry_points: dict[str, str], modules: dict[str, str]):
    """Write an installed-looking distribution (dist-info + modules) under ``root``."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"  # as pip names it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[probpipe]\n{lines}\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


GOOD_PLUGIN = """
    import probpipe

    class EchoBackend(probpipe.ExecutionBackend):
        name = "{name}"
        provenance_tag = "echo"
        ships_to_processes = False

        def map(self, fn, items):
            return [fn(item) for item in items]

        def gather(self, handles):
            return list(handles)

    @probpipe.hookimpl
    def probpipe_register_backends(register):
        register(EchoBackend)
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path where tests install fake plugin distributions."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("pp_fake_")]:
        del sys.modules[name]


def test_shipped_backends_come_from_probpipes_own_entry_point():
    import importlib.metadata

    eps = [
        ep for ep in importlib.metadata.entry_points(group="probpipe") if ep.dist.name == "probpipe"
    ]
    assert [ep.value for ep in eps] == ["probpipe.backends"]
    infos = pp.available_backends()
    for name in ("sequential", "prefect", "prefect-dask", "prefect-ray"):
        assert "entry point" in infos[name].source and infos[name].source.startswith("probpipe")


def test_third_party_backend_registers_through_an_entry_point(site):
    make_distribution(
        site,
        "pp-fake-echo",
        {"echo": "pp_fake_echo"},
        {"pp_fake_echo": GOOD_PLUGIN.format(name="echo")},
    )
    registry = _Registry()
    assert "echo" in registry.backends()
    assert "pp-fake-echo" in registry.info()["echo"].source


def test_broken_plugin_is_a_warning_naming_it_not_a_crash(site):
    make_distribution(
        site,
        "pp-fake-broken",
        {"broken": "pp_fake_broken"},
        {"pp_fake_broken": "raise ImportError('needs libfoo 9')\n"},
    )
    registry = _Registry()
    with pytest.warns(RuntimeWarning, match=r"'broken' from pp-fake-broken.*needs libfoo 9"):
        names = registry.backends()
    assert "sequential" in names  # everything else still loads


def test_missing_plugin_module_is_a_warning(site):
    make_distribution(site, "pp-fake-ghost", {"ghost": "pp_fake_not_there"}, {})
    with pytest.warns(RuntimeWarning, match="pp_fake_not_there"):
        _Registry().backends()


def test_two_backends_with_one_name_is_an_error_naming_both(site):
    make_distribution(
        site, "pp-fake-a", {"a": "pp_fake_a"}, {"pp_fake_a": GOOD_PLUGIN.format(name="twin")}
    )
    make_distribution(
        site, "pp-fake-b", {"b": "pp_fake_b"}, {"pp_fake_b": GOOD_PLUGIN.format(name="twin")}
    )
    with pytest.raises(
        pp.PluginConflictError, match=r"'twin'.*pp-fake-a.*pp-fake-b|'twin'.*pp-fake-b.*pp-fake-a"
    ):
        _Registry().backends()


def test_a_plugin_may_not_take_a_shipped_name(site):
    make_distribution(
        site,
        "pp-fake-squat",
        {"squat": "pp_fake_squat"},
        {"pp_fake_squat": GOOD_PLUGIN.format(name="sequential")},
    )
    with pytest.raises(pp.PluginConflictError, match="sequential"):
        _Registry().backends()


def test_entry_points_load_lazily_and_import_no_engine():
    out = run_script("""
        import json, sys
        import probpipe
        from probpipe._registry import registry
        before = registry._pm is not None
        probpipe.available_backends()
        after = registry._pm is not None
        heavy = [m for m in ("prefect", "ray", "dask", "distributed", "prefect_ray",
                             "prefect_dask") if m in sys.modules]
        print(json.dumps({"before": before, "after": after, "heavy": heavy}))
    """)
    assert out == {**out, "before": False, "after": True, "heavy": []}


def test_observer_hooks_see_every_call(tmp_path):
    seen = []

    class Observer:
        @pp.hookimpl
        def probpipe_map_started(self, call):
            seen.append(("started", call.func, call.n_rows))

        @pp.hookimpl
        def probpipe_rows_finished(self, call, rows, failed):
            seen.append(("rows", tuple(rows), tuple(failed)))

        @pp.hookimpl
        def probpipe_map_finished(self, call, n_failed, error):
            seen.append(("finished", n_failed, type(error).__name__ if error else None))

    def f(x):
        if x > 1.5:
            raise ValueError("too big")
        return x

    observer = Observer()
    pp.register_plugin(observer)
    try:
        wf = pp.WorkflowFunction(f, chunksize=2, on_error="collect", seed=0)
        wf(x=pp.sweep([1.0, 2.0, 1.0]))
    finally:
        pp.unregister_plugin(observer)
    assert seen[0] == ("started", "f", 3)
    assert seen[1:3] == [("rows", (0, 1), (1,)), ("rows", (2,), ())]
    assert seen[3] == ("finished", 1, None)


def test_hookimpl_is_exported_and_keyword_only():
    import pluggy

    assert isinstance(pp.hookimpl, pluggy.HookimplMarker)
    from probpipe._registry import registry

    with pytest.raises(TypeError):  # pluggy hooks accept keyword arguments only
        registry.plugin_manager.hook.probpipe_map_started(None)
