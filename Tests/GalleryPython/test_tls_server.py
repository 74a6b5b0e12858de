"""labgallery-server with TLS (--tls-cert, --tls-key, --tls-client-ca), certificates made at test
time (Tests/pyhelpers/labgallery_tls.py): mTLS with grpcio and with our CLI, a client without a
certificate refused with a clear error, and SIGHUP reloading the certificates for new
connections while open ones keep going.

Needs labgallery-server and labgallery (debug or release; the more recently built is used).
"""

import shutil
import signal
import subprocess
import time

import grpc
import pytest

import labgallery_testing  # Tests/pyhelpers (on the path by conftest.py)
import labgallery_tls

LIST_GALLERIES = "/labgallery.v1.GalleryService/ListGalleries"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return labgallery_tls.make_certs(tmp_path_factory.mktemp("tls"))


def _start(tmp_path_factory, name, *tls_args):
    root = tmp_path_factory.mktemp(name)
    binary = labgallery_testing.find_binary("labgallery-server", ("release", "debug"))
    process = labgallery_testing.ServerProcess(
        [binary, "--port", "0", "--data-dir", root / "data", *tls_args], log_dir=root)
    try:
        port = int(process.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
    except BaseException:
        process.__exit__(None, None, None)  # nothing keeps running
        raise
    token = (root / "data" / "admin.token").read_text().strip()
    return process, port, token


def _list(channel, token):
    """ListGalleries (an empty request) with the admin token; returns the raw response bytes."""
    call = channel.unary_unary(LIST_GALLERIES, request_serializer=None, response_deserializer=None)
    return call(b"", metadata=(("authorization", f"Bearer {token}"),), timeout=10)


def _channel(port, certs, *, client_cert=True, ca=None):
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(ca or certs.ca_pem).read_bytes(),
        private_key=certs.client_key.read_bytes() if client_cert else None,
        certificate_chain=certs.client_pem.read_bytes() if client_cert else None)
    return grpc.secure_channel(f"localhost:{port}", credentials)


def _wait_for_log(process, text, timeout=15):
    end = time.monotonic() + timeout
    while text not in process.log():
        assert time.monotonic() < end, f"no {text!r} in the server's log:\n{process.log()}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, certs):
    process, port, token = _start(tmp_path_factory, "mtls", "--tls-cert", str(certs.server_pem), "--tls-key",
                                  str(certs.server_key), "--tls-client-ca", str(certs.ca_pem))
    with process:
        yield process, port, token
        assert process.stop(timeout=20) == 0
    assert token not in process.log()


def test_mtls_with_grpcio(mtls_server, certs):
    process, port, token = mtls_server
    with _channel(port, certs) as channel:
        _list(channel, token)
    with _channel(port, certs, client_cert=False) as channel:
        with pytest.raises(grpc.RpcError) as failure:
            _list(channel, token)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    _wait_for_log(process, "peer did not return a certificate")


def _cli(port, *args):
    binary = labgallery_testing.find_binary("labgallery", ("release", "debug"))
    return subprocess.run([str(binary), "gallery", "list", "--endpoint", f"localhost:{port}", *args],
                          capture_output=True, text=True, timeout=60)


def test_mtls_with_the_cli(mtls_server, certs):
    _, port, token = mtls_server
    result = _cli(port, "--token", token, "--tls", "--ca-file", str(certs.ca_pem), "--cert", str(certs.client_pem),
                  "--key", str(certs.client_key))
    assert result.returncode == 0, result.stdout + result.stderr
    result = _cli(port, "--token", token, "--tls", "--ca-file", str(certs.ca_pem))  # no client certificate
    assert result.returncode == 24, result.stdout + result.stderr  # UNAVAILABLE
    assert "certificate" in result.stderr, result.stderr
    result = _cli(port, "--token", token, "--tls", "--ca-file", str(certs.other_ca_pem), "--cert",
                  str(certs.client_pem), "--key", str(certs.client_key))
    assert result.returncode == 24 and "certificate verify failed" in result.stderr, result.stderr


def test_sighup_reloads_certificates_without_dropping_connections(tmp_path_factory, certs):
    files = tmp_path_factory.mktemp("live-certs")
    cert, key = files / "server.pem", files / "server.key"
    shutil.copy(certs.server_pem, cert)
    shutil.copy(certs.server_key, key)
    process, port, token = _start(tmp_path_factory, "reload", "--tls-cert", str(cert), "--tls-key", str(key))
    with process:
        old = _channel(port, certs, client_cert=False)
        _list(old, token)
        # A broken key: the reload fails, the old certificate stays.
        key.write_text("not a key\n")
        process.process.send_signal(signal.SIGHUP)
        _wait_for_log(process, "TLS certificates not reloaded")
        with _channel(port, certs, client_cert=False) as fresh:
            _list(fresh, token)
        # The expired certificate: new connections get it (and refuse it), the open one goes on.
        shutil.copy(certs.expired_pem, cert)
        shutil.copy(certs.expired_key, key)
        process.process.send_signal(signal.SIGHUP)
        _wait_for_log(process, "TLS certificates reloaded")
        with _channel(port, certs, client_cert=False) as fresh:
            with pytest.raises(grpc.RpcError) as failure:
                _list(fresh, token)
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        _list(old, token)
        old.close()
        assert process.stop(timeout=20) == 0
