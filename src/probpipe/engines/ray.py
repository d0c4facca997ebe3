"""One Ray connection per process, shared by every Ray-based backend.

Ray allows one ``ray.init`` per process, so the Prefect-Ray adapter and the
native Ray plugin share this connection, reference-counted:

``address=None``
    Start a private local Ray (bound to 127.0.0.1) on first use; shut it
    down when the last backend using it closes.
``address="auto"``
    Attach to the Ray already running on this machine (``ray start --head``),
    or fail with a message saying how to start one. Never starts a cluster:
    ``RayTaskRunner(address="auto")`` would silently start a private one.
    Logs (INFO) which cluster it attached to, and warns when the machine runs
    several and ``RAY_ADDRESS`` does not say which.
``address="host:port"`` / ``address="ray://host:10001"``
    The head's GCS (joined as a driver) / Ray Client. What answers there is
    checked first (:mod:`._address`), and Ray's auth token is set up when the
    head asks for it. Attached connections are only disconnected, never stopped.

If the user called ``ray.init`` themselves, that connection is used as is.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import numbers
import os
import re
import sys
import threading
from typing import Any

from .._errors import BackendConnectionError
from .._futures import TaskFuture, follow
from .._worker import SharedRef
from ._address import RayService, check_ray, token_accepted
from ._logs import engine_log_level, quiet_this_process, worker_env

logger = logging.getLogger(__name__)

_LOOPBACK_FLAG = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_ADDRESS = re.compile(r"^(auto|ray://[^\s:/]+:\d+|[^\s:/]+:\d+)$")

_lock = threading.Lock()
_users = 0
_mode = ""  # "started" (stop it), "attached" (disconnect) or "user" (leave it)
_address: Any = "unset"  # what the current connection was made for
_saved_flag: str | None = None


def check_address(address: Any) -> None:
    """Validate an ``address`` option without connecting."""
    if address is None:
        return
    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise ValueError(
            f"Ray address must be None (start a local Ray), 'auto' (attach to the Ray "
            f"running on this machine), 'ray://host:port' (Ray Client) or 'host:port', "
            f"got {address!r}"
        )


def _no_cluster_running() -> bool:
    from ray._private import services

    if os.environ.get("RAY_ADDRESS"):
        return False
    return not services.find_gcs_addresses() and services.find_bootstrap_address(None) is None


def _merged_runtime_env(user: dict[str, Any] | None, extra_env: dict[str, str] | None) -> dict:
    """The job's runtime_env: the user's own, plus what workers need from probpipe.

    Workers import the user's modules by reference, so they get this
    process's sys.path, and the engine log level. The user's env_vars win.
    """
    env = {**worker_env(), **(extra_env or {})}
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    # In a Ray Job, Ray refuses an env var the job's own runtime_env also sets
    # ("Failed to merge the Job's runtime env"); the job's value is the user's.
    for key in _ray_job_env_vars():
        env.pop(key, None)
    merged = dict(user or {})
    merged["env_vars"] = {**env, **merged.get("env_vars", {})}
    return merged


def _ray_job_env_vars() -> dict[str, str]:
    """The env_vars of the Ray Job this driver runs in (``ray job submit``), if any."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")  # set by Ray's job supervisor
    try:
        return dict((json.loads(raw or "{}").get("runtime_env") or {}).get("env_vars") or {})
    except (ValueError, AttributeError, TypeError):
        return {}


def acquire(
    address: str | None,
    init_options: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
) -> None:
    """Connect (or start) Ray for one more user."""
    global _users, _mode, _address, _saved_flag
    check_address(address)
    # A wrong host:port fails here in about a second, naming what answers
    # there, instead of in Ray's minutes of retries. "auto" uses RAY_ADDRESS
    # (or the last `ray start`'s address file), so a stale one is checked too,
    # unless this process is connected already (then "auto" resolves to nothing).
    target = address
    if address == "auto":
        ray_module = sys.modules.get("ray")
        connected = _users > 0 or (ray_module is not None and ray_module.is_initialized())
        target = None if connected else _auto_target()
    head = _check_head(address, target) if target else None
    with _lock:
        if _users and _address != address:
            raise BackendConnectionError(
                f"Ray is already connected to {_describe(_address)} in this process; a "
                f"backend cannot use {_describe(address)} at the same time (Ray allows one "
                "connection per process). Close the other Ray backend first."
            )
        if _users:
            _users += 1
            return
        quiet_this_process()
        import ray

        level = getattr(logging, engine_log_level())
        if level >= logging.WARNING:
            # Ray 2.60 warns about token auth on every init; it is expected here.
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
                logging.ERROR
            )
        if ray.is_initialized():
            _mode = "user"  # the user's own connection: use it, never stop it
        else:
            if address == "auto" and _no_cluster_running():
                raise BackendConnectionError(
                    "address='auto' attaches to a Ray cluster already running on this "
                    "machine, and none is running. Start one with `ray start --head "
                    "--node-ip-address=127.0.0.1` (with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
                    "in its environment, Ray 2.60 keeps every port on 127.0.0.1), or use "
                    "address=None to let probpipe start a private local Ray."
                )
            options = {"logging_level": level, "log_to_driver": True, **(init_options or {})}
            options["runtime_env"] = _merged_runtime_env(options.get("runtime_env"), extra_env)
            if address is None:
                options.setdefault("include_dashboard", False)
            if head is not None and head.needs_token:
                _use_auth_token(target, head.kind)
            if _targets_loopback(address):
                _use_loopback_flag()
            try:
                # "local" always starts a new private Ray; a bare ray.init() would
                # join a cluster started with `ray start` if one is running.
                _init_ray(address="local" if address is None else address, **options)
            except ConnectionError as exc:
                _restore_loopback_flag()
                raise BackendConnectionError(
                    f"could not connect to Ray at {address!r}: {exc}"
                ) from exc
            except BaseException:
                _restore_loopback_flag()
                raise
            _mode = "started" if address is None else "attached"
            if address == "auto":
                _report_auto_attach()
        _address = address
        _users = 1


def _init_ray(address: str, **options: Any) -> None:
    """``ray.init``, with a second try where Ray Client's server failed to start.

    The head's Ray Client proxy forks one server per client; under load that
    child sometimes dies at once (gRPC: "skipping fork() handlers", then
    "Starting Ray client server failed", or "Initialization failure from
    server" when the proxy finds it a zombie: a few times in about 25
    connections while testing here). The next connection gets a new one.
    """
    import ray

    for attempt in range(3):
        try:
            ray.init(address=address, **options)
            return
        except ConnectionError as exc:
            server_died = any(
                sign in str(exc)
                for sign in ("Starting Ray client server failed", "Initialization failure")
            )
            if attempt == 2 or not (address.startswith("ray://") and server_died):
                raise
            logger.warning("Ray Client: the head's server for this client died; retrying")


def release() -> None:
    """Drop one user; the last one shuts down a Ray probpipe started (or disconnects)."""
    global _users, _mode, _address, _saved_flag
    with _lock:
        _users = max(0, _users - 1)
        if _users or not _mode:
            return
        import ray

        if _mode in ("started", "attached") and ray.is_initialized():
            # For a Ray we started this stops its processes; for an attached
            # cluster it only disconnects this driver. Never `ray stop`, which
            # would stop every Ray on the host.
            ray.shutdown()
        _restore_loopback_flag()
        _mode, _address = "", "unset"


def _report_auto_attach() -> None:
    """Say which cluster ``address="auto"`` attached to; warn if it was a guess.

    Ray picks the head in ``RAY_ADDRESS``, else the one in
    ``/tmp/ray/ray_current_cluster``, else any running one (a head started with
    another ``--temp-dir`` is not recorded there), so on a machine with several
    heads "auto" may attach to someone else's.
    """
    import ray
    from ray._private import services

    gcs = ray.get_runtime_context().gcs_address
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    services.find_gcs_addresses.cache_clear()  # Ray caches what it found earlier
    heads = sorted(services.find_gcs_addresses() | {gcs})
    chosen = os.environ.get("RAY_ADDRESS")
    logger.info(
        "address='auto' attached to the Ray cluster whose GCS is %s (%d node(s)%s)",
        gcs,
        nodes,
        f", from RAY_ADDRESS={chosen}" if chosen else "",
    )
    if len(heads) > 1 and not chosen:
        logger.warning(
            "address='auto' attached to the Ray cluster at %s, but %d Ray clusters run on "
            "this machine (GCS %s). To choose one, set RAY_ADDRESS=<host:port> or pass "
            "address='<host:port>'.",
            gcs,
            len(heads),
            ", ".join(heads),
        )


def _targets_loopback(address: str | None) -> bool:
    """Whether the Ray we start or attach to lives on 127.0.0.1."""
    if address is None:
        return True
    if address.startswith("ray://"):
        return False  # Ray Client talks to its server only; nothing to map
    if address == "auto":
        from ray._private import services

        target = _auto_target()
        if target and target.startswith("ray://"):
            return False
        found = {target} if target else services.find_gcs_addresses()
        return any(a.startswith(("127.", "localhost")) for a in found)
    return address.startswith(("127.", "localhost"))


def _check_head(address: str, target: str) -> RayService | None:
    """What answers at ``target`` (the address, or what "auto" resolves to)."""
    if address != "auto":
        return check_ray(target)
    if target == "auto" or not _ADDRESS.match(target):
        return None  # Ray will say what is wrong with it
    try:
        return check_ray(target)
    except BackendConnectionError as exc:
        source = (
            f"RAY_ADDRESS={target}"
            if os.environ.get("RAY_ADDRESS")
            else "the address file of the last `ray start` on this machine"
        )
        raise BackendConnectionError(
            f"address='auto' uses {source}, and: {exc} (Stale? Unset RAY_ADDRESS or "
            "restart the head.)"
        ) from None


def _auto_target() -> str | None:
    """The address ``ray.init("auto")`` will use, when known beforehand.

    Ray takes ``RAY_ADDRESS``, else the address file of the last ``ray start``
    (``/tmp/ray/ray_current_cluster``, under ``RAY_TMPDIR`` if set), else any
    head running on this machine (None here).
    """
    from ray._private import services

    return os.environ.get("RAY_ADDRESS") or services.find_bootstrap_address(None)


_flag_set = False


def _use_auth_token(address: str, kind: str) -> None:
    """Send Ray's auth token to a head that asks for it (``host:port`` or ``ray://``).

    Ray 2.60's ``ray start --head`` turns token authentication on, but
    ``ray.init`` sets the token up only for ``address=None``/``"auto"``: for an
    explicit GCS address it fails with "Failed to connect", and Ray Client
    waits 30 s and fails with "connection timeout". The token is looked up
    as Ray does (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``)
    and checked against the head before connecting.
    """
    where = f"The Ray head at {address!r} requires token authentication"
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.lower() != "token":
        raise BackendConnectionError(
            f"{where}, but RAY_AUTH_MODE={mode} in this process. Unset RAY_AUTH_MODE "
            "(probpipe then sends the token) or set RAY_AUTH_MODE=token."
        )
    from ray._raylet import AuthenticationTokenLoader

    copy_it = (
        "Copy the head's token: `ray get-auth-token` on the head prints it; save it to "
        "~/.ray/auth_token here, or set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH)."
    )
    if not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        raise BackendConnectionError(f"{where}, and no token was found here. {copy_it}")
    if not token_accepted(address, kind):
        raise BackendConnectionError(
            f"{where}, and it refuses the token found here (RAY_AUTH_TOKEN, "
            f"RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token). {copy_it}"
        )
    if mode is None:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()  # RAY_AUTH_MODE=token here and in child processes


def _use_loopback_flag() -> None:
    """Keep Ray on 127.0.0.1 (P12: by default it maps localhost to the routable IP).

    This process reads Ray's constant; the processes Ray spawns read the
    environment variable.
    """
    global _saved_flag, _flag_set
    from ray._private import ray_constants

    _saved_flag = os.environ.get(_LOOPBACK_FLAG)
    os.environ[_LOOPBACK_FLAG] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    _flag_set = True


def _restore_loopback_flag() -> None:
    global _saved_flag, _flag_set
    if not _flag_set:
        return
    _flag_set = False
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = _saved_flag != "0"
    if _saved_flag is None:
        os.environ.pop(_LOOPBACK_FLAG, None)
    else:
        os.environ[_LOOPBACK_FLAG] = _saved_flag
    _saved_flag = None


def owns_cluster() -> bool:
    return _mode == "started"


def connection_details() -> dict[str, Any]:
    """For provenance: the Ray version and the GCS address of the current connection.

    The GCS address is None when not connected, and under Ray Client (whose
    driver lives on the head; the ``address`` option names the server).
    """
    out: dict[str, Any] = {"gcs_address": None}
    if _users:
        import ray

        out["ray_version"] = ray.__version__
        try:
            out["gcs_address"] = ray.get_runtime_context().gcs_address
        except Exception:  # not available under Ray Client
            pass
    return out


def parallelism(hints: dict[str, Any] | None = None) -> int:
    """Tasks with these resource hints that fit at once: the cluster's CPUs over
    the CPUs each task takes (at least 1)."""
    import ray

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    per_task = (hints or {}).get("num_cpus")
    return max(1, int(cpus // per_task)) if per_task else cpus


def preimport(modules: tuple[str, ...]) -> None:
    """Have idle workers import ``modules`` now; nothing waits for it.

    A fresh worker's first task pays for its imports (Prefect's task engine:
    1-2 s here). Started when Ray starts, that overlaps with what the
    backend does next (the Prefect API's start) instead of delaying the
    first call.
    """
    import ray

    from .._worker import import_modules

    warm = ray.remote(num_cpus=1)(import_modules)
    for _ in range(parallelism()):
        warm.remote(modules)


def task_future(ref: Any) -> TaskFuture:
    """A future for one Ray task; ``cancel()`` stops it even while it runs.

    ``force=True`` ends the task's worker process: without it a running task
    only gets a KeyboardInterrupt, which a row blocked in C code (or one that
    swallows it) never sees, so fail fast, timeouts and Ctrl-C would wait.
    """
    done = ref.future()
    return follow(done.add_done_callback, done.result, stop=lambda: stop(ref))


def stop(ref: Any) -> None:
    """Stop a Ray task, even a running one (``force=True`` ends its worker process)."""
    import ray

    ray.cancel(ref, force=True)


def call_hints(base: dict[str, Any], call: Any) -> dict[str, Any]:
    """The resource hints of one call's tasks: the backend's, then the function's own.

    The function's ``resources=`` option wins. Hints no node can meet are
    refused here, before anything is submitted: Ray would accept such a task
    and wait for a node forever.
    """
    func = f"{call.func}()"
    own = check_resource_hints(call.options.get("resources") or {}, f"resources of {func}")
    hints = merge_resource_hints(base, own)
    check_feasible(hints, func, call.backend)
    return hints


def _describe(address: Any) -> str:
    if address is None:
        return "a local Ray started by probpipe"
    return repr(address)


class RayRef(SharedRef):
    """A value in Ray's object store; workers read it zero-copy where possible."""

    def __init__(self, object_ref: Any, key: str):
        self.object_ref = object_ref
        self.key = key

    def get(self) -> Any:
        import ray

        return ray.get(self.object_ref)


def put(value: Any, key: str) -> RayRef:
    import ray

    return RayRef(ray.put(value), key)


def is_worker_lost(exc: BaseException) -> bool:
    from ray import exceptions as rex

    lost = (
        rex.WorkerCrashedError,
        rex.NodeDiedError,
        rex.OutOfMemoryError,
        rex.LocalRayletDiedError,
        rex.ObjectLostError,
    )
    return isinstance(exc, lost) or isinstance(getattr(exc, "cause", None), lost)


# Resource hints: shared by the Ray backends (native and Prefect-Ray).
# The resource keywords of ``ray.remote`` a hint may set, and the name of the
# node resource each one draws on (custom resources keep their own names).
HINT_KEYS = ("num_cpus", "num_gpus", "memory", "resources")
_NODE_RESOURCE = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
_DEFAULT_TASK_CPUS = 1  # what Ray reserves for a task that sets no num_cpus


def check_resource_hints(hints: dict[str, Any], where: str) -> dict[str, Any]:
    """A validated copy of ``hints`` without the ``None`` entries.

    ``where`` starts every message (the backend option, or the function whose
    ``resources=`` option is wrong). Unknown keys and bad values raise
    ValueError, values of the wrong type TypeError.
    """
    out: dict[str, Any] = {}
    for key, value in hints.items():
        if key not in HINT_KEYS:
            close = difflib.get_close_matches(key, HINT_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"{where}: unknown resource hint {key!r}; {hint}Known: {', '.join(HINT_KEYS)}. "
                f"Custom Ray resources go inside 'resources', e.g. "
                f"resources={{'resources': {{{key!r}: 1}}}}."
            )
        if value is None:
            continue
        if key != "resources":
            out[key] = _quantity(f"{where}: {key}", value)
            continue
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError(
                f"{where}: resources must be a dict of custom Ray resources like "
                f"{{'accelerator': 1}}, got {value!r}"
            )
        for name in ("CPU", "GPU"):
            if name in value:
                raise ValueError(
                    f"{where}: resources: ask for {name} with num_{name.lower()}s, "
                    f"not resources={{{name!r}: ...}}"
                )
        out[key] = {
            name: _quantity(f"{where}: resources[{name!r}]", q) for name, q in value.items()
        }
    return out


def _quantity(what: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a non-negative number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be a non-negative number, got {value!r}")
    # Ray accepts only Python int/float (not NumPy scalars).
    return int(value) if float(value).is_integer() else float(value)


def merge_resource_hints(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``; custom ``resources`` are merged name by name."""
    merged = {**base, **override}
    if "resources" in base and "resources" in override:
        merged["resources"] = {**base["resources"], **override["resources"]}
    return merged


def check_feasible(hints: dict[str, Any], func: str, backend: str = "ray") -> None:
    """Raise ValueError if no alive node has everything one task asks for.

    Compares with the nodes' total resources: a task that fits a node runs
    once that node is free; one that fits no node would wait forever.
    """
    import ray

    # node resource -> (the hint that asks for it, quantity per task)
    asked = {"num_cpus": _DEFAULT_TASK_CPUS, **hints}
    demand = {_NODE_RESOURCE[k]: (k, q) for k, q in asked.items() if k in _NODE_RESOURCE}
    for name, quantity in hints.get("resources", {}).items():
        demand[name] = (f"resources[{name!r}]", quantity)
    demand = {name: (label, q) for name, (label, q) in demand.items() if q > 0}

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(n, 0) >= q for n, (_, q) in demand.items()) for node in nodes):
        return
    largest = {n: max((node.get(n, 0) for node in nodes), default=0) for n in demand}
    short = [
        f"{label}={q:g} (Ray resource {n!r}), but the largest node has {_amount(n, largest[n])}"
        for n, (label, q) in demand.items()
        if largest[n] < q
    ]
    if not short:  # every resource fits some node, just not all on the same one
        asked_for = ", ".join(f"{label}={q:g}" for label, q in demand.values())
        short = [f"{asked_for} together, which no single node has"]
    cluster = {n: q for n, q in ray.cluster_resources().items() if not n.startswith("node:")}
    have = ", ".join(f"{n} {_amount(n, q)}" for n, q in sorted(cluster.items())) or "nothing"
    raise ValueError(
        f"{func} on backend {backend!r}: no node in the Ray cluster can run a task asking for "
        f"{'; '.join(short)}. The cluster has: {have} ({len(nodes)} node(s)). Lower the "
        f"function's resources= option or the backend's resource options, or add a node "
        f"that has them (Ray would wait for one forever)."
    )


def _amount(resource: str, quantity: float) -> str:
    if resource in ("memory", "object_store_memory"):  # bytes
        return f"{quantity / 2**30:.3g} GiB"
    return f"{quantity:g}"
