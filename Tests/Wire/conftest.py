"""Starts our interop-server (release build) for raw HTTP/2 wire tests."""
import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER = ROOT / ".build" / "release" / "interop-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """Yields (port, pid) of a running interop-server; stops it by PID afterwards."""
    yield from run_server()


@pytest.fixture(scope="module")
def small_server():
    """An interop-server allowing 2 concurrent streams per connection."""
    yield from run_server("--max_concurrent_streams", "2")


def run_server(*extra):
    assert SERVER.exists(), f"{SERVER} is missing: run `swift build -c release --product interop-server` first"
    port = free_port()
    proc = subprocess.Popen([str(SERVER), "--port", str(port), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("interop-server did not start listening")
    yield port, proc.pid
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("interop-server did not stop on SIGTERM")
    assert proc.returncode == 0, f"interop-server exited with {proc.returncode}"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")
