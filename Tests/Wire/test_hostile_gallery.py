"""Issue 10, finding 4: what a caller's input can do to the gallery server's log.

Runs the real ``labgallery-server`` (the more recently built of release and debug) and calls it
with grpcio, with stubs generated from Protos/ alone. A newline in an id must not forge a log
line, an ESC must not reach the operator's terminal, and 4 MB strings must not write megabytes of
log: every logged value and every echoed input is escaped and capped.

The 4 MB strings travel in ``UploadImage`` (the method that carries bytes, so it keeps the full
receive limit whatever smaller limits other methods get), and the server runs with
``--max-message-size 8388608`` so that a 4,000,000-byte header is well inside its limit.
"""

import re
import shutil
import subprocess
import pathlib

import grpc
import pytest

import labgallery_testing  # Tests/pyhelpers (on the path by conftest.py)

FOUR_MB = 4_000_000


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """Generated modules keyed by proto file stem (galleries, images...). Health is called raw
    (its package ``grpc.health`` would collide with grpcio's own ``grpc``)."""
    with labgallery_testing.gallery_stubs(tmp_path_factory.mktemp("hostile-stubs")) as modules:
        yield modules


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A labgallery-server at log level info; yields (port, admin token, process, data dir)."""
    root = tmp_path_factory.mktemp("hostile-gallery")
    data_dir = root / "data"
    binary = labgallery_testing.find_binary("labgallery-server", ("release", "debug"))
    argv = [binary, "--port", "0", "--data-dir", data_dir, "--log-level", "info", "--max-message-size", 8 * 1024 * 1024]
    with labgallery_testing.ServerProcess(argv, log_dir=root) as process:
        port = int(process.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)", timeout=60).group(1))
        token = (data_dir / "admin.token").read_text().strip()
        yield port, token, process, data_dir
        assert process.stop(timeout=30) == 0, "SIGTERM should drain and exit 0"


def _channel(port):
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 16 * 1024 * 1024)])


def _health_check(channel, service: str, timeout: float):
    """grpc.health.v1.Health/Check, encoded by hand: field 1 (service), a string."""
    data = service.encode()
    length, varint = len(data), b""
    while True:
        byte = length & 0x7F
        length >>= 7
        varint += bytes([byte | (0x80 if length else 0)])
        if not length:
            break
    request = (b"\x0a" + varint + data) if data else b""
    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    return check(request, timeout=timeout)


def _health_ok(api, port):
    """The server still answers Health/Check on a fresh connection within 1 s."""
    with _channel(port) as channel:
        assert _health_check(channel, "", timeout=1) == b"\x08\x01", "SERVING"


def _stderr(process) -> bytes:
    return process.stderr_path.read_bytes()


def _upload(api, stub, auth, image_id):
    images = api["images"]
    header = images.UploadImageRequest.Header(
        gallery="galleries/g", image_id=image_id, display_name="x",
        os_type=api["resources"].LINUX, os_state=api["resources"].GENERALIZED)
    return stub.UploadImage(iter([images.UploadImageRequest(header=header)]), metadata=auth, timeout=30)


def test_forged_lines_and_escapes_never_reach_stderr_raw(api, server):
    port, token, process, _ = server
    auth = [("authorization", f"Bearer {token}")]
    forged = "x\nFORGED-LINE 2026-01-01T00:00:00+0000 critical labgallery-server: pwned\x1b[2J\x1b]0;title\x07"
    with _channel(port) as channel:
        galleries = api["galleries_grpc"].GalleryServiceStub(channel)
        images = api["images_grpc"].ImageServiceStub(channel)
        calls = [
            lambda: galleries.CreateGallery(api["galleries"].CreateGalleryRequest(
                gallery_id=forged, gallery=api["resources"].Gallery(region="eastus")), metadata=auth, timeout=30),
            lambda: galleries.GetGallery(api["galleries"].GetGalleryRequest(name="galleries/" + forged),
                                         metadata=auth, timeout=30),
            lambda: _upload(api, images, auth, forged),
            lambda: _health_check(channel, forged, timeout=30),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
            details = err.value.details() or ""
            assert "\x1b" not in details and "\n" not in details and "\x07" not in details, details

    log = _stderr(process)
    assert b"FORGED-LINE" in log, "the failed calls are logged (escaped)"
    assert b"\x1b" not in log and b"\x07" not in log, "no raw ESC or BEL on the server's stderr"
    for line in log.split(b"\n"):
        assert not line.startswith(b"FORGED-LINE"), f"a forged log line: {line!r}"
    assert b"\\u{1b}" in log
    _health_ok(api, port)


def test_ten_calls_with_4mb_strings_add_under_100_kib_of_log(api, server):
    port, token, process, _ = server
    auth = [("authorization", f"Bearer {token}")]
    before = len(_stderr(process))
    with _channel(port) as channel:
        images = api["images_grpc"].ImageServiceStub(channel)
        for i in range(10):
            huge = chr(ord("a") + i) * FOUR_MB  # 4 MB, not a valid id: INVALID_ARGUMENT quoting it
            with pytest.raises(grpc.RpcError) as err:
                _upload(api, images, auth, huge)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            assert len(err.value.details() or "") < 2048, "the status message quotes a capped id"
    _health_ok(api, port)
    added = len(_stderr(process)) - before
    assert 0 < added < 100 * 1024, f"{added} bytes of log for 10 calls"


def test_internal_errors_carry_an_incident_id_not_a_path(api, server):
    """Finding 7: an INTERNAL answer never carries an absolute path (or SQL); the log has the
    detail under the same incident id."""
    port, token, process, data_dir = server
    auth = [("authorization", f"Bearer {token}")]
    with _channel(port) as channel:
        galleries = api["galleries_grpc"].GalleryServiceStub(channel)
        galleries.CreateGallery(api["galleries"].CreateGalleryRequest(
            gallery_id="internal", gallery=api["resources"].Gallery(region="eastus")), metadata=auth, timeout=30)
        # The region's temp directory becomes a plain file: the upload cannot create its blob.
        tmp = pathlib.Path(data_dir) / "regions" / "eastus" / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("not a directory")
        images = api["images_grpc"].ImageServiceStub(channel)
        header = api["images"].UploadImageRequest.Header(
            gallery="galleries/internal", image_id="img", display_name="x",
            os_type=api["resources"].LINUX, os_state=api["resources"].GENERALIZED)
        with pytest.raises(grpc.RpcError) as err:
            images.UploadImage(iter([api["images"].UploadImageRequest(header=header)]), metadata=auth, timeout=30)
        tmp.unlink()
    assert err.value.code() == grpc.StatusCode.INTERNAL, err.value.details()
    details = err.value.details() or ""
    assert str(data_dir) not in details and "/" not in details, details
    incident = re.search(r"incident ([0-9a-f]{16})", details)
    assert incident, details
    log = _stderr(process).decode(errors="replace")
    lines = [line for line in log.split("\n") if f"incident={incident.group(1)}" in line]
    assert lines and str(data_dir) in lines[0], f"the log has the detail under the incident id: {lines!r}"
    _health_ok(api, port)


def test_price_sheet_values_that_would_overflow_are_refused_at_start(tmp_path):
    """Finding 7: a price that would overflow the cost arithmetic stops the server at start,
    with the key and the limit in the message, instead of trapping later in GetGalleryCost."""
    binary = labgallery_testing.find_binary("labgallery-server", ("release", "debug"))
    for value in ("1000000.000000001", "99999999999999999999999999999999999999999"):
        sheet = tmp_path / "prices.json"
        sheet.write_text('{"storagePerGiBMonth": "%s"}' % value)
        result = subprocess.run([binary, "--port", "0", "--data-dir", tmp_path / "data", "--price-sheet", sheet],
                                capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        assert result.returncode == 1, result
        stderr = result.stderr.decode(errors="replace")
        assert "storagePerGiBMonth" in stderr and "1000000" in stderr, stderr
        assert b"listening" not in result.stdout
