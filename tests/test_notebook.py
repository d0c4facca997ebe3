"""Notebook habits: a re-run setup cell, functions defined in cells, a real Jupyter kernel.

``use_backend`` with the name and options of the active backend hands back
that backend (API.md section 4): nothing restarts. Different options replace
it, and the replaced backend stops only what it started.

The kernel test runs examples/notebook.ipynb in a real IPython kernel
(nbclient): a lambda and a closure defined in cells, a bootstrap on
prefect-ray, sequential and ray with identical results, the setup cell run
again, the progress bar as a notebook widget. One kernel, one Ray, one Prefect
server for the whole notebook.
"""

from __future__ import annotations

import json
import time

import pytest

import probpipe as pp
from probpipe._session import session_for
from support import REPO, alive

NOTEBOOK = REPO / "examples" / "notebook.ipynb"


# ---------------------------------------------------------------------------
# use_backend reuse (an in-process backend that records its lifecycle)
# ---------------------------------------------------------------------------


class LifecycleBackend(pp.ExecutionBackend):
    """Runs rows in this process and records every start and stop."""

    name = "test-lifecycle"
    provenance_tag = "lifecycle"
    ships_to_processes = False
    option_defaults = {"label": "a", "workers": 1}
    events: list[tuple[str, str]] = []

    def __enter__(self):
        self.events.append(("start", self.options["label"]))
        return self

    def __exit__(self, *exc):
        self.events.append(("stop", self.options["label"]))

    def map(self, fn, items):
        return [fn(item) for item in items]

    def gather(self, handles):
        return list(handles)


class _Plugin:
    @pp.hookimpl
    def probpipe_register_backends(self, register):
        register(LifecycleBackend)


@pytest.fixture(autouse=True)
def lifecycle():
    plugin = _Plugin()
    pp.register_plugin(plugin, name="tests.test_notebook")
    LifecycleBackend.events.clear()
    yield LifecycleBackend.events
    pp.unregister_plugin(plugin)


def call():
    return pp.WorkflowFunction(lambda x: 2 * x, n_broadcast_samples=2, seed=1)(pp.Normal(0, 1))


def test_rerunning_the_setup_cell_reuses_the_running_backend(lifecycle):
    first = pp.use_backend("test-lifecycle", label="a")
    call()
    again = pp.use_backend("test-lifecycle", label="a", workers=1)  # defaults spelled out
    call()
    assert again.backend is first.backend and again.reused
    assert pp.current_backend() is first.backend
    assert lifecycle == [("start", "a")]  # started once, never stopped


def test_a_with_block_of_the_active_backend_stops_nothing(lifecycle):
    active = pp.use_backend("test-lifecycle", label="a").backend
    call()
    with pp.use_backend("test-lifecycle", label="a") as inside:
        assert inside is active
        call()
    assert pp.current_backend() is active and session_for(active).started
    assert lifecycle == [("start", "a")]


def test_other_options_stop_the_old_backend_before_the_new_one_starts(lifecycle):
    old = pp.use_backend("test-lifecycle", label="a").backend
    call()
    new = pp.use_backend("test-lifecycle", label="b")
    assert not new.reused and new.backend is not old
    call()
    assert lifecycle == [("start", "a"), ("stop", "a"), ("start", "b")]
    assert not session_for(old).started


def test_the_environments_backend_is_reused_by_use_backend(lifecycle, monkeypatch):
    monkeypatch.setenv("PROBPIPE_BACKEND", "test-lifecycle")
    call()  # the environment's choice, default options
    choice = pp.use_backend("test-lifecycle")
    call()
    assert choice.reused and lifecycle == [("start", "a")]


# ---------------------------------------------------------------------------
# The notebook in a real Jupyter kernel
# ---------------------------------------------------------------------------

# Run in the kernel between cells: what is running, to compare before and
# after a re-run of the setup cell.
PROBE = """\
import json as _json, os as _os
import psutil as _psutil
import ray as _ray
from probpipe.engines import prefect as _prefect_engine
print("PROBE " + _json.dumps({
    "kernel": _os.getpid(),
    "ray_node": _ray.get_runtime_context().get_node_id() if _ray.is_initialized() else None,
    "prefect_api": _prefect_engine.api_url(),
    "prefect_server": _prefect_engine.server_pid(),
    "children": sorted(p.pid for p in _psutil.Process().children(recursive=True)),
}))
"""

# A user switching back to sequential in a later cell: the next lookup stops
# prefect-ray (Ray and the Prefect server it started), inside a running cell.
SWITCH = 'pp.use_backend("sequential")\nprint(pp.current_backend().name)'


def _stream(cell, name: str) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == name)


def _probe(cell) -> dict:
    [line] = [ln for ln in _stream(cell, "stdout").splitlines() if ln.startswith("PROBE ")]
    return json.loads(line[len("PROBE ") :])


def _problems(cell) -> list[str]:
    """Errors, tracebacks and warnings a cell printed."""
    found = [f"{o.ename}: {o.evalue}" for o in cell.get("outputs", []) if o.output_type == "error"]
    err = _stream(cell, "stderr")
    found += [ln for ln in err.splitlines() if "Traceback" in ln or "Warning" in ln]
    return found


@pytest.mark.prefect
@pytest.mark.ray
@pytest.mark.slow
def test_notebook_runs_in_a_real_kernel(tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell

    nb = nbformat.read(NOTEBOOK, as_version=4)
    setup, calls, compare = 1, 3, 4
    assert "use_backend" in nb.cells[setup].source
    n = len(nb.cells)
    nb.cells += [new_code_cell(PROBE), new_code_cell(PROBE), new_code_cell(SWITCH)]
    nb.cells += [new_code_cell(PROBE)]
    probe_first, probe_again, switch, probe_after = n, n + 1, n + 2, n + 3

    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    kernel_log = tmp_path / "kernel.log"
    timings = {}
    with open(kernel_log, "w") as log, client.setup_kernel(stdout=log, stderr=log):
        start = time.perf_counter()
        for index in range(n):
            client.execute_cell(nb.cells[index], index)
        timings["notebook"] = time.perf_counter() - start
        client.execute_cell(nb.cells[probe_first], probe_first)
        printed_first = _stream(nb.cells[calls], "stdout")
        problems = {i: _problems(nb.cells[i]) for i in range(n)}

        start = time.perf_counter()  # the setup cell again, then the calls
        client.execute_cell(nb.cells[setup], setup)
        client.execute_cell(nb.cells[calls], calls)
        timings["rerun"] = time.perf_counter() - start
        client.execute_cell(nb.cells[probe_again], probe_again)
        for index in (setup, calls):
            problems[index] = _problems(nb.cells[index])

        client.execute_cell(nb.cells[switch], switch)
        client.execute_cell(nb.cells[probe_after], probe_after)
        problems[switch] = _problems(nb.cells[switch])
        start = time.perf_counter()
    timings["shutdown"] = time.perf_counter() - start
    print("notebook timings (s):", {k: round(v, 1) for k, v in timings.items()})

    # Identical results on sequential, prefect-ray and ray.
    lines = _stream(nb.cells[compare], "stdout").splitlines()
    assert [ln.split()[0] for ln in lines] == ["prefect-ray", "sequential", "ray"]
    assert all(ln.endswith("identical to sequential: True") for ln in lines), lines
    # The re-run setup cell kept Ray and the Prefect server: same answers, same engines.
    first, again = _probe(nb.cells[probe_first]), _probe(nb.cells[probe_again])
    assert first["ray_node"] and first["prefect_server"]
    assert (again["ray_node"], again["prefect_server"], again["prefect_api"]) == (
        first["ray_node"],
        first["prefect_server"],
        first["prefect_api"],
    )
    assert _stream(nb.cells[calls], "stdout") == printed_first
    # Progress: a notebook widget per call (ipywidgets is in the dev extra).
    widgets = [
        o
        for o in nb.cells[calls].outputs
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(widgets) == 2
    assert {problems[i] == [] for i in problems} == {True}, problems

    # Switching to sequential stopped what prefect-ray started, inside the cell.
    after = _probe(nb.cells[probe_after])
    assert _stream(nb.cells[switch], "stdout").strip() == "sequential"
    assert after["ray_node"] is None and after["prefect_api"] is None
    deadline = time.monotonic() + 30
    while alive(first["children"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(first["children"]) == [], "processes of prefect-ray outlived it"
    # The kernel exited by itself on the shutdown request, quietly.
    assert alive([first["kernel"]]) == []
    noise = [
        ln
        for ln in kernel_log.read_text(errors="replace").splitlines()
        if ln.strip() and "IPKernelApp" not in ln
    ]
    assert noise == [], noise
