"""Where users outgrow one machine: multi-node Ray, Ray Client, Ray Jobs, lost nodes
and workers, wrong addresses.

Everything listens on 127.0.0.1 and is stopped by process id (never ``ray stop``,
which stops every Ray on the host). Started once for the module:

* ``multinode``: ``ray.cluster_utils.Cluster`` in its own process
  (tests/cluster_host.py): a zero-CPU head, where drivers connect, and two
  one-CPU worker nodes;
* ``ray_head``: one ``ray start --head --block`` as the guide starts it (token
  authentication on, as Ray 2.60 does by default), with its dashboard for
  ``ray job submit`` and its Ray Client server, on free ports.

Each Ray driver runs in a fresh interpreter, as a user's script does: Ray allows
one connection per process, and this process may already run a local Ray.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

import probpipe as pp
from probpipe.testing import _rows
from support import REPO, VENV_BIN, Started, alive, free_port, wait_for_port

pytestmark = pytest.mark.ray

# Environment a user's shell would not have: the test session's own settings.
_NOT_A_USERS_ENV = ("RAY_ADDRESS", "RAY_AUTH_MODE", "PROBPIPE_BACKEND")


def run_driver(code: str, env: dict | None = None, timeout: float = 240) -> dict:
    """Run ``code`` as a user's script; it prints one JSON line last."""
    full_env = {k: v for k, v in os.environ.items() if k not in _NOT_A_USERS_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**full_env, **(env or {})},
    )
    if proc.returncode != 0:
        raise AssertionError(f"driver failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out = json.loads([line for line in proc.stdout.splitlines() if line.strip()][-1])
    out["_stderr"] = proc.stderr
    return out


# A row that says which Ray node ran it; defined in each driver's __main__, so
# it travels by value (cloudpickle) and needs no module on the workers.
VALUE_ON_NODE = """
def value_on_node(x, rng):
    import time, ray
    time.sleep(0.3)  # long enough that both nodes get rows
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return [float(x) + float(rng.normal()), node]
"""


# ---------------------------------------------------------------------------
# Clusters and servers, once for the module
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_api_url(_ray_clusters):
    """This test session's Prefect API, for drivers (no server per script).

    Asks for the clusters first, so the API starts while they boot.
    """
    from probpipe.engines import prefect as prefect_engine
    from probpipe.testing import shared_backend

    pp.WorkflowFunction(float, backend=shared_backend("prefect"), n_broadcast_samples=2, seed=1)(
        pp.Normal(0, 1)
    )
    return prefect_engine.api_url()


class MultinodeHost:
    """tests/cluster_host.py in its own process: zero-CPU head + two one-CPU workers."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's sockets live here
        self.log = Path(self.root) / "host.log"
        script = Path(__file__).with_name("cluster_host.py")
        agent_port = free_port()  # the head's dashboard agent: 52365 by default
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), "2", str(agent_port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "RAY_TMPDIR": self.root},
                start_new_session=True,
            )

    def ready(self) -> dict:
        line = self.proc.stdout.readline()  # the host prints its cluster once it is up
        if not line:
            raise RuntimeError(f"cluster_host.py failed: {self.log.read_text(errors='replace')}")
        return {**json.loads(line), "root": self.root, "remove": self.remove}

    def remove(self, node_id: str) -> None:
        self.proc.stdin.write(f"remove {node_id}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == f"removed {node_id}"

    def stop(self) -> None:
        try:
            pids = [self.proc.pid] + [
                c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)
            ]
        except psutil.NoSuchProcess:
            pids = []
        self.proc.stdin.close()  # the host shuts its cluster down
        try:
            self.proc.wait(timeout=60)
        finally:
            for pid in alive(pids):
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(self.root, ignore_errors=True)


class RayHead:
    """`ray start --head --block` as the guide starts it, on free ports, with its
    dashboard (for `ray job submit`) and Ray Client server."""

    def __init__(self) -> None:
        self.ports = {
            "port": free_port(),
            "ray-client-server-port": free_port(),
            "dashboard-port": free_port(),
            "dashboard-agent-listen-port": free_port(),  # 52365 by default: one head per host
        }
        self.temp_dir = temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")
        self.head = Started(
            [
                str(VENV_BIN / "ray"),
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=2",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--temp-dir={temp_dir}",
                "--disable-usage-stats",
                *(f"--{name}={port}" for name, port in self.ports.items()),
            ],
            Path(temp_dir) / "head.log",
            env={"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
        )

    def stop(self) -> None:
        self.head.stop()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def ready(self) -> dict:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in self.head.log.read_text(errors="replace"):
            if time.monotonic() > deadline or self.head.proc.poll() is not None:
                raise RuntimeError(f"ray start failed: {self.head.log.read_text(errors='replace')}")
            time.sleep(0.2)
        wait_for_port(self.ports["ray-client-server-port"])
        return {
            "gcs": f"127.0.0.1:{self.ports['port']}",
            "client": f"ray://127.0.0.1:{self.ports['ray-client-server-port']}",
            "dashboard": f"127.0.0.1:{self.ports['dashboard-port']}",
            "pids": self.head.pids,
        }


@pytest.fixture(scope="module")
def _ray_clusters():
    """Both Ray clusters, started at the same time (each takes seconds); stopped by pid."""
    host, head = MultinodeHost(), RayHead()
    yield host, head
    head.stop()
    host.stop()


@pytest.fixture(scope="module")
def multinode(_ray_clusters):
    return _ray_clusters[0].ready()


@pytest.fixture(scope="module")
def ray_head(_ray_clusters):
    return _ray_clusters[1].ready()


@pytest.fixture(scope="module")
def http_server():
    """Any web server: what a wrong port often turns out to be."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def dask_with_dashboard(tmp_path_factory):
    """A Dask scheduler with its dashboard (the realistic wrong port: 8787 for 8786)."""
    port, dashboard = free_port(), free_port()
    scheduler = Started(
        [
            str(VENV_BIN / "dask"),
            "scheduler",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--dashboard-address=127.0.0.1:{dashboard}",
        ],
        tmp_path_factory.mktemp("dask-dashboard") / "scheduler.log",
    )
    wait_for_port(port)
    wait_for_port(dashboard)
    yield {"scheduler": f"tcp://127.0.0.1:{port}", "dashboard": f"127.0.0.1:{dashboard}"}
    scheduler.stop()


# ---------------------------------------------------------------------------
# Multi-node Ray on one machine
# ---------------------------------------------------------------------------


def test_multinode_auto_and_explicit_address_use_both_worker_nodes(multinode, prefect_api_url):
    """The production pattern: the driver on a zero-CPU node, "auto" via RAY_ADDRESS."""
    address = multinode["address"]
    out = run_driver(
        f"""
        import json, logging
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("probpipe").setLevel(logging.INFO)
        import probpipe as pp
        {textwrap.indent(VALUE_ON_NODE, " " * 8).strip()}
        f = pp.WorkflowFunction(value_on_node, seed=7, chunksize=1)
        out = {{}}
        for name, address in [("prefect-ray", "auto"), ("ray", {address!r})]:
            with pp.use_backend(name, address=address):
                r = f(x=pp.sweep(range(6)))
            out[name] = {{"rows": [r[i] for i in range(6)],
                          "gcs": r.provenance.metadata["backend_options"]["gcs_address"]}}
        seq = f.with_options(backend="sequential")(x=pp.sweep(range(6)))
        out["sequential"] = [seq[i][0] for i in range(6)]
        print(json.dumps(out))
        """,
        env={"RAY_ADDRESS": address, "PREFECT_API_URL": prefect_api_url},
    )
    for name in ("prefect-ray", "ray"):
        rows = out[name]["rows"]
        assert [value for value, _ in rows] == out["sequential"], name  # bit-identical
        assert {node for _, node in rows} == set(multinode["workers"]), name
        assert out[name]["gcs"] == address, name
    # "auto" says where it went, once; RAY_ADDRESS chose, so no warning.
    said = re.findall(r"INFO probpipe\.engines\.ray: address='auto' attached to .*", out["_stderr"])
    assert len(said) == 1 and f"GCS is {address} (3 node(s)" in said[0]
    assert "WARNING probpipe" not in out["_stderr"]


def test_auto_warns_when_several_clusters_run_and_nothing_chose(multinode, ray_head):
    """Without RAY_ADDRESS, "auto" takes the last `ray start`'s cluster, or any."""
    # RAY_TMPDIR points Ray's address file lookup at the multinode cluster's own,
    # so "auto" attaches there and never to a Ray this test did not start. (A
    # driver with RAY_TMPDIR set cannot hand objects to workers in Ray 2.60,
    # OwnerDiedError, so this driver only connects.)
    out = run_driver(
        """
        import json, logging
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("probpipe").setLevel(logging.INFO)
        import ray
        from probpipe.engines import ray as ray_engine
        ray_engine.acquire("auto")
        gcs = ray.get_runtime_context().gcs_address
        ray_engine.release()
        print(json.dumps({"gcs": gcs}))
        """,
        env={"RAY_TMPDIR": multinode["root"]},
    )
    assert out["gcs"] == multinode["address"]
    [warning] = re.findall(r"WARNING probpipe\.engines\.ray: .*", out["_stderr"])
    assert f"attached to the Ray cluster at {multinode['address']}, but" in warning
    assert ray_head["gcs"] in warning and "RAY_ADDRESS" in warning


def test_worker_node_lost_mid_call_loses_no_row(multinode, prefect_api_url, tmp_path):
    """A node removed while its rows run (a lost machine): every row comes back, the
    same as on sequential. Last of the multi-node tests: it leaves one worker node."""
    markers = tmp_path / "markers"
    markers.mkdir()
    script = f"""
        import json, os, time
        import probpipe as pp

        def marked_on_node(x, rng):
            import os, time, ray
            if ray.is_initialized():  # not in the sequential reference run
                node = ray.get_runtime_context().get_node_id()
                open(os.path.join({str(markers)!r}, f"{{int(x)}}-{{node}}-{{time.time_ns()}}"), "w")
                time.sleep(1.5)
            return float(x) + float(rng.normal())

        f = pp.WorkflowFunction(marked_on_node, seed=3, chunksize=1)
        with pp.use_backend("prefect-ray", address={multinode["address"]!r}):
            r = f(x=pp.sweep(range(6)))
        seq = f.with_options(backend="sequential")(x=pp.sweep(range(6)))
        print(json.dumps({{"values": [r[i] for i in range(6)],
                           "sequential": [seq[i] for i in range(6)],
                           "failures": r.provenance.metadata.get("failures")}}))
    """
    env = {k: v for k, v in os.environ.items() if k not in _NOT_A_USERS_ENV}
    env["PREFECT_API_URL"] = prefect_api_url
    with open(tmp_path / "out", "w") as stdout, open(tmp_path / "err", "w") as stderr:
        driver = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script)],
            stdout=stdout,
            stderr=stderr,
            cwd=REPO,
            env=env,
        )
    try:
        # Wait until both worker nodes have run a row; the node that just
        # started one is surely busy with it: take that node away at once.
        deadline = time.monotonic() + 180
        while len({m.name.split("-")[1] for m in markers.iterdir()}) < 2:
            assert driver.poll() is None, (tmp_path / "err").read_text()
            assert time.monotonic() < deadline, "rows never ran on both worker nodes"
            time.sleep(0.05)
        newest = max(markers.iterdir(), key=lambda m: int(m.name.split("-")[2]))
        lost = newest.name.split("-")[1]
        multinode["remove"](lost)
        driver.wait(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, (tmp_path / "err").read_text()
    out = json.loads((tmp_path / "out").read_text().splitlines()[-1])
    runs = [m.name.split("-") for m in markers.iterdir()]
    on_lost = {int(row) for row, node, _ in runs if node == lost}
    elsewhere = {int(row) for row, node, _ in runs if node != lost}
    assert on_lost & elsewhere, "no row was cut short by the node loss and run again"
    assert out["values"] == out["sequential"]  # every row, bit-identical
    assert not out["failures"]


# ---------------------------------------------------------------------------
# Ray Client and Ray Jobs against one `ray start --head`
# ---------------------------------------------------------------------------


def test_ray_client_with_token_auth_on_both_ray_backends(ray_head, prefect_api_url):
    """ray:// against a plain `ray start --head`: Ray 2.60 requires its auth token,
    which the user did not export (RAY_AUTH_MODE unset); probpipe sends it."""
    address = ray_head["client"]
    before = ray_head["pids"]()
    out = run_driver(
        f"""
        import json, os
        import probpipe as pp
        from probpipe.testing import _rows
        f = pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=8, seed=5)
        out = {{}}
        # Both backends share the process's one Ray Client connection.
        with pp.use_backend("ray", address={address!r}):
            out["ray"] = f(pp.Normal(0, 1)).samples.tolist()
            with pp.use_backend("prefect-ray", address={address!r}):
                r = f(pp.Normal(0, 1))
                out["prefect-ray"] = r.samples.tolist()
        out["gcs"] = r.provenance.metadata["backend_options"]["gcs_address"]
        out["sequential"] = f.with_options(backend="sequential")(pp.Normal(0, 1)).samples.tolist()
        out["auth_mode"] = os.environ.get("RAY_AUTH_MODE")
        print(json.dumps(out))
        """,
        env={"PREFECT_API_URL": prefect_api_url},
    )
    assert out["ray"] == out["sequential"]
    assert out["prefect-ray"] == out["sequential"]
    assert out["gcs"] == ray_head["gcs"]
    assert out["auth_mode"] == "token"  # set up by probpipe, because the head asked
    assert alive(before) == before  # the head is left running


def test_ray_client_with_a_wrong_token_says_so(ray_head):
    """Instead of Ray Client's 30 s wait and "connection timeout"."""
    out = run_driver(
        f"""
        import json
        import probpipe as pp
        from probpipe.testing import _rows
        try:
            with pp.use_backend("ray", address={ray_head["client"]!r}):
                pp.WorkflowFunction(_rows.identity, n_broadcast_samples=2, seed=1)(pp.Normal(0, 1))
        except pp.BackendConnectionError as exc:
            print(json.dumps({{"error": str(exc)}}))
        """,
        env={"RAY_AUTH_TOKEN": "not-the-heads-token"},
    )
    assert "requires token authentication, and it refuses the token found here" in out["error"]
    assert "ray get-auth-token" in out["error"]


def test_ray_job_submit_of_a_script_using_auto(ray_head, prefect_api_url, tmp_path):
    """A script submitted with `ray job submit` runs on the head; "auto" finds it."""
    (tmp_path / "job.py").write_text(
        textwrap.dedent("""
        import json
        import probpipe as pp
        from probpipe.testing import _rows
        f = pp.WorkflowFunction(_rows.noisy_value, n_broadcast_samples=8, seed=11)
        with pp.use_backend("prefect-ray", address="auto"):
            r = f(pp.Normal(0, 1))
        seq = f.with_options(backend="sequential")(pp.Normal(0, 1))
        print("JOB-RESULT", json.dumps({
            "same": r.samples.tolist() == seq.samples.tolist(),
            "gcs": r.provenance.metadata["backend_options"]["gcs_address"],
        }))
        """)
    )
    # The job's own env vars: one that probpipe also gives its workers (Ray
    # refuses to merge the two unless probpipe leaves the job's alone).
    runtime_env = {"env_vars": {"PREFECT_API_URL": prefect_api_url, "RAY_LOGGER_LEVEL": "error"}}
    proc = subprocess.run(
        [
            str(VENV_BIN / "ray"),
            "job",
            "submit",
            f"--address=http://{ray_head['dashboard']}",
            f"--working-dir={tmp_path}",
            f"--runtime-env-json={json.dumps(runtime_env)}",
            "--",
            sys.executable,
            "job.py",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        # Ray's CLIs need the token mode spelled out (documented in the guide).
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("JOB-RESULT")]
    result = json.loads(line.removeprefix("JOB-RESULT"))
    assert result == {"same": True, "gcs": ray_head["gcs"]}


# ---------------------------------------------------------------------------
# A Dask worker killed mid-call
# ---------------------------------------------------------------------------


@pytest.mark.dask
def test_dask_worker_killed_mid_call_loses_no_row(external_dask_scheduler, tmp_path):
    """SIGKILL to the worker process running a row (its nanny restarts it)."""
    address = external_dask_scheduler["address"]
    worker_pids = set(external_dask_scheduler["workers"].pids())
    markers = tmp_path / "markers"
    markers.mkdir()
    killed = []

    def kill_the_first_row_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            started = [int(m.name.split("-")[2]) for m in markers.iterdir()]
            if started:
                pid = started[0]
                assert pid in worker_pids  # only ever a process this session started
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_first_row_worker)
    killer.start()
    f = pp.WorkflowFunction(_rows.marked_value, seed=4, chunksize=1)
    args = {"x": pp.sweep(range(6)), "marker_dir": str(markers), "seconds": 0.5}
    with pp.use_backend("prefect-dask", address=address):
        got = f(**args)
    killer.join()
    assert killed, "no row started"
    assert len(list(markers.iterdir())) > 6  # the killed row ran again
    (tmp_path / "seq").mkdir()
    want = f.with_options(backend="sequential")(**{**args, "marker_dir": str(tmp_path / "seq")})
    assert [got[i] for i in range(6)] == [want[i] for i in range(6)]
    assert not got.provenance.metadata.get("failures")


# ---------------------------------------------------------------------------
# Wrong addresses: a clear error within seconds, before anything runs
# ---------------------------------------------------------------------------

WRONG = [
    # backend, address (filled from the fixtures), what the error must say
    ("prefect-dask", "tcp://{http}", r"is not a Dask scheduler: an HTTP server \(HTTP/1"),
    (
        "prefect-dask",
        "tcp://{dask_dashboard}",
        r"a Dask dashboard .* belongs to the scheduler at '{dask_scheduler}': use address=",
    ),
    ("prefect-ray", "{http}", r"is not a Ray head \(GCS\): an HTTP server"),
    ("ray", "ray://{http}", r"is not a Ray Client server: an HTTP server"),
    ("ray", "{ray_dashboard}", r"is not a Ray head \(GCS\): the Ray dashboard"),
    ("prefect-ray", "ray://{ray_gcs}", r"a Ray head's GCS answers there\. Use address='{ray_gcs}'"),
    ("ray", "{ray_client_hostport}", r"a Ray Client server answers there\. Use address='ray://"),
    (
        "prefect-dask",
        "tcp://no-such-host.invalid:8786",
        r"'no-such-host\.invalid' does not resolve",
    ),
    ("ray", "127.0.0.1:{closed}", r"nothing listens on port \d+ there \(connection refused\)"),
    # Unroutable: refused, timed out, or (behind a proxy, as here) an HTTP answer;
    # never a hang or numpy's MemoryError from reading a reply as a frame length.
    ("prefect-dask", "tcp://10.255.255.1:8786", r"'tcp://10\.255\.255\.1:8786'"),
    ("ray", "10.255.255.1:6379", r"'10\.255\.255\.1:6379'"),
]


@pytest.mark.parametrize(
    ("name", "address", "says"), WRONG, ids=[re.sub("[{}]", "", f"{n}-{a}") for n, a, _ in WRONG]
)
def test_wrong_address_fails_fast_naming_what_answers(
    name, address, says, http_server, dask_with_dashboard, ray_head
):
    values = {
        "http": http_server,
        "dask_dashboard": dask_with_dashboard["dashboard"],
        "dask_scheduler": dask_with_dashboard["scheduler"],
        "ray_dashboard": ray_head["dashboard"],
        "ray_gcs": ray_head["gcs"],
        "ray_client_hostport": ray_head["client"].removeprefix("ray://"),
        "closed": free_port(),
    }
    address = address.format(**values)
    says = says.format(**{k: re.escape(v) if isinstance(v, str) else v for k, v in values.items()})
    f = pp.WorkflowFunction(_rows.identity, n_broadcast_samples=2, seed=1)
    start = time.monotonic()
    with (
        pytest.raises(pp.BackendConnectionError, match=says) as caught,
        pp.use_backend(name, address=address),
    ):
        f(pp.Normal(0, 1))
    assert time.monotonic() - start < 15
    assert repr(address) in str(caught.value)


def test_stale_ray_address_with_auto_fails_fast():
    """A RAY_ADDRESS left over from a cluster that is gone: "auto" says so at once."""
    stale = f"127.0.0.1:{free_port()}"
    out = run_driver(
        """
        import json
        import probpipe as pp
        from probpipe.testing import _rows
        try:
            with pp.use_backend("ray", address="auto"):
                pp.WorkflowFunction(_rows.identity, n_broadcast_samples=2, seed=1)(pp.Normal(0, 1))
        except pp.BackendConnectionError as exc:
            print(json.dumps({"error": str(exc)}))
        """,
        env={"RAY_ADDRESS": stale},
    )
    assert out["error"].startswith(f"address='auto' uses RAY_ADDRESS={stale}, and: cannot reach")
