"""Fixtures for the interop suite: grpcio stubs, our interop-server, a grpcio peer server.

Build first (one product at a time):
    swift build -c release --product interop-server
    swift build -c release --product interop-client
then run ``python3 -m pytest -q Tests/Interop``. A missing binary fails the suite.
"""

import os
import pathlib
import select
import signal
import socket
import subprocess
import time

import grpc
import pytest

import grpcio_peer_server
import interop_stubs

REPO_ROOT = interop_stubs.REPO_ROOT
BUILD_DIR = pathlib.Path(os.environ.get("H2RPC_BUILD_DIR", REPO_ROOT / ".build" / "release"))
SERVER_BINARY = BUILD_DIR / "interop-server"
CLIENT_BINARY = BUILD_DIR / "interop-client"


def _require(binary: pathlib.Path) -> pathlib.Path:
    if not os.access(binary, os.X_OK):
        pytest.fail(
            f"{binary} is missing; build it with "
            f"`swift build -c release --product {binary.name}` (from {REPO_ROOT})",
            pytrace=False)
    return binary


def free_port() -> int:
    """A port free on every interface (IPv6 dual stack when available)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
            return s.getsockname()[1]
    except OSError:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("0.0.0.0", 0))
            return s.getsockname()[1]


@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    """The generated grpcio modules (empty_pb2, messages_pb2, test_pb2, test_pb2_grpc)."""
    return interop_stubs.load(tmp_path_factory.mktemp("stubs"))


@pytest.fixture(scope="session")
def client_binary():
    """Path of our interop-client executable."""
    return _require(CLIENT_BINARY)


@pytest.fixture(scope="session")
def h2rpc_server(tmp_path_factory):
    """Our interop-server on a free port; yields the port; SIGTERM at the end must exit 0."""
    binary = _require(SERVER_BINARY)
    port = free_port()
    log_path = tmp_path_factory.mktemp("h2rpc-server") / "stderr.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(binary), "--port", str(port)],
                                   stdout=subprocess.PIPE, stderr=log)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 15)
        line = process.stdout.readline().decode().strip() if ready else ""
        if line != f"listening on port {port}":
            pytest.fail(f"interop-server did not report listening on {port}: got {line!r}; "
                        f"stderr: {log_path.read_text()!r}", pytrace=False)
        yield port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail("interop-server did not exit within 15 s of SIGTERM", pytrace=False)
        process.stdout.close()
    assert code == 0, f"interop-server exited with {code}; stderr: {log_path.read_text()!r}"


@pytest.fixture(scope="session")
def grpcio_server(stubs):
    """The grpcio TestService (grpcio_peer_server.py) in this process; yields its port."""
    server, port = grpcio_peer_server.start(stubs, "127.0.0.1", 0)
    yield port
    server.stop(grace=None)


def _channel(port):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    return channel


@pytest.fixture
def h2rpc_channel(h2rpc_server):
    """A grpcio channel to our interop-server."""
    channel = _channel(h2rpc_server)
    yield channel
    channel.close()


@pytest.fixture
def grpcio_channel(grpcio_server):
    """A grpcio channel to the grpcio peer server."""
    channel = _channel(grpcio_server)
    yield channel
    channel.close()
