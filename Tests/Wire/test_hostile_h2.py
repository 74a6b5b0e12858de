"""Hostile HTTP/2 against our interop-server: the session's own limits (issue 10).

Each case is spoken as raw frames over a real socket (HPACK by python-hyper's hpack), so the
peer can do what no well-behaved client library would: header blocks of a quarter million
fields, 70 KB header values, thousands of HEADERS+RST_STREAM pairs. Every case must end in
a precise answer -- a grpc-status, a RST_STREAM or a GOAWAY -- within a bounded time, and
leave the server healthy: grpc.health.v1.Health/Check on a fresh connection still answers.
"""
import os
import select
import socket
import struct
import threading
import time

import hpack
import pytest

import labgallery_testing
from labgallery_testing import rss_kib

UNARY = "/grpc.testing.TestService/UnaryCall"
EMPTY = "/grpc.testing.TestService/EmptyCall"
STREAM_OUT = "/grpc.testing.TestService/StreamingOutputCall"
DUPLEX = "/grpc.testing.TestService/FullDuplexCall"
HEALTH = "/grpc.health.v1.Health/Check"

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
NO_ERROR, INTERNAL_ERROR, CANCEL, ENHANCE_YOUR_CALM = 0x0, 0x2, 0x8, 0xB
SETTINGS_MAX_FRAME_SIZE, SETTINGS_MAX_HEADER_LIST_SIZE = 0x5, 0x6

# The defaults these tests pin (h2_config / H2Configuration).
MAX_HEADER_LIST = 16 * 1024
MAX_HEADER_COUNT = 100
MAX_GRPC_MESSAGE = 8 * 1024


def grpc_frame(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


def varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def h2_frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def request_fields(path=UNARY, extra=(), content_type="application/grpc"):
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
            ("content-type", content_type), ("te", "trailers"), *extra]


def encode_block(fields, huffman=True) -> bytes:
    """A header block that references only the static table (a fresh encoder each time), so
    blocks can be built in any order and sent on any connection."""
    return hpack.Encoder().encode(fields, huffman=huffman)


def headers_frames(sid: int, block: bytes, end_stream=False, max_frame=16384) -> bytes:
    """HEADERS (+ CONTINUATION...) carrying `block`."""
    chunks = [block[i:i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
    out = b""
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        if i == 0:
            flags = (END_STREAM if end_stream else 0) | (END_HEADERS if last else 0)
            out += h2_frame(HEADERS, flags, sid, chunk)
        else:
            out += h2_frame(CONTINUATION, END_HEADERS if last else 0, sid, chunk)
    return out


class Stream:
    def __init__(self):
        self.blocks = []  # decoded header blocks: list of dicts
        self.data = b""
        self.reset = None
        self.ended = False

    @property
    def done(self):
        return self.ended or self.reset is not None

    def status(self):
        """(grpc-status, grpc-message) of the last block, or None."""
        for block in reversed(self.blocks):
            if "grpc-status" in block:
                return int(block["grpc-status"]), block.get("grpc-message", "")
        return None


class RawPeer:
    """A client connection speaking raw frames. A reader runs on the caller's thread (`pump`);
    sends are serialised by a lock, so another thread may send at the same time."""

    def __init__(self, port: int, window: int = 1 << 24):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lock = threading.Lock()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.buf = b""
        self.streams: dict[int, Stream] = {}
        self.server_settings: dict[int, int] = {}
        self.goaway = None  # (last stream id, error code)
        self.eof = False
        self.next_sid = 1
        self._block = None  # (sid, flags, fragments) of a header block in progress
        self.send(PREFACE + h2_frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, window))
                  + h2_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", window - 65535)))

    def send(self, data: bytes):
        with self.lock:
            self.sock.sendall(data)

    def new_sid(self) -> int:
        sid = self.next_sid
        self.next_sid += 2
        self.streams[sid] = Stream()
        return sid

    def close(self):
        self.sock.close()

    # reading

    def _read_frame(self, deadline):
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + length:
                    hdr, payload = self.buf[:9], self.buf[9:9 + length]
                    self.buf = self.buf[9 + length:]
                    return hdr[3], hdr[4], int.from_bytes(hdr[5:9], "big") & 0x7FFFFFFF, payload
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                return None
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.eof = True
                return None
            self.buf += chunk

    def _handle(self, ftype, flags, sid, payload):
        if ftype == SETTINGS and not flags & ACK:
            for i in range(0, len(payload), 6):
                ident, value = struct.unpack(">HI", payload[i:i + 6])
                self.server_settings[ident] = value
            self.send(h2_frame(SETTINGS, ACK, 0))
        elif ftype == PING and not flags & ACK:
            self.send(h2_frame(PING, ACK, 0, payload))
        elif ftype == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = (last & 0x7FFFFFFF, code)
        elif ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                self._block = (sid, flags, [payload])
            else:
                self._block[2].append(payload)
            if flags & END_HEADERS:
                bsid, bflags, fragments = self._block
                self._block = None
                fields = self.decoder.decode(b"".join(fragments), raw=False)
                st = self.streams.setdefault(bsid, Stream())
                st.blocks.append(dict(fields))
                if bflags & END_STREAM:
                    st.ended = True
        elif ftype == DATA:
            st = self.streams.setdefault(sid, Stream())
            st.data += payload
            if payload:
                self.send(h2_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload)))
                          + h2_frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", len(payload))))
            if flags & END_STREAM:
                st.ended = True
        elif ftype == RST_STREAM:
            self.streams.setdefault(sid, Stream()).reset = struct.unpack(">I", payload)[0]

    def pump(self, until, timeout: float) -> bool:
        """Handles frames until `until()` holds (True), or EOF or `timeout` (False)."""
        deadline = time.monotonic() + timeout
        while not until():
            f = self._read_frame(deadline)
            if f is None:
                return until()
            self._handle(*f)
        return True

    def wait_settings(self, timeout=10):
        assert self.pump(lambda: SETTINGS_MAX_FRAME_SIZE in self.server_settings
                         or SETTINGS_MAX_HEADER_LIST_SIZE in self.server_settings, timeout), "no SETTINGS"

    def wait_stream(self, sid, timeout=10) -> Stream:
        self.pump(lambda: self.streams[sid].done or self.goaway is not None, timeout)
        return self.streams[sid]

    # calls

    def call(self, path, message: bytes = b"", extra=(), timeout=10) -> Stream:
        body = grpc_frame(message)
        if len(body) > 65535:
            self.wait_settings()  # the server's larger windows apply once its SETTINGS arrived
        sid = self.new_sid()
        out = headers_frames(sid, encode_block(request_fields(path, extra)))
        for i in range(0, len(body), 16384):
            out += h2_frame(DATA, END_STREAM if i + 16384 >= len(body) else 0, sid, body[i:i + 16384])
        self.send(out)
        return self.wait_stream(sid, timeout)


def health_check(port, timeout=10) -> float:
    """grpc.health.v1.Health/Check on a fresh connection: asserts SERVING; returns seconds taken."""
    start = time.monotonic()
    peer = RawPeer(port)
    try:
        st = peer.call(HEALTH, timeout=timeout)
        assert st.status() == (0, ""), (st.blocks, st.reset, peer.goaway)
        assert st.data == grpc_frame(b"\x08\x01"), st.data  # HealthCheckResponse{status: SERVING}
    finally:
        peer.close()
    return time.monotonic() - start


def answered(st: Stream, peer: RawPeer) -> bool:
    """A precise end: a grpc-status, or a reset of the stream."""
    return st.status() is not None or st.reset is not None


def run_server(tmp_path_factory, *extra):
    binary = labgallery_testing.find_binary("interop-server")
    with labgallery_testing.ServerProcess([binary, "--port", "0", "--host", "127.0.0.1", *extra],
                                          log_dir=tmp_path_factory.mktemp("hostile")) as process:
        port = int(process.wait_for_line(r"listening on port (\d+)").group(1))
        yield port, process.pid
        code = process.stop(timeout=10)
    assert code == 0, f"interop-server exited with {code}; output: {process.log()!r}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Yields (port, pid) of an interop-server with the default limits."""
    yield from run_server(tmp_path_factory)


@pytest.fixture(scope="module")
def roomy_server(tmp_path_factory):
    """An interop-server accepting header lists up to 256 KiB: a 70 KB header gets through to
    the handlers that echo it, so what is left to bound it is the grpc-message cap."""
    yield from run_server(tmp_path_factory, "--max_header_list_size", str(256 * 1024))


# ------------------------------------------------------------------ finding 5: large response headers


def test_long_grpc_message_from_a_handler_is_capped(server):
    """A handler's 70,000-byte status message would make a trailers block nghttp2 refuses to
    send (over 64 KiB): the client would wait forever. It is cut to 8 KiB instead."""
    port, _ = server
    text = b"x" * 70000
    status = b"\x08\x02" + b"\x12" + varint(len(text)) + text  # EchoStatus{code: 2, message}
    request = b"\x3a" + varint(len(status)) + status  # SimpleRequest{response_status}
    peer = RawPeer(port)
    start = time.monotonic()
    st = peer.call(UNARY, request, timeout=2)
    took = time.monotonic() - start
    peer.close()
    assert st.status() is not None, f"no status within 2 s: {st.blocks} reset={st.reset}"
    code, message = st.status()
    assert code == 2 and took < 2
    assert len(message.encode()) <= MAX_GRPC_MESSAGE
    assert message.startswith("x" * 1000) and message.endswith("%E2%80%A6"), message[-40:]
    health_check(port)


@pytest.mark.parametrize("name", [":path", "content-type", "grpc-encoding", "grpc-timeout"])
def test_70kb_request_header_is_answered(server, name):
    """A 70 KB value of a header the server echoes in its error message used to make a
    response block over 64 KiB that was never sent. Now the request itself is over the
    header-list limit: answered at once."""
    port, _ = server
    code, message = send_70kb_header(port, name)
    assert code == 8 and "header list" in message, message
    health_check(port)


@pytest.mark.parametrize("name", [":path", "content-type", "grpc-encoding", "grpc-timeout"])
def test_70kb_request_header_echoed_is_capped(roomy_server, name):
    """With the header-list limit raised, the same header reaches the code that echoes it in
    a status message (unknown method, bad content-type, unsupported encoding, malformed
    timeout): the message is cut to 8 KiB, and the status arrives."""
    port, _ = roomy_server
    code, message = send_70kb_header(port, name)
    assert code in (3, 12, 13), (code, message[:200])
    assert len(message.encode()) <= MAX_GRPC_MESSAGE and message.endswith("%E2%80%A6"), message[-60:]
    health_check(port)


def send_70kb_header(port, name):
    """Sends a request whose `name` header is 70,000 bytes; returns its (grpc-status,
    grpc-message), which must come within 2 s."""
    long = "a" * 70000
    fields = request_fields(UNARY)
    value = {":path": "/" + long, "content-type": "text/" + long}.get(name, long)
    fields = [(n, value if n == name else v) for n, v in fields]
    if name not in dict(fields):
        fields.append((name, value))
    # Huffman-coded, the value is about 44 KB on the wire: under HPACK's 64 KiB string limit.
    block = encode_block(fields)  # (pure Python: encoded before the clock starts)
    peer = RawPeer(port)
    sid = peer.new_sid()
    start = time.monotonic()
    peer.send(headers_frames(sid, block) + h2_frame(DATA, END_STREAM, sid, grpc_frame(b"")))
    st = peer.wait_stream(sid, timeout=2)
    took = time.monotonic() - start
    peer.close()
    assert st.status() is not None and took < 2, f"{name}: no status within 2 s ({st.blocks}, {st.reset}, {peer.goaway})"
    return st.status()


# ------------------------------------------------------------------ finding 1: header count and list size


def test_server_advertises_max_header_list_size(server):
    port, _ = server
    peer = RawPeer(port)
    peer.wait_settings()
    peer.close()
    assert peer.server_settings.get(SETTINGS_MAX_HEADER_LIST_SIZE) == MAX_HEADER_LIST


def test_header_count_limit(server):
    port, _ = server
    base = len(request_fields(EMPTY))
    peer = RawPeer(port)
    # At the limit: served.
    extra = [(f"x-h{i}", "v") for i in range(MAX_HEADER_COUNT - base)]
    assert peer.call(EMPTY, extra=extra).status() == (0, "")
    # One more: answered RESOURCE_EXHAUSTED before any handler, on a connection that goes on serving.
    extra.append(("x-one-more", "v"))
    code, message = peer.call(EMPTY, extra=extra).status()
    assert code == 8 and f"has {MAX_HEADER_COUNT + 1} fields" in message, message
    assert peer.call(EMPTY).status() == (0, "")
    peer.close()


def test_header_list_size_limit(server):
    port, _ = server
    fields = request_fields(EMPTY)
    size = sum(len(n) + len(v) + 32 for n, v in fields)
    pad = MAX_HEADER_LIST - size - (len("x-big") + 32)
    peer = RawPeer(port)
    assert peer.call(EMPTY, extra=[("x-big", "v" * pad)]).status() == (0, "")
    code, message = peer.call(EMPTY, extra=[("x-big", "v" * (pad + 1))]).status()
    assert code == 8 and f"is {MAX_HEADER_LIST + 1} bytes" in message, message
    peer.close()
    health_check(port)


def indexed_flood_block(path=EMPTY, fields=250_000) -> bytes:
    """A request block followed by `fields` one-byte indexed fields: 0x90 is static entry 16,
    `accept-encoding: gzip, deflate`, a regular header that may repeat (a repeated
    pseudo-header such as 0x82 would be refused by nghttp2 at the second one)."""
    return encode_block(request_fields(path)) + b"\x90" * fields


def test_quarter_million_indexed_fields_are_refused_with_memory_bounded(server):
    """5 connections x 10 streams, each a 256 KiB header block of 250,000 one-byte indexed
    fields (HEADERS + CONTINUATION, in frames the server's SETTINGS allow): every stream is
    refused, the server's memory barely moves, and it stays healthy."""
    port, pid = server
    block = indexed_flood_block()
    assert len(block) < 256 * 1024
    before = rss_kib(pid)
    peak = before
    peers = [RawPeer(port) for _ in range(5)]
    for peer in peers:
        peer.wait_settings()
        frame_size = min(peer.server_settings.get(SETTINGS_MAX_FRAME_SIZE, 16384), 128 * 1024)
        for _ in range(10):
            sid = peer.new_sid()
            peer.send(headers_frames(sid, block, max_frame=frame_size)
                      + h2_frame(DATA, END_STREAM, sid, grpc_frame(b"")))
    for peer in peers:
        for sid, st in peer.streams.items():
            peer.wait_stream(sid, timeout=10)
            assert answered(st, peer) or peer.goaway is not None, f"stream {sid}: {st.blocks} {st.reset}"
            if st.status() is not None:
                code, message = st.status()
                assert code == 8 and "250006 fields" in message, message
        peak = max(peak, rss_kib(pid))
        peer.close()
    assert peak - before < 64 * 1024, f"RSS grew by {peak - before} KiB"
    health_check(port)


def test_header_block_in_many_continuations_closes_the_connection(server):
    """The same block in 16 KiB frames needs 16 CONTINUATIONs: over nghttp2's limit of 8
    (CVE-2024-28182), the connection ends. The server stays healthy."""
    port, _ = server
    peer = RawPeer(port)
    sid = peer.new_sid()
    peer.send(headers_frames(sid, indexed_flood_block(), max_frame=16384))
    peer.pump(lambda: peer.streams[sid].done or peer.goaway is not None or peer.eof, timeout=5)
    peer.close()
    assert peer.streams[sid].done or peer.goaway is not None or peer.eof
    health_check(port)


# ------------------------------------------------------------------ finding 6: rapid reset


def rapid_reset_pairs(first_sid: int, count: int, path=DUPLEX) -> bytes:
    block = encode_block(request_fields(path), huffman=False)
    out = bytearray()
    for i in range(count):
        sid = first_sid + 2 * i
        out += h2_frame(HEADERS, END_HEADERS, sid, block)
        out += h2_frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
    return bytes(out)


def test_rapid_reset_gets_enhance_your_calm(server):
    """5000 HEADERS+RST_STREAM pairs on one connection (each opening a FullDuplexCall whose
    handler starts at once): GOAWAY ENHANCE_YOUR_CALM after the burst; then a fresh
    connection is served within 1 s."""
    port, _ = server
    peer = RawPeer(port)
    peer.wait_settings()
    payload = rapid_reset_pairs(1, 5000)

    def flood():
        try:
            peer.send(payload)
        except OSError:
            pass  # the server closed the connection under us: expected

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    peer.pump(lambda: peer.goaway is not None, timeout=20)
    got = peer.goaway
    sender.join(timeout=20)
    peer.close()
    assert got is not None, f"no GOAWAY (eof={peer.eof})"
    assert got[1] == ENHANCE_YOUR_CALM, f"GOAWAY code {got[1]:#x}"
    # The burst (1000) plus what the rate refilled meanwhile; far short of 5000.
    assert got[0] < 2 * 3000, got
    assert health_check(port) < 1.0


def test_resets_of_answered_streams_count_too(server):
    """The old guard counted only streams reset before any response, so a flood that waited
    for each stream's first response went uncounted. 4 rounds of 500 streaming calls, each
    reset once its first response arrived: GOAWAY ENHANCE_YOUR_CALM before the last round
    ends (2000 resets; the bucket holds 1000 and refills 100 a second)."""
    port, _ = server
    peer = RawPeer(port)
    peer.wait_settings()
    # StreamingOutputCallRequest{response_parameters: [{size: 1}, {size: 1, interval_us: 60 s}]}
    params = grpc_frame(b"\x12\x02\x08\x01" + b"\x12\x07\x08\x01\x10" + varint(60_000_000))
    block = encode_block(request_fields(STREAM_OUT))
    for _ in range(4):
        sids = [peer.new_sid() for _ in range(500)]
        peer.send(b"".join(headers_frames(sid, block) + h2_frame(DATA, END_STREAM, sid, params) for sid in sids))
        peer.pump(lambda: peer.goaway is not None or all(peer.streams[s].data for s in sids), timeout=20)
        if peer.goaway is not None:
            break
        peer.send(b"".join(h2_frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)) for sid in sids))
    peer.pump(lambda: peer.goaway is not None, timeout=10)
    peer.close()
    assert peer.goaway is not None and peer.goaway[1] == ENHANCE_YOUR_CALM, (peer.goaway, peer.eof)
    assert health_check(port) < 1.0


def test_cancelling_under_the_burst_is_not_penalised(server):
    """900 streams opened and cancelled at once (a client dropping a fan-out) on one
    connection: under the burst, the connection goes on serving."""
    port, _ = server
    peer = RawPeer(port)
    peer.wait_settings()
    peer.send(rapid_reset_pairs(1, 900))
    peer.next_sid = 1 + 2 * 900
    assert peer.call(EMPTY).status() == (0, "")
    assert peer.goaway is None
    peer.close()


@pytest.mark.parametrize("code", [CANCEL, NO_ERROR])
def test_reset_cancels_the_running_handler(tmp_path, code):
    """A reset call's handler is cancelled, whatever the reset's error code (the Swift side
    cancels the task on any on_close code but 0; the shim reports a peer's NO_ERROR reset as
    CANCEL). Seen from outside: with 20 handlers each sleeping 60 s inside a streaming
    response, reset, SIGTERM shuts the server down at once instead of waiting out its 5 s
    grace period for calls in flight."""
    binary = labgallery_testing.find_binary("interop-server")
    with labgallery_testing.ServerProcess([binary, "--port", "0", "--host", "127.0.0.1"],
                                          log_dir=tmp_path) as process:
        port = int(process.wait_for_line(r"listening on port (\d+)").group(1))
        peer = RawPeer(port)
        # StreamingOutputCallRequest{response_parameters: [{size: 1}, {size: 1, interval_us: 60 s}]}
        params = b"\x12\x02\x08\x01" + b"\x12\x07\x08\x01\x10" + varint(60_000_000)
        assert len(params) == 4 + 2 + 7
        sids = []
        for _ in range(20):
            sid = peer.new_sid()
            peer.send(headers_frames(sid, encode_block(request_fields(STREAM_OUT)))
                      + h2_frame(DATA, END_STREAM, sid, grpc_frame(params)))
            sids.append(sid)
        # The first response of each: its handler is running, and now sleeps.
        assert peer.pump(lambda: all(peer.streams[s].data for s in sids), timeout=10), \
            [sid for sid in sids if not peer.streams[sid].data]
        for sid in sids:
            peer.send(h2_frame(RST_STREAM, 0, sid, struct.pack(">I", code)))
        # The resets are processed before the next call on the connection.
        assert peer.call(EMPTY).status() == (0, "")
        peer.close()
        start = time.monotonic()
        code = process.stop(timeout=10)
        took = time.monotonic() - start
        assert code == 0, process.log()
    # 5 s would mean the grace period ran out with the handlers still sleeping.
    assert took < 4.0, f"shutdown took {took:.1f} s: the reset handlers kept running ({process.log()})"


# The flood is 50 connections; each costs the server about 1100 handlers started and
# cancelled before its GOAWAY, which a 2-core machine busy with other builds may not finish
# within the Health bound. CI runs 10; `H2_FLOOD_CONNECTIONS=50` runs the numbers.
FLOOD_CONNECTIONS = int(os.environ.get("H2_FLOOD_CONNECTIONS", "10"))


def test_sustained_reset_flood(server):
    """FLOOD_CONNECTIONS connections x 900 HEADERS+RST_STREAM pairs a second: under the old
    limit (1000 a second, counting only unanswered streams), such a flood could go on for
    ever. Now every connection runs out of tokens within a few seconds (GOAWAY
    ENHANCE_YOUR_CALM, then the close; a GOAWAY may be lost when the server closes with our
    frames unread, so a close counts too), while Health on fresh connections answers with
    p99 < 1 s and RSS stays bounded. The flood stops at 10 s whatever happens."""
    port, pid = server
    conns, rate, tick, duration = FLOOD_CONNECTIONS, 900, 0.1, 10.0
    per_tick = int(rate * tick)
    block = encode_block(request_fields(DUPLEX), huffman=False)
    rst = struct.pack(">I", CANCEL)
    socks, next_sid, bufs, codes = [], [], [], {}
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(PREFACE + h2_frame(SETTINGS, 0, 0))
        socks.append(s)
        next_sid.append(1)
        bufs.append(b"")
    open_ = set(range(conns))
    before = rss_kib(pid)
    peak = before
    latencies = []
    stop = threading.Event()

    def prober():
        while not stop.is_set():
            latencies.append(health_check(port))
            stop.wait(0.05)

    probe = threading.Thread(target=prober, daemon=True)
    probe.start()
    start = time.monotonic()
    next_tick = start
    while open_ and time.monotonic() - start < duration:
        for i in list(open_):
            out = bytearray()
            for _ in range(per_tick):
                sid = next_sid[i]
                next_sid[i] += 2
                out += h2_frame(HEADERS, END_HEADERS, sid, block) + h2_frame(RST_STREAM, 0, sid, rst)
            try:
                socks[i].sendall(out)
            except OSError:
                open_.discard(i)
        readable, _, _ = select.select([socks[i] for i in open_], [], [], 0)
        for s in readable:
            i = socks.index(s)
            try:
                chunk = s.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                open_.discard(i)
                continue
            bufs[i] += chunk
            while len(bufs[i]) >= 9 and len(bufs[i]) >= 9 + int.from_bytes(bufs[i][:3], "big"):
                length = int.from_bytes(bufs[i][:3], "big")
                if bufs[i][3] == GOAWAY:
                    codes[i] = struct.unpack(">I", bufs[i][13:17])[0]
                bufs[i] = bufs[i][9 + length:]
        peak = max(peak, rss_kib(pid))
        next_tick += tick
        time.sleep(max(0.0, next_tick - time.monotonic()))
    took = time.monotonic() - start
    stop.set()
    probe.join(timeout=30)
    for s in socks:
        s.close()
    print(f"flood: {conns} connections cut off after {took:.1f} s, {len(codes)} GOAWAYs seen; Health "
          f"p50/max {sorted(latencies)[len(latencies) // 2] if latencies else 0:.3f}/{max(latencies, default=0):.3f} s "
          f"over {len(latencies)} checks; RSS +{peak - before} KiB")
    assert not open_, f"{len(open_)} connections still flooding after {took:.1f} s"
    assert codes and set(codes.values()) == {ENHANCE_YOUR_CALM}, codes
    assert latencies, "no health check finished"
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    assert p99 < 1.0, f"Health p99 {p99:.3f} s over {len(latencies)} checks ({latencies}, flood {took:.1f} s)"
    assert peak - before < 256 * 1024, f"RSS grew by {peak - before} KiB"
    assert health_check(port) < 1.0
