"""Fixtures for the interop suite: grpcio stubs, our interop-server, a grpcio peer server.

Build first (one product at a time):
    swift build -c release --product interop-server
    swift build -c release --product interop-client
then run ``python3 -m pytest -q Tests/Interop``. A missing binary fails the suite.
"""

import pathlib
import sys

import grpc
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "pyhelpers"))
import labgallery_testing  # noqa: E402  (Tests/pyhelpers: binaries, ports, server processes)
import labgallery_tls  # noqa: E402  (Tests/pyhelpers: a throwaway CA and certificates)

import grpcio_peer_server  # noqa: E402
import interop_stubs  # noqa: E402

@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    """The generated grpcio modules (empty_pb2, messages_pb2, test_pb2, test_pb2_grpc)."""
    return interop_stubs.load(tmp_path_factory.mktemp("stubs"))


@pytest.fixture(scope="session")
def client_binary():
    """Path of our interop-client executable."""
    return labgallery_testing.find_binary("interop-client")


@pytest.fixture(scope="session")
def h2rpc_server(tmp_path_factory):
    """Our interop-server on a free port; yields the port; SIGTERM at the end must exit 0."""
    binary = labgallery_testing.find_binary("interop-server")
    port = labgallery_testing.free_port()
    with labgallery_testing.ServerProcess([binary, "--port", port],
                                          log_dir=tmp_path_factory.mktemp("h2rpc-server")) as server:
        server.wait_for_line(f"listening on port {port}", timeout=15)
        yield port
        code = server.stop(timeout=15)
    assert code == 0, f"interop-server exited with {code}; stderr: {server.stderr_path.read_text()!r}"


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


# -- TLS (test_tls.py) ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A throwaway CA and certificates (labgallery_tls.Certs), made with the openssl CLI."""
    return labgallery_tls.make_certs(tmp_path_factory.mktemp("tls"))


def _tls_interop_server(tmp_path_factory, cert, key, name):
    binary = labgallery_testing.find_binary("interop-server")
    port = labgallery_testing.free_port()
    argv = [binary, "--port", port, "--use_tls=true", "--tls_cert_file", str(cert), "--tls_key_file", str(key)]
    return labgallery_testing.ServerProcess(argv, log_dir=tmp_path_factory.mktemp(name)), port


@pytest.fixture(scope="session")
def h2rpc_tls_server(tmp_path_factory, certs):
    """Our interop-server with TLS (the CA-signed certificate); yields (port, ServerProcess)."""
    process, port = _tls_interop_server(tmp_path_factory, certs.server_pem, certs.server_key, "h2rpc-tls")
    with process as server:
        server.wait_for_line(f"listening on port {port}", timeout=15)
        yield port, server
        code = server.stop(timeout=15)
    assert code == 0, f"interop-server exited with {code}; stderr: {server.stderr_path.read_text()!r}"


@pytest.fixture(scope="session")
def h2rpc_expired_server(tmp_path_factory, certs):
    """Our interop-server with TLS and an expired certificate; yields its port."""
    process, port = _tls_interop_server(tmp_path_factory, certs.expired_pem, certs.expired_key, "h2rpc-expired")
    with process as server:
        server.wait_for_line(f"listening on port {port}", timeout=15)
        yield port
        server.stop(timeout=15)


@pytest.fixture(scope="session")
def grpcio_tls_server(stubs, certs):
    """The grpcio TestService with TLS (the CA-signed certificate); yields its port."""
    credentials = grpc.ssl_server_credentials(
        [(certs.server_key.read_bytes(), certs.server_pem.read_bytes())])
    server, port = grpcio_peer_server.start(stubs, "127.0.0.1", 0, credentials)
    yield port
    server.stop(grace=None)
