"""What answers at a cluster address, found out in about a second, before an engine connects.

The engines wait a long time on a wrong address. ``distributed.Client`` pointed at an
HTTP port (the Dask dashboard, 8787, instead of the scheduler, 8786) blocked for over
300 s although given a 10 s timeout; ``ray.init`` on such a port retried the GCS for
over 150 s, and Ray Client gave up after 30 s with "connection timeout". A Dask client
reading a stranger's reply as a frame length tried to allocate 3 EiB (numpy
``MemoryError``). So probpipe opens one TCP connection first and looks at what answers:

* A Dask scheduler and a gRPC server (a Ray GCS or Ray Client server) both speak first:
  Dask sends its handshake, gRPC an HTTP/2 SETTINGS frame, within milliseconds.
* A server that stays silent gets one ``GET /`` and is named from its reply: an HTTP
  server, the Dask dashboard (whose JSON names its scheduler), the Ray dashboard.
* For Ray, one gRPC call without credentials then tells the GCS from the Ray Client
  server and says whether the head wants Ray's auth token (``UNAUTHENTICATED``).

Errors name the address, what answered there, and the fix.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass

from .._errors import BackendConnectionError

CONNECT_TIMEOUT = 5.0  # seconds for the TCP connection (a dropped SYN waits this long)
GREETING_WAIT = 1.0  # a Dask scheduler or gRPC server greets within milliseconds
REPLY_WAIT = 2.0  # for the reply to our one HTTP request
GRPC_TIMEOUT = 3.0


@dataclass(frozen=True)
class Answer:
    """What a server at host:port said."""

    kind: str  # "dask", "grpc", "http", "silent" or "other"
    description: str  # for messages: "an HTTP server (HTTP/1.1 200 OK, Server: ...)"
    hint: str = ""  # a fix specific to what answered, e.g. the scheduler's real address


def split_host_port(address: str) -> tuple[str, int]:
    """``("host", port)`` from ``scheme://host:port``, ``host:port`` or ``[v6]:port``."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def probe(host: str, port: int, *, greeting_wait: float = GREETING_WAIT) -> Answer:
    """Connect to host:port and classify what answers.

    Raises :class:`OSError` (``socket.gaierror`` for a name that does not resolve,
    ``ConnectionRefusedError``, ``TimeoutError``...) when nothing can be reached.
    """
    with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as sock:
        greeting = _read_greeting(sock, greeting_wait)
        if greeting:
            return _classify_greeting(greeting)
        # Silent: perhaps an HTTP server, which waits for a request.
        try:
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        except OSError:
            return Answer("silent", "a server that sent nothing and closed the connection")
        reply = _read_to_eof(sock, REPLY_WAIT)  # HTTP/1.0: the server closes
    if not reply:
        return Answer(
            "silent",
            f"a server that sent nothing within {greeting_wait:g} s and did not answer an "
            "HTTP request either",
        )
    if reply.startswith(b"HTTP/"):
        return _classify_http(host, port, reply)
    return _classify_greeting(reply)  # a late greeting (a busy server), or something else


def _read_greeting(sock: socket.socket, wait: float, limit: int = 4096) -> bytes:
    """What the server sends first, within ``wait`` seconds.

    A greeting comes in one or two segments: stop 50 ms after the first bytes.
    """
    data = b""
    deadline = time.monotonic() + wait
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(limit - len(data))
        except OSError:  # timed out, or reset by the peer
            break
        if not chunk:
            break
        data += chunk
        deadline = min(deadline, time.monotonic() + 0.05)
    return data


def _read_to_eof(sock: socket.socket, wait: float, limit: int = 65536) -> bytes:
    """Everything until the server closes, within ``wait`` seconds."""
    data = b""
    deadline = time.monotonic() + wait
    while len(data) < limit and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(limit - len(data))
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _classify_greeting(data: bytes) -> Answer:
    # distributed's TCP comm: 8-byte little-endian lengths, then a msgpack handshake.
    if b"pickle-protocol" in data or b"compression" in data[:200]:
        return Answer("dask", "a Dask scheduler (or worker)")
    # HTTP/2: a 9-byte frame header, type 4 (SETTINGS), stream 0.
    if len(data) >= 9 and data[3] == 0x04 and data[5:9] == b"\0\0\0\0":
        return Answer("grpc", "a gRPC (HTTP/2) server")
    if data.startswith(b"HTTP/"):
        return Answer("http", "an HTTP server")
    if data.startswith(b"SSH-"):
        return Answer("other", f"an SSH server ({_first_line(data)})")
    if data[:1] == b"\x15" and data[1:2] == b"\x03":
        return Answer("other", "a TLS server (it sent a TLS alert)")
    printable = _first_line(data)
    shown = printable if printable.isprintable() and printable else data[:16].hex(" ")
    return Answer("other", f"a server that is neither a Dask scheduler nor Ray (it sent {shown!r})")


def _first_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].split(b"\n", 1)[0][:80].decode("latin-1")


def _classify_http(host: str, port: int, reply: bytes) -> Answer:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    server = headers.get("server", "")
    described = f"{lines[0]}, Server: {server}" if server else lines[0]
    text = body[:4096].decode("latin-1", "replace")
    if "<title>Ray Dashboard" in text or "ray-authentication" in text.lower():
        return Answer(
            "http",
            f"the Ray dashboard ({described})",
            "The dashboard (port 8265 by default) is where `ray job submit` sends jobs; a "
            "driver connects to the head's GCS port (address='host:6379') or to its Ray "
            "Client server (address='ray://host:10001').",
        )
    if server.startswith("TornadoServer") and (
        headers.get("location", "").endswith("status") or "dask" in text.lower()
    ):
        scheduler = _dask_scheduler_behind_dashboard(host, port)
        hint = (
            f"This dashboard belongs to the scheduler at {scheduler!r}: use address={scheduler!r}."
            if scheduler
            else "The scheduler listens on its own port (8786 by default; the dashboard "
            "is on 8787)."
        )
        return Answer("http", f"a Dask dashboard ({described})", hint)
    return Answer("http", f"an HTTP server ({described})")


def _dask_scheduler_behind_dashboard(host: str, port: int) -> str | None:
    """The scheduler address a Dask dashboard reports at /json/identity.json, if any."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as sock:
            request = f"GET /json/identity.json HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n"
            sock.sendall(request.encode())
            reply = _read_to_eof(sock, REPLY_WAIT)
        body = reply.partition(b"\r\n\r\n")[2]
        address = json.loads(body).get("address")
    except (OSError, ValueError, AttributeError):
        return None
    return address if isinstance(address, str) and re.match(r"^\w+://", address) else None


def unreachable_error(address: str, service: str, exc: OSError, fix: str) -> BackendConnectionError:
    """The error for an address where nothing could be reached."""
    host, port = split_host_port(address)
    if isinstance(exc, socket.gaierror):
        what = f"the host name {host!r} does not resolve ({exc.strerror or exc})"
    elif isinstance(exc, ConnectionRefusedError):
        what = f"nothing listens on port {port} there (connection refused)"
    elif isinstance(exc, (TimeoutError, socket.timeout)):
        what = (
            f"no answer within {CONNECT_TIMEOUT:g} s (the host is down or unreachable, "
            "or a firewall drops the connection)"
        )
    else:
        what = f"the connection failed ({exc.strerror or exc})"
    return BackendConnectionError(f"cannot reach the {service} at {address!r}: {what}. {fix}")


def wrong_service_error(
    address: str, service: str, answer: Answer, fix: str
) -> BackendConnectionError:
    """The error for an address where something other than ``service`` answers.

    The fix is the answer's own hint when it has one (say, the scheduler a Dask
    dashboard belongs to), else the general ``fix``.
    """
    return BackendConnectionError(
        f"{address!r} is not a {service}: {answer.description} answers there. {answer.hint or fix}"
    )


# -- Dask ----------------------------------------------------------------------

DASK_FIX = (
    "Give the scheduler's address, e.g. address='tcp://127.0.0.1:8786' "
    "(`dask scheduler` prints it as 'Scheduler at:')."
)


def check_dask_scheduler(address: str) -> None:
    """Raise BackendConnectionError unless a Dask scheduler answers at ``address``.

    Only ``tcp://host:port`` is looked at closely: over ``tls://`` the client speaks
    first, so only the TCP connection is checked; other schemes are left to Dask.
    """
    scheme = address.split("://", 1)[0]
    if scheme not in ("tcp", "tls") or not re.search(r":\d+$", address):
        return
    host, port = split_host_port(address)
    service = "Dask scheduler"
    try:
        if scheme == "tls":
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
            return
        answer = probe(host, port)
    except OSError as exc:
        raise unreachable_error(address, service, exc, DASK_FIX) from None
    if answer.kind != "dask":
        raise wrong_service_error(address, service, answer, DASK_FIX)


# -- Ray -----------------------------------------------------------------------


@dataclass(frozen=True)
class RayService:
    """Which Ray server answers at an address, and whether it wants the auth token."""

    kind: str  # "gcs" (a head's GCS, joined as a driver) or "client" (Ray Client server)
    needs_token: bool


def check_ray(address: str) -> RayService | None:
    """What Ray server answers at ``host:port`` or ``ray://host:port``.

    Raises BackendConnectionError when nothing answers, when something other than
    the expected Ray server does (an HTTP server, the Ray dashboard, a Dask
    scheduler, the other Ray port), or returns None when TLS is configured
    (``RAY_USE_TLS``): then the client speaks first and only the TCP connection
    is checked.
    """
    client = address.startswith("ray://")
    service = "Ray Client server" if client else "Ray head (GCS)"
    fix = (
        "Give the head's Ray Client address, address='ray://host:10001' (`ray start "
        "--head` serves it on --ray-client-server-port, 10001 by default)."
        if client
        else "Give the head's GCS address, address='host:6379' (the --port of `ray start "
        "--head`, 6379 by default), or address='auto' on a machine of the cluster."
    )
    host, port = split_host_port(address)
    tls = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")
    try:
        if tls:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
            return None
        answer = probe(host, port)
    except OSError as exc:
        raise unreachable_error(address, service, exc, fix) from None
    if answer.kind != "grpc":
        raise wrong_service_error(address, service, answer, fix)
    target = f"{host}:{port}"
    expected, other = ("client", "gcs") if client else ("gcs", "client")
    status = _grpc_status(target, expected)
    if status in ("OK", "UNAUTHENTICATED"):
        return RayService(expected, needs_token=status == "UNAUTHENTICATED")
    if status != "UNIMPLEMENTED":
        raise BackendConnectionError(
            f"the {service} at {address!r} did not answer a status request ({status}). "
            "Is the head still starting, or overloaded? Try again."
        )
    if _grpc_status(target, other) == "UNIMPLEMENTED":
        found = Answer("grpc", "a gRPC server that is neither a Ray GCS nor a Ray Client server")
    elif other == "gcs":
        found = Answer(
            "grpc",
            "a Ray head's GCS",
            f"Use address={target!r} (without ray://) to join the cluster as a driver "
            "from a machine in its network.",
        )
    else:
        found = Answer(
            "grpc",
            "a Ray Client server",
            f"Use address='ray://{target}' to connect through Ray Client.",
        )
    raise wrong_service_error(address, service, found, fix)


def _grpc_status(target: str, service: str, metadata: tuple = ()) -> str:
    """The gRPC status name of one cheap Ray call (a ping), sending only ``metadata``."""
    import grpc

    # Like Ray's own channels: never through an HTTP proxy from the environment.
    channel = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])
    try:
        if service == "gcs":
            from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

            stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
            call, request = stub.GetClusterId, gcs_service_pb2.GetClusterIdRequest()
        else:
            from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

            stub = ray_client_pb2_grpc.RayletDriverStub(channel)
            call = stub.ClusterInfo
            request = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)
        call(request, timeout=GRPC_TIMEOUT, metadata=metadata)
        return "OK"
    except grpc.RpcError as exc:
        return exc.code().name
    finally:
        channel.close()


def token_accepted(address: str, kind: str) -> bool:
    """Whether the head at ``address`` accepts the auth token this process has."""
    from ray._raylet import AuthenticationTokenLoader

    header = AuthenticationTokenLoader.instance().get_token_for_http_header(ignore_auth_mode=True)
    host, port = split_host_port(address)
    status = _grpc_status(f"{host}:{port}", kind, tuple(header.items()))
    return status != "UNAUTHENTICATED"
