#!/usr/bin/env python3
"""Server RSS per idle connection that made one call (issue 13, target 6).

For each server (our interop-server, grpcio's Python server, nghttpd), side by side in one run:
open N cleartext HTTP/2 connections (default 1,000), make one call on each (UnaryCall with a
16-byte response; nghttpd: GET of a static file of the same size), read the whole response,
keep every connection open and idle, wait until the server's RSS settles, and report
(RSS with N idle connections - RSS before them) / N in KiB. Each server first serves one
warm-up connection, closed before the baseline, so one-time costs (code pages, first-call
caches) are not charged to the connections.

Usage: Benchmarks/idle_memory.py [--connections N] [--bin DIR] [--results FILE]
(release build of interop-server). --results appends idle_<server>_kib=KiB-per-connection lines
to FILE, for the issue 13 targets table of Benchmarks/run.sh.
"""
import argparse
import os
import pathlib
import selectors
import socket
import subprocess
import sys
import tempfile
import time

import h2.config
import h2.connection
import h2.events

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Tests" / "pyhelpers"))
from labgallery_testing import free_port, port_accepts, rss_kib  # noqa: E402

# SimpleRequest{response_size: 16}, gRPC-framed.
GRPC_BODY = b"\x00\x00\x00\x00\x02\x10\x10"
# What our server answers: prefix + SimpleResponse{payload{body: 16 zero bytes}}.
STATIC_BODY = bytes([0]) + (20).to_bytes(4, "big") + b"\x0a\x12\x12\x10" + b"\x00" * 16


class Client:
    """One HTTP/2 connection making one call, then left open and idle."""

    def __init__(self, port: int, grpc: bool):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        sid = self.conn.get_next_available_stream_id()
        if grpc:
            headers = [(":method", "POST"), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"),
                       (":path", "/grpc.testing.TestService/UnaryCall"), ("content-type", "application/grpc"),
                       ("te", "trailers")]
            self.conn.send_headers(sid, headers)
            self.conn.send_data(sid, GRPC_BODY, end_stream=True)
        else:
            headers = [(":method", "GET"), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"), (":path", "/unary")]
            self.conn.send_headers(sid, headers, end_stream=True)
        self.done = False
        self.body = b""
        self.pending = self.conn.data_to_send()

    def on_writable(self) -> None:
        if self.pending:
            n = self.sock.send(self.pending)
            self.pending = self.pending[n:]

    def on_readable(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise RuntimeError("server closed a connection")
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                self.body += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.done = True
            elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise RuntimeError(f"call failed: {ev}")
        self.pending += self.conn.data_to_send()


def open_idle(port: int, n: int, grpc: bool) -> list:
    """Opens n connections, each with one finished call; at most 100 calls in flight."""
    sel = selectors.DefaultSelector()
    clients, active = [], set()
    started = 0
    deadline = time.monotonic() + 120
    while started < n or active:
        while started < n and len(active) < 100:
            c = Client(port, grpc)
            sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            active.add(c)
            clients.append(c)
            started += 1
        if time.monotonic() > deadline:
            raise RuntimeError("calls did not finish in 120 s")
        for key, mask in sel.select(timeout=1):
            c = key.data
            if mask & selectors.EVENT_WRITE:
                c.on_writable()
            if mask & selectors.EVENT_READ:
                c.on_readable()
            if c.done and not c.pending:
                if len(c.body) < 20:
                    raise RuntimeError(f"short response: {c.body!r}")
                sel.unregister(c.sock)
                active.discard(c)
            elif c in active:
                sel.modify(c.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if c.pending else 0), c)
    sel.close()
    return clients


def settled_rss(pid: int) -> int:
    """RSS once it stopped moving (the server may trim its heap when it goes idle)."""
    last = rss_kib(pid)
    for _ in range(20):
        time.sleep(0.5)
        now = rss_kib(pid)
        if abs(now - last) <= 16:
            return now
        last = now
    return last


def measure(name: str, argv: list, port: int, grpc: bool, n: int, cwd=None) -> tuple:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    try:
        for _ in range(300):
            if port_accepts(port):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{name} never listened on {port}")
        for c in open_idle(port, 1, grpc):
            c.sock.close()
        before = settled_rss(proc.pid)
        clients = open_idle(port, n, grpc)
        after = settled_rss(proc.pid)
        for c in clients:
            c.sock.close()
        return before, after
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--bin", default=str(ROOT / ".build" / "release"), help="directory of interop-server")
    ap.add_argument("--only", choices=["ours", "grpcio", "nghttpd"], action="append")
    ap.add_argument("--results", help="append idle_<server>_kib=... lines to this file")
    args = ap.parse_args()
    n = args.connections
    rows = []
    with tempfile.TemporaryDirectory() as www:
        pathlib.Path(www, "unary").write_bytes(STATIC_BODY)
        servers = {
            "ours": ("H2RPC interop-server (UnaryCall), 2 event loops",
                     lambda p: [os.path.join(args.bin, "interop-server"), "--port", str(p)], True),
            "grpcio": ("grpcio Python server (UnaryCall)",
                       lambda p: [sys.executable, str(ROOT / "Tests/Interop/grpcio_peer_server.py"), "--port", str(p)], True),
            "nghttpd": ("nghttpd static file, same size",
                        lambda p: ["nghttpd", "--no-tls", "-d", www, str(p)], False),
        }
        for key in args.only or list(servers):
            label, argv, grpc = servers[key]
            port = free_port()
            before, after = measure(label, argv(port), port, grpc, n)
            rows.append((key, label, before, after, (after - before) / n))
    print(f"Idle connections that made one call each: {n}; server RSS before / with them open (KiB).")
    print()
    print("| server | RSS before KiB | RSS with connections KiB | KiB per connection |")
    print("|---|---|---|---|")
    for _, label, before, after, per in rows:
        print(f"| {label} | {before} | {after} | {per:.1f} |")
    if args.results:
        with open(args.results, "a") as out:
            for key, _, _, _, per in rows:
                out.write(f"idle_{key}_kib={per:.1f}\n")


if __name__ == "__main__":
    main()
