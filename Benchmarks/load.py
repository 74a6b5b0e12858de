#!/usr/bin/env python3
"""Bounded load test on loopback (`make load`; not part of `make test`).

Against one release interop-server, for DURATION seconds at once:
  - unary: h2load, 1,000 connections x 10 concurrent UnaryCall streams (16-byte responses),
    per-request latencies from its --log-file;
  - 100 server streams (grpcio): StreamingOutputCall, a 1 KiB message every 100 ms for the
    whole run, each checked to end OK with every message;
  - 50 hostile connections that keep reconnecting: 15 rapid-reset floods (HEADERS+RST_STREAM
    pairs as fast as they go), 15 that never send the preface, 10 that send 10 messages each
    of which never completes (all but the last byte of 4 MiB), 10 that never read (windows
    at 0) and ask for 64 KiB responses.
Reports errors (unary: HTTP failures, and answers without their response message; streams:
any status but OK or a message missing), unary p50/p99/p99.9 latency and throughput, the
server's RSS (start, peak, end), and what the hostile connections achieved. Exits 1 on any
error. LOAD_OUT=FILE also writes the table (markdown).
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Tests" / "Interop"))
import interop_stubs  # noqa: E402  (grpc.testing messages and stubs generated from Protos/)

DURATION = int(os.environ.get("DURATION", "20"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "1000"))
STREAMS_PER_CONNECTION = int(os.environ.get("STREAMS_PER_CONNECTION", "10"))
SERVER_STREAMS = int(os.environ.get("SERVER_STREAMS", "100"))
UNARY = "/grpc.testing.TestService/UnaryCall"
MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def frame(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


REQUEST_FIELDS = [(":method", "POST"), (":scheme", "http"), (":path", UNARY), (":authority", "load"),
                  ("content-type", "application/grpc"), ("te", "trailers")]


# MARK: - hostile connections


class Hostile:
    """Counters of what the hostile connections did, shared by their threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n


def h2_client(port, window=None):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    if window is not None:
        conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def pump(sock, conn, timeout):
    sock.settimeout(timeout)
    try:
        data = sock.recv(1 << 20)
    except (socket.timeout, BlockingIOError):
        return True
    if not data:
        return False
    try:
        conn.receive_data(data)
    except Exception:
        return False
    out = conn.data_to_send()
    if out:
        sock.sendall(out)
    return True


def rapid_reset(port, stop, stats):
    while not stop.is_set():
        try:
            sock, conn = h2_client(port)
            stats.add("reset floods connected")
            while not stop.is_set():
                for _ in range(100):
                    sid = conn.get_next_available_stream_id()
                    conn.send_headers(sid, REQUEST_FIELDS)
                    conn.reset_stream(sid)
                sock.sendall(conn.data_to_send())
                stats.add("HEADERS+RST pairs sent", 100)
                if not pump(sock, conn, 0.001):
                    break
        except (OSError, Exception):
            pass
        stats.add("reset floods cut off")
        time.sleep(0.05)


def no_preface(port, stop, stats):
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            stats.add("silent connections opened")
            sock.settimeout(0.5)
            while not stop.is_set():
                try:
                    if sock.recv(4096) == b"":
                        stats.add("silent connections closed by the server")
                        break
                except socket.timeout:
                    continue
            sock.close()
        except OSError:
            time.sleep(0.1)


def never_complete(port, stop, stats):
    body = frame(b"\x1a" + varint(4 * MIB - 16) + b"\x12" + varint(4 * MIB - 21) + b"\x07" * (4 * MIB - 21))[:-1]
    while not stop.is_set():
        try:
            sock, conn = h2_client(port)
            pending = []
            for _ in range(10):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, REQUEST_FIELDS)
                pending.append([sid, memoryview(body)])
            sock.sendall(conn.data_to_send())
            while not stop.is_set():
                for entry in pending:
                    while entry[1]:
                        try:
                            window = min(conn.local_flow_control_window(entry[0]), conn.max_outbound_frame_size)
                        except Exception:
                            entry[1] = entry[1][:0]
                            break
                        if window <= 0:
                            break
                        n = min(window, len(entry[1]))
                        conn.send_data(entry[0], entry[1][:n].tobytes())
                        entry[1] = entry[1][n:]
                        stats.add("partial bytes sent", n)
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                if not pump(sock, conn, 0.05):
                    break
            sock.close()
        except (OSError, Exception):
            time.sleep(0.1)


def never_read(port, stop, stats):
    request = frame(varint(2 << 3) + varint(64 * 1024))  # SimpleRequest{response_size: 65536}
    while not stop.is_set():
        try:
            sock, conn = h2_client(port, window=0)
            while not stop.is_set():
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, REQUEST_FIELDS)
                conn.send_data(sid, request, end_stream=True)
                sock.sendall(conn.data_to_send())
                stats.add("unread calls sent")
                if not pump(sock, conn, 0.02):
                    break
            sock.close()
        except (OSError, Exception):
            time.sleep(0.1)


# MARK: - server streams


def server_stream(port, messages, results, index):
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = STUBS.test_pb2_grpc.TestServiceStub(channel)
            params = [STUBS.messages_pb2.ResponseParameters(size=1024, interval_us=100_000)
                      for _ in range(messages)]
            request = STUBS.messages_pb2.StreamingOutputCallRequest(response_parameters=params)
            got = sum(1 for _ in stub.StreamingOutputCall(request, timeout=DURATION + 60))
            results[index] = None if got == messages else f"{got} of {messages} messages"
    except grpc.RpcError as e:
        results[index] = f"{e.code().name}: {e.details()}"


# MARK: - the run


def main() -> int:
    global STUBS
    STUBS = interop_stubs.load(Path(tempfile.mkdtemp(prefix="labgallery-load-stubs-")))
    subprocess.run(["swift", "build", "-c", "release", "--product", "interop-server"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="labgallery-load-"))
    port = free_port()
    log = open(work / "server.log", "w")
    server = subprocess.Popen([str(ROOT / ".build/release/interop-server"), "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        (work / "request.bin").write_bytes(frame(varint(2 << 3) + varint(16)))  # response_size 16
        start_rss = rss_kib(server.pid)
        stop = threading.Event()
        stats = Hostile()
        hostile = ([threading.Thread(target=rapid_reset, args=(port, stop, stats)) for _ in range(15)]
                   + [threading.Thread(target=no_preface, args=(port, stop, stats)) for _ in range(15)]
                   + [threading.Thread(target=never_complete, args=(port, stop, stats)) for _ in range(10)]
                   + [threading.Thread(target=never_read, args=(port, stop, stats)) for _ in range(10)])
        stream_results = ["did not end"] * SERVER_STREAMS
        messages = DURATION * 10
        streams = [threading.Thread(target=server_stream, args=(port, messages, stream_results, i))
                   for i in range(SERVER_STREAMS)]
        for t in hostile + streams:
            t.daemon = True
            t.start()
        peak = [start_rss]
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                peak[0] = max(peak[0], rss_kib(server.pid))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(1)  # the streams and the hostile connections are running
        h2load = subprocess.run(
            ["h2load", "-c", str(CONNECTIONS), "-m", str(STREAMS_PER_CONNECTION), "-D", str(DURATION - 2),
             "--warm-up-time", "1", "-d", str(work / "request.bin"),
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             "--log-file", str(work / "requests.log"), f"http://127.0.0.1:{port}{UNARY}"],
            capture_output=True, text=True, timeout=DURATION + 120)
        for t in streams:
            t.join(timeout=DURATION + 90)
        stop.set()
        for t in hostile:
            t.join(timeout=10)
        time.sleep(1)
        sampling.set()
        sampler.join()
        end_rss = rss_kib(server.pid)
        alive = server.poll() is None
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    # Unary: latencies from the log; an answer without its 25-byte response message is an error.
    latencies, statuses = [], {}
    for line in (work / "requests.log").read_text().splitlines():
        _, status, micros = line.split("\t")[:3]
        statuses[status] = statuses.get(status, 0) + 1
        latencies.append(int(micros) / 1000)
    latencies.sort()
    done = ok = failed = errored = data_bytes = 0
    for line in h2load.stdout.splitlines():
        if line.startswith("requests:"):
            words = line.replace(",", "").split()
            done = int(words[words.index("done") - 1])
            ok = int(words[words.index("succeeded") - 1])
            failed = int(words[words.index("failed") - 1])
            errored = int(words[words.index("errored") - 1])
        if line.startswith("traffic:"):
            part = line.split("data")[0].split(",")[-1].strip()  # "... (N) data"
            data_bytes = int(part.split("(")[-1].rstrip(")")) if "(" in part else 0
    reqs_per_s = next((line.split()[1] for line in h2load.stdout.splitlines() if line.startswith("finished in")), "")
    for line in h2load.stdout.splitlines():
        if line.startswith("finished in"):
            reqs_per_s = line.split(",")[1].strip()
    missing_messages = max(0, ok - data_bytes // 25)
    stream_errors = [r for r in stream_results if r is not None]

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else float("nan")

    rows = [
        ("unary calls (h2load, %d connections x %d streams, %d s)" % (CONNECTIONS, STREAMS_PER_CONNECTION,
                                                                       DURATION - 2), f"{done} ({reqs_per_s})"),
        ("unary errors (HTTP failed/errored, or no response message)",
         f"{failed + errored + missing_messages} (failed {failed}, errored {errored}, without message {missing_messages})"),
        ("unary latency p50 / p99 / p99.9 / max", f"{pct(0.5):.1f} / {pct(0.99):.1f} / {pct(0.999):.1f} / "
                                                   f"{latencies[-1] if latencies else float('nan'):.1f} ms"),
        ("server streams (grpcio, 1 KiB every 100 ms)", f"{SERVER_STREAMS}, errors {len(stream_errors)}"),
        ("server RSS start / peak / end", f"{start_rss // 1024} / {peak[0] // 1024} / {end_rss // 1024} MiB"),
    ] + [(f"hostile: {k}", f"{v}") for k, v in sorted(stats.counts.items())]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    print(table)
    if stream_errors:
        print("stream errors:", sorted(set(stream_errors))[:5])
    if os.environ.get("LOAD_OUT"):
        Path(os.environ["LOAD_OUT"]).write_text(table + "\n")
    errors = failed + errored + missing_messages + len(stream_errors)
    if not alive:
        print("the server died:", (work / "server.log").read_text()[-2000:])
        return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
