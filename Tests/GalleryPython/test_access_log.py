"""The access log of the real ``labgallery-server``, read the way an operator's tools read it.

One line at info level per call (method, peer, principal, status, duration, bytes in and out),
in the default text format and with ``--log-format json`` (one JSON object per line: every
stderr line must parse). Calls come from Python grpcio, with raw bytes (no stubs needed).
Needs the server binary: `swift build --product labgallery-server` (or release); the more
recently built one is used. Also checks `--version` against `git rev-parse`.
"""

import json
import pathlib
import re
import subprocess

import grpc
import pytest

import labgallery_testing  # Tests/pyhelpers (on the path by conftest.py)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
LIST_GALLERIES = "/labgallery.v1.GalleryService/ListGalleries"
CREATE_GALLERY = "/labgallery.v1.GalleryService/CreateGallery"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def binary():
    return labgallery_testing.find_binary("labgallery-server", ("release", "debug"))


def create_gallery_request(gallery_id: str) -> bytes:
    """CreateGalleryRequest{gallery_id, gallery{region: "westeurope"}} encoded by hand (Gallery.region = 3)."""
    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload
    return field(1, gallery_id.encode()) + field(2, field(3, b"westeurope"))


def make_calls(target: str, token: str) -> None:
    """Four calls, each ending a different way; the unknown method's name carries a quote,
    a backslash and non-ASCII (the log must stay parseable)."""
    auth = [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(target) as channel:
        def call(method, request=b"", metadata=None):
            return channel.unary_unary(method)(request, metadata=metadata, timeout=30)
        with pytest.raises(grpc.RpcError) as err:
            call(LIST_GALLERIES)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        call(CREATE_GALLERY, create_gallery_request("logged"), auth)
        call(HEALTH_CHECK)
        with pytest.raises(grpc.RpcError) as err:
            call('/x.Nope/Odd"\\é', metadata=auth)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def run_server(tmp_path, *flags, host="127.0.0.1"):
    data_dir = tmp_path / "data"
    process = labgallery_testing.ServerProcess(
        [binary(), "--host", host, "--port", "0", "--data-dir", data_dir, *flags], log_dir=tmp_path)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address is printed bracketed
    port = int(process.wait_for_line(rf"listening on {re.escape(shown)}:(\d+)", timeout=30).group(1))
    token = (data_dir / "admin.token").read_text().strip()
    return process, port, token


def test_json_access_log(tmp_path):
    process, port, token = run_server(tmp_path, "--log-format", "json", host="::1")
    with process:
        make_calls(f"ipv6:[::1]:{port}", token)
        assert process.stop(timeout=20) == 0
    lines = process.stderr_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(r, dict) and {"time", "level", "label", "message"} <= r.keys() for r in records)
    calls = [r for r in records if r["message"] == "call"]
    assert len(calls) == 4, calls
    for r in calls:
        assert r["level"] == "info"
        assert re.fullmatch(r"ipv6:\[::1\]:\d+", r["peer"]), r
        assert re.fullmatch(r"\d+\.\d{3}", r["duration_ms"]), r
        assert int(r["bytes_in"]) >= 0 and int(r["bytes_out"]) >= 0
    by_status = {r["status"]: r for r in calls}
    assert by_status["UNAUTHENTICATED"]["method"] == LIST_GALLERIES
    assert by_status["UNAUTHENTICATED"]["principal"] == "-"
    created = next(r for r in calls if r["method"] == CREATE_GALLERY)
    assert created["status"] == "OK" and created["principal"] == "admin" and created["role"] == "admin"
    assert int(created["bytes_in"]) == len(create_gallery_request("logged")) and int(created["bytes_out"]) > 0
    health = next(r for r in calls if r["method"] == HEALTH_CHECK)
    assert health["status"] == "OK" and health["principal"] == "-"
    unknown = by_status["UNIMPLEMENTED"]
    # Escaped once, as in the text format: the backslash doubled, the quote and é as they are.
    assert unknown["method"] == '/x.Nope/Odd"\\\\é' and "unknown method" in unknown["error"], unknown
    assert token not in process.log(), "the admin token must never be logged"


def test_text_access_log_is_the_default(tmp_path):
    process, port, token = run_server(tmp_path)
    with process:
        make_calls(f"127.0.0.1:{port}", token)
        assert process.stop(timeout=20) == 0
    calls = [line for line in process.stderr_path.read_text().splitlines() if " info labgallery-server: " in line
             and line.endswith(" call")]
    assert len(calls) == 4, calls
    for line in calls:
        for key in ("method", "peer", "principal", "status", "duration_ms", "bytes_in", "bytes_out"):
            assert f" {key}=" in line, line
        assert re.search(r" peer=ipv4:127\.0\.0\.1:\d+ ", line), line
    assert any(" principal=admin " in line and " status=OK " in line for line in calls), calls


def test_version_names_the_commit():
    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    out = subprocess.run([str(binary()), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert re.fullmatch(rf"labgallery-server \d+\.\d+\.\d+ \(commit {commit}\)", out.stdout.strip()), out.stdout
