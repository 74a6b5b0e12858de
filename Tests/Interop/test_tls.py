"""TLS both ways with certificates made at test time (labgallery_tls): grpcio's secure channel
runs the interop cases against our interop-server, our interop-client runs them against a
grpcio secure server; a wrong CA, a wrong host name and an expired certificate fail with a
clear error; TLS to a cleartext port and cleartext to a TLS port are closed cleanly."""

import socket
import ssl
import subprocess
import time

import grpc
import pytest

import grpcio_interop_cases


def _secure_channel(port, ca_pem, name="localhost"):
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem.read_bytes())
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials,
                               options=[("grpc.ssl_target_name_override", name)])


@pytest.fixture
def h2rpc_tls_channel(h2rpc_tls_server, certs):
    channel = _secure_channel(h2rpc_tls_server[0], certs.ca_pem)
    grpc.channel_ready_future(channel).result(timeout=10)
    yield channel
    channel.close()


@pytest.mark.parametrize("case", grpcio_interop_cases.CASE_NAMES)
def test_grpcio_secure_channel_against_h2rpc_server(case, h2rpc_tls_channel, stubs):
    grpcio_interop_cases.run(case, h2rpc_tls_channel, stubs)


def _interop_client(client_binary, port, *args):
    return subprocess.run(
        [str(client_binary), "--server_host", "127.0.0.1", "--server_port", str(port), "--use_tls=true", *args],
        capture_output=True, text=True, timeout=120)


def test_h2rpc_client_against_grpcio_secure_server(client_binary, grpcio_tls_server, certs):
    result = _interop_client(client_binary, grpcio_tls_server, "--ca_file", str(certs.ca_pem),
                             "--server_host_override", "server.test", "--test_case", "all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"PASS {case}" for case in grpcio_interop_cases.CASE_NAMES]


def test_h2rpc_client_against_h2rpc_tls_server(client_binary, h2rpc_tls_server, certs):
    result = _interop_client(client_binary, h2rpc_tls_server[0], "--ca_file", str(certs.ca_pem),
                             "--server_host_override", "localhost", "--test_case", "all")
    assert result.returncode == 0, result.stdout + result.stderr


# -- failures: each with a clear error -------------------------------------------------------

@pytest.mark.parametrize("override, ca, expected", [
    ("server.test", "other_ca_pem", "certificate verify failed: unable to get local issuer certificate"),
    ("elsewhere.test", "ca_pem", "certificate verify failed: hostname mismatch"),
])
def test_h2rpc_client_refuses_bad_server_certificate(client_binary, grpcio_tls_server, certs, override, ca,
                                                     expected):
    result = _interop_client(client_binary, grpcio_tls_server, "--ca_file", str(getattr(certs, ca)),
                             "--server_host_override", override, "--test_case", "empty_unary")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL empty_unary" in result.stdout and expected in result.stdout, result.stdout
    assert "UNAVAILABLE" in result.stdout.upper(), result.stdout


def test_h2rpc_client_refuses_expired_certificate(client_binary, h2rpc_expired_server, certs):
    result = _interop_client(client_binary, h2rpc_expired_server, "--ca_file", str(certs.ca_pem),
                             "--server_host_override", "localhost", "--test_case", "empty_unary")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "certificate verify failed: certificate has expired" in result.stdout, result.stdout


def test_grpcio_refuses_expired_certificate(h2rpc_expired_server, certs):
    channel = _secure_channel(h2rpc_expired_server, certs.ca_pem)
    with pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=3)
    channel.close()


def test_grpcio_refuses_wrong_ca(h2rpc_tls_server, certs):
    channel = _secure_channel(h2rpc_tls_server[0], certs.other_ca_pem)
    with pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=3)
    channel.close()


# -- the wrong protocol on a port ------------------------------------------------------------

def _wait_for_log(server, text, timeout=15):
    end = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < end, f"no {text!r} in the server's log:\n{server.log()}"
        time.sleep(0.05)


def _closed(sock):
    """Reads until the peer closes; True if it did (EOF or reset) within the socket's time-out."""
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True


def test_cleartext_to_tls_port_is_closed(h2rpc_tls_server, certs):
    port, server = h2rpc_tls_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        assert _closed(sock)
    _wait_for_log(server, "TLS handshake from 127.0.0.1:")  # (a dual-stack listener logs IPv4 peers as IPv4)
    # still serving
    channel = _secure_channel(port, certs.ca_pem)
    grpc.channel_ready_future(channel).result(timeout=10)
    channel.close()


def test_tls_without_alpn_h2_is_closed_with_a_log_line(h2rpc_tls_server, certs):
    port, server = h2rpc_tls_server
    context = ssl.create_default_context(cafile=str(certs.ca_pem))
    context.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() is None
            try:
                assert tls.recv(4096) == b""
            except (ConnectionResetError, ssl.SSLError):
                pass
    _wait_for_log(server, "did not negotiate ALPN h2")


def test_tls_client_hello_to_cleartext_port_is_closed(h2rpc_server, stubs):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", h2rpc_server), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            context.wrap_socket(raw, server_hostname="localhost")
    # still serving cleartext
    channel = grpc.insecure_channel(f"127.0.0.1:{h2rpc_server}")
    grpc.channel_ready_future(channel).result(timeout=10)
    grpcio_interop_cases.run("empty_unary", channel, stubs)
    channel.close()
