"""Choosing a backend: use_backend, current_backend, the environment, precedence, errors."""

from __future__ import annotations

import threading

import pytest

import probpipe as pp
from probpipe._session import session_for


class RecordingBackend(pp.ExecutionBackend):
    """An in-process backend that records its lifecycle, for these tests."""

    name = "test-recording"
    provenance_tag = "recording"
    ships_to_processes = False
    option_defaults = {"label": "x"}
    events: list[tuple[str, str]] = []

    def __enter__(self):
        self.events.append(("enter", self.options["label"]))
        return self

    def __exit__(self, *exc):
        self.events.append(("exit", self.options["label"]))

    def map(self, fn, items):
        return [fn(item) for item in items]

    def gather(self, handles):
        return list(handles)


class NotInstalledBackend(pp.ExecutionBackend):
    """Needs a module nobody has."""

    name = "test-not-installed"
    requires = ("pp_module_that_is_not_installed",)
    install_hint = "pip install probpipe-imaginary"


class _Plugin:
    @pp.hookimpl
    def probpipe_register_backends(self, register):
        register(RecordingBackend)
        register(NotInstalledBackend)


@pytest.fixture(scope="module", autouse=True)
def _registered():
    plugin = _Plugin()
    pp.register_plugin(plugin, name="tests.test_selection")
    yield
    pp.unregister_plugin(plugin)


@pytest.fixture(autouse=True)
def _fresh_events():
    RecordingBackend.events.clear()


def double(x):
    return 2 * x


def backend_of(result) -> str:
    return result.provenance.metadata["backend"]


def test_default_is_sequential(monkeypatch):
    monkeypatch.delenv("PROBPIPE_BACKEND", raising=False)
    assert pp.current_backend().name == "sequential"


def test_use_backend_takes_effect_at_once_and_process_wide():
    pp.use_backend("test-recording", label="global")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(pp.current_backend().name))
    thread.start()
    thread.join()
    assert pp.current_backend().name == "test-recording"
    assert seen == ["test-recording"]
    result = pp.WorkflowFunction(double, n_broadcast_samples=3)(pp.Normal(0, 1))
    assert backend_of(result) == "test-recording"


def test_context_manager_restores_the_previous_backend_and_stops_its_own():
    pp.use_backend("test-recording", label="outer")
    outer = pp.current_backend()
    with pp.use_backend("test-recording", label="inner") as inner:
        assert pp.current_backend() is inner
        pp.WorkflowFunction(double, n_broadcast_samples=2)(pp.Normal(0, 1))
        assert session_for(inner).started
    assert pp.current_backend() is outer
    assert not session_for(inner).started
    assert ("exit", "inner") in RecordingBackend.events
    assert ("exit", "outer") not in RecordingBackend.events


def test_scoped_choice_is_invisible_to_other_threads():
    inside, outside = [], []
    entered, release = threading.Event(), threading.Event()

    def worker():
        with pp.use_backend("test-recording", label="thread"):
            inside.append(pp.current_backend().name)
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    entered.wait(10)
    outside.append(pp.current_backend().name)
    release.set()
    thread.join()
    assert inside == ["test-recording"]
    assert outside == ["sequential"]


def test_replaced_backend_is_stopped():
    first = pp.use_backend("test-recording", label="first").backend
    pp.WorkflowFunction(double, n_broadcast_samples=2)(pp.Normal(0, 1))
    assert session_for(first).started
    pp.use_backend("test-recording", label="second")
    pp.current_backend()  # the next lookup settles the replacement
    assert not session_for(first).started
    assert ("exit", "first") in RecordingBackend.events


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("PROBPIPE_BACKEND", "test-recording")
    assert pp.current_backend().name == "test-recording"


def test_precedence_option_over_use_backend_over_env(monkeypatch):
    wf = pp.WorkflowFunction(double, n_broadcast_samples=2)
    monkeypatch.setenv("PROBPIPE_BACKEND", "test-recording")
    assert backend_of(wf(pp.Normal(0, 1))) == "test-recording"  # env over default
    with pp.use_backend("sequential"):
        assert backend_of(wf(pp.Normal(0, 1))) == "sequential"  # use_backend over env
        pinned = wf.with_options(backend="test-recording")
        assert backend_of(pinned(pp.Normal(0, 1))) == "test-recording"  # option first


def test_unknown_backend_lists_the_known_names():
    with pytest.raises(
        pp.BackendNotFoundError,
        match=r"unknown backend 'prefect-rey'.*"
        r"Did you mean 'prefect-ray'.*sequential",
    ):
        pp.use_backend("prefect-rey")
    with pytest.raises(ValueError, match="prefect-dask"):  # also a ValueError
        pp.WorkflowFunction(double, backend="nope")


def test_missing_packages_give_the_install_command():
    with pytest.raises(
        pp.BackendUnavailableError,
        match=r"pp_module_that_is_not_installed.*pip install probpipe-imaginary",
    ):
        pp.use_backend("test-not-installed")
    info = pp.available_backends()["test-not-installed"]
    assert info.installed is False and info.install_hint == "pip install probpipe-imaginary"


@pytest.mark.parametrize(
    ("name", "options", "error", "match"),
    [
        ("prefect-ray", {"adress": "auto"}, TypeError, r"'adress'.*Did you mean 'address'"),
        ("prefect-ray", {"address": "localhost"}, ValueError, r"Ray address.*'localhost'"),
        ("prefect-ray", {"address": 6379}, ValueError, "Ray address"),
        ("prefect-dask", {"address": "127.0.0.1:8786"}, ValueError, r"tcp://"),
        ("prefect-dask", {"n_workers": 0}, ValueError, "n_workers"),
        ("prefect", {"max_workers": 0}, ValueError, "max_workers"),
        ("prefect", {"max_workers": "2"}, TypeError, "max_workers"),
        ("sequential", {"workers": 2}, TypeError, "'workers'"),
    ],
)
def test_options_are_validated_when_use_backend_is_called(name, options, error, match):
    with pytest.raises(error, match=match):
        pp.use_backend(name, **options)
    assert pp.current_backend().name == "sequential"  # nothing changed


def test_valid_options_start_nothing_until_used():
    choice = pp.use_backend("prefect-dask", n_workers=1)
    assert choice.options["n_workers"] == 1
    assert not session_for(choice.backend).started


def test_available_backends_describes_each():
    infos = pp.available_backends()
    assert {"sequential", "prefect", "prefect-dask", "prefect-ray"} <= set(infos)
    assert infos["sequential"].provenance_tag == "off"
    assert all(
        infos[n].provenance_tag == "task" for n in ("prefect", "prefect-dask", "prefect-ray")
    )
    assert all(
        infos[n].description for n in ("sequential", "prefect", "prefect-dask", "prefect-ray")
    )
    assert infos["prefect-ray"].install_hint == "pip install 'probpipe[ray]'"
