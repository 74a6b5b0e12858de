"""Hostile connections (README "Limits: connections"): more raw TCP connections than the
server has file descriptors, none of which ever sends the HTTP/2 preface.

The interop-server runs with RLIMIT_NOFILE 256 and a 2 s handshake timeout, so the test takes
seconds. Every silent connection must be closed within the timeout (plus the tick and some
slack), the server must not spin while they are held (CPU below 20 % of a core), and a
normal grpcio client must be served meanwhile and afterwards. Two runs: with the default
connection cap (derived from the fd limit, so the server keeps descriptors for itself), and
with the cap lifted above the fd limit, so that accept itself fails with EMFILE and the
server has to shed through its reserved descriptor and back off instead of spinning.
"""
import os
import resource
import selectors
import socket
import sys
import threading
import time

import grpc
import pytest

import labgallery_testing

NOFILE = 256          # the server's RLIMIT_NOFILE
SILENT = 400          # silent connections: more than the server has descriptors
HANDSHAKE_S = 2.0     # --handshake_timeout
CLOSE_WITHIN_S = HANDSHAKE_S + 3.0  # the timeout, a tick (0.5 s here) and slack for a loaded 2-core machine
HOLD_S = 7.0          # how long the test holds its connections open and measures the CPU
MAX_CPU = 0.20        # of one core, averaged over the hold

# Lowers the soft and hard RLIMIT_NOFILE, then execs the server: the same PID, so the
# test reads its CPU and stops it by PID.
EXEC_WITH_LIMIT = ("import os, resource, sys; n = int(sys.argv[1]); "
                   "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])")


@pytest.fixture(autouse=True, scope="module")
def enough_fds_for_the_test():
    """The test itself holds SILENT sockets plus grpcio's: raise its own soft limit if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * SILENT
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process so far (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def health_check(channel, *, timeout=5.0, wait_for_ready=False):
    """grpc.health.v1.Health/Check for the server (service ""): SERVING, in raw bytes."""
    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    assert check(b"", timeout=timeout, wait_for_ready=wait_for_ready) == b"\x08\x01"


def run_server(tmp_path, *extra):
    binary = labgallery_testing.find_binary("interop-server")
    argv = [sys.executable, "-c", EXEC_WITH_LIMIT, str(NOFILE), binary, "--port", "0", "--host", "127.0.0.1",
            "--event_loops", "2", "--handshake_timeout", str(HANDSHAKE_S), *extra]
    return labgallery_testing.ServerProcess(argv, log_dir=tmp_path)


def hold_silent_connections(port: int, pid: int, during=None):
    """Opens SILENT connections that never send a byte and holds them for HOLD_S, reading
    (and dropping) whatever the server sends. Runs `during()` on a thread once they are all
    open. Returns (seconds each stayed open, or None if still open at the end; CPU share of
    the server over the hold; what `during` raised, or None)."""
    opened, closed_after = [], {}
    failure = []

    def run_during():
        try:
            during()
        except BaseException as e:  # reported to the test's thread
            failure.append(e)

    worker = threading.Thread(target=run_during, name="client during the flood", daemon=True)
    sel = selectors.DefaultSelector()
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    try:
        for i in range(SILENT):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            opened.append((s, time.monotonic()))
            try:
                s.connect(("127.0.0.1", port))
            except ConnectionError:  # over the cap: reset before connect() even returned
                closed_after[i] = 0.0
                continue
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        if during:
            worker.start()
        end = t0 + HOLD_S
        while len(closed_after) < SILENT and (left := end - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=min(left, 0.2)):
                i = key.data
                s, when = opened[i]
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionError:
                    data = b""
                if not data:
                    closed_after[i] = time.monotonic() - when
                    sel.unregister(s)
        # The whole hold, even when the server closed everything early: idle must be cheap too.
        if (left := end - time.monotonic()) > 0:
            time.sleep(left)
        cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        if during:
            worker.join(timeout=30)
            assert not worker.is_alive(), "the client during the flood hung"
    finally:
        sel.close()
        for s, _ in opened:
            s.close()
    return [closed_after.get(i) for i in range(SILENT)], cpu, (failure[0] if failure else None)


def check_run(server, port):
    pid = server.pid
    with grpc.insecure_channel(f"127.0.0.1:{port}") as before:
        health_check(before)  # connected (and past its handshake) before the flood

        def during():
            health_check(before)  # an established client is served while the flood is held
            with grpc.insecure_channel(f"127.0.0.1:{port}") as fresh:
                # A new client gets in once the silent connections time out (grpcio reconnects).
                health_check(fresh, timeout=15, wait_for_ready=True)

        lifetimes, cpu, failure = hold_silent_connections(port, pid, during)
        if failure:
            raise failure
        still_open = sum(1 for t in lifetimes if t is None)
        slowest = max(t for t in lifetimes if t is not None) if still_open < SILENT else None
        assert still_open == 0, f"{still_open} of {SILENT} silent connections still open after {HOLD_S} s"
        assert slowest <= CLOSE_WITHIN_S, f"a silent connection stayed open {slowest:.2f} s"
        assert cpu < MAX_CPU, f"server CPU {cpu:.0%} of a core while holding {SILENT} silent connections"
        health_check(before)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as after:
        health_check(after, timeout=10, wait_for_ready=True)
    return lifetimes, cpu


def test_silent_connections_default_cap(tmp_path):
    """The default cap (derived from the fd limit: 192 of 256) refuses the excess at once."""
    with run_server(tmp_path) as server:
        port = int(server.wait_for_line(r"listening on port (\d+)").group(1))
        lifetimes, cpu = check_run(server, port)
        # Over the cap: accepted and closed at once, well before the handshake timeout.
        assert sum(1 for t in lifetimes if t < 1.0) >= SILENT - NOFILE
        assert server.stop() == 0, server.log()


def test_silent_connections_at_the_fd_limit(tmp_path):
    """No cap below the fd limit: accept fails with EMFILE; the server sheds and backs off."""
    with run_server(tmp_path, "--max_connections", "100000") as server:
        port = int(server.wait_for_line(r"listening on port (\d+)").group(1))
        check_run(server, port)
        assert server.stop() == 0, server.log()
