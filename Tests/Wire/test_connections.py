"""Connections (issue 11): keepalive PINGs, ping strikes, connection age, and finding the server.

Raw HTTP/2 (python-hyper's h2) against labgallery-server over real sockets:
  - an idle connection gets a PING after --keepalive-time; unanswered, it is closed after
    --keepalive-timeout; answered, it stays open;
  - PINGs faster than --min-ping-interval get GOAWAY ENHANCE_YOUR_CALM "too_many_pings" after
    the third strike (grpc's rule); PINGs between calls' responses are forgiven;
  - --max-connection-age sends GOAWAY(NO_ERROR), and --max-connection-age-grace closes the
    connection later even with a call still open;
  - --host :: serves IPv4 and IPv6; --unix PATH serves the CLI's --endpoint unix:PATH;
  - the CLI refuses a URL-like endpoint and says what to write.
"""
import os
import select
import socket
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

import labgallery_testing

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"


def start(tmp_path, *extra):
    binary = labgallery_testing.find_binary("labgallery-server", ("release", "debug"))
    argv = [binary, "--port", "0", "--data-dir", tmp_path / "data", *extra]
    return labgallery_testing.ServerProcess(argv, log_dir=tmp_path)


def listening_port(process, host=r"127\.0\.0\.1") -> int:
    return int(process.wait_for_line(rf"listening on {host}:(\d+)", timeout=30).group(1))


class Peer:
    """A raw HTTP/2 client. `answer_pings=False` withholds the PING ACKs h2 would send."""

    def __init__(self, port, host="127.0.0.1", family=socket.AF_INET, answer_pings=True, sock=None):
        if sock is None:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect((host, port))
        self.sock = sock
        self.answer_pings = answer_pings
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.closed = False
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.sock.sendall(data)

    def events(self, seconds, first=False):
        """Events for up to `seconds`; with `first`, those of the first read that brings any."""
        end = time.monotonic() + seconds
        out = []
        while not self.closed:
            left = end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                break
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                break
            evs = self.conn.receive_data(data)
            out += evs
            if not self.answer_pings:
                self.conn.data_to_send()  # dropped: the ACKs never leave
            else:
                self.flush()
            if first and out:
                break
        return out

    def until(self, kind, seconds):
        """Events until one of `kind` (or the connection closes, or `seconds` pass)."""
        end = time.monotonic() + seconds
        seen = []
        while not self.closed and time.monotonic() < end:
            evs = self.events(end - time.monotonic(), first=True)
            seen += evs
            if any(isinstance(e, kind) for e in evs):
                break
        return seen

    def call(self, path, message=b"", end=True):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                     (":authority", "localhost"), ("content-type", "application/grpc"),
                                     ("te", "trailers")])
        self.conn.send_data(sid, b"\x00" + len(message).to_bytes(4, "big") + message, end_stream=end)
        self.flush()
        return sid

    def ping(self, opaque=b"12345678"):
        self.conn.ping(opaque)
        self.flush()

    def close(self):
        self.sock.close()


def test_server_pings_idle_connections_and_closes_dead_ones(tmp_path):
    with start(tmp_path, "--keepalive-time", "1", "--keepalive-timeout", "1") as server:
        port = listening_port(server)
        alive = Peer(port)
        alive_events = []
        reader = threading.Thread(target=lambda: alive_events.extend(alive.events(6)))
        reader.start()  # answers its PINGs the whole time
        dead = Peer(port, answer_pings=False)
        t0 = time.monotonic()
        seen = dead.until(h2.events.PingReceived, 15)
        assert any(isinstance(e, h2.events.PingReceived) for e in seen), f"no keepalive PING: {seen}"
        assert time.monotonic() - t0 >= 0.9
        dead.events(15)  # read until the server gives up on it
        assert dead.closed, "an unanswered keepalive PING must close the connection"
        assert time.monotonic() - t0 < 15
        reader.join()
        pings = [e for e in alive_events if isinstance(e, h2.events.PingReceived)]
        assert not alive.closed and len(pings) >= 2, "an answered connection stays open and is pinged again"
        alive.close()


def test_too_many_pings(tmp_path):
    with start(tmp_path) as server:  # --min-ping-interval 300 by default
        port = listening_port(server)
        # Between calls' responses, pings are forgiven (strikes reset when the server sends data).
        calm = Peer(port)
        for _ in range(6):
            calm.ping()
            sid = calm.call(HEALTH_CHECK)
            evs = calm.until(h2.events.StreamEnded, 10)
            assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in evs)
            assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in evs)
        calm.close()
        # Four pings in a row: the first is free, the next three are strikes; the third strike
        # gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and the connection closes.
        rude = Peer(port)
        for _ in range(3):
            rude.ping()
        evs = rude.events(1)
        assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in evs), "two strikes are allowed"
        rude.ping()
        evs = rude.until(h2.events.ConnectionTerminated, 10)
        goaway = [e for e in evs if isinstance(e, h2.events.ConnectionTerminated)]
        assert goaway and goaway[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        assert goaway[0].additional_data == b"too_many_pings"
        rude.events(10)
        assert rude.closed


def test_max_connection_age(tmp_path):
    with start(tmp_path, "--max-connection-age", "1", "--max-connection-age-grace", "1") as server:
        port = listening_port(server)
        peer = Peer(port)
        t0 = time.monotonic()
        sid = peer.call(HEALTH_WATCH, end=True)  # a server stream that stays open
        evs = peer.until(h2.events.ConnectionTerminated, 15)
        goaway = [e for e in evs if isinstance(e, h2.events.ConnectionTerminated)]
        at = time.monotonic() - t0
        assert goaway and goaway[0].error_code == h2.errors.ErrorCodes.NO_ERROR, evs
        assert 0.85 <= at < 10, at
        assert goaway[0].last_stream_id == sid  # the open watch may finish...
        assert any(isinstance(e, h2.events.DataReceived) for e in evs)
        peer.events(15)
        assert peer.closed, "...but not past the grace"
        assert time.monotonic() - t0 - at >= 0.8


def test_dual_stack_host(tmp_path):
    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("this machine has no IPv6 at all")
    with start(tmp_path, "--host", "::") as server:
        port = listening_port(server, host=r"\[::\]")
        for host, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
            peer = Peer(port, host=host, family=family)
            sid = peer.call(HEALTH_CHECK)
            evs = peer.until(h2.events.StreamEnded, 10)
            assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in evs), host
            peer.close()


def cli(args, env_extra):
    binary = labgallery_testing.find_binary("labgallery", ("release", "debug"))
    env = dict(os.environ, **env_extra)
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60)


def test_unix_socket_server_and_cli(tmp_path):
    path = f"/tmp/lg-{os.getpid()}-{time.monotonic_ns()}.sock"  # short: sun_path is 108 bytes
    try:
        with start(tmp_path, "--unix", path) as server:
            server.wait_for_line(rf"listening on unix:{path}", timeout=30)
            token = (tmp_path / "data" / "admin.token").read_text().strip()
            env = {"LABGALLERY_TOKEN": token}
            made = cli(["gallery", "create", "sock", "--region", "westus2", "--endpoint", f"unix:{path}"], env)
            assert made.returncode == 0, made.stderr
            listed = cli(["gallery", "list", "--endpoint", f"unix:{path}"], env)
            assert listed.returncode == 0 and "sock" in listed.stdout, listed.stderr
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_cli_refuses_url_endpoints(tmp_path):
    for url in ("http://127.0.0.1:50051", "https://gallery.example:443/"):
        done = cli(["gallery", "list", "--endpoint", url], {"LABGALLERY_TOKEN": "x"})
        assert done.returncode != 0
        assert "host:port" in done.stderr and "--tls" in done.stderr, done.stderr
