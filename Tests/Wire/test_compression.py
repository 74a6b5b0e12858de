"""Message compression on the wire, spoken as raw HTTP/2 to our interop-server: gzip and
deflate requests, a zip bomb, corrupt compressed data, the advertised encodings."""
import struct
import time
import zlib

from labgallery_testing import rss_kib
from test_bad_input import DUPLEX, UNARY, Peer, assert_healthy, frame, status_of


def simple_request(response_size: int, body: bytes) -> bytes:
    """A grpc.testing.SimpleRequest: response_size (field 2), payload (3) with body (2)."""
    def varint(n):
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out
    payload = b"\x12" + varint(len(body)) + body
    return b"\x10" + varint(response_size) + b"\x1a" + varint(len(payload)) + payload


def compress(data: bytes, encoding: str) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
    return c.compress(data) + c.flush()


def zeros_compressed(size: int, encoding: str) -> bytes:
    """`size` zero bytes compressed without holding them (a bomb of ~1000:1)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
    chunk = b"\x00" * (1 << 20)
    out = [c.compress(chunk) for _ in range(size >> 20)]
    return b"".join(out) + c.flush()


def send_all(peer, sid, data: bytes):
    """Sends `data` on stream `sid` as the peer's flow-control windows allow, reading its
    WINDOW_UPDATEs while they are closed."""
    while data:
        window = min(peer.conn.local_flow_control_window(sid), peer.conn.max_outbound_frame_size)
        if window <= 0:
            peer.conn.receive_data(peer.sock.recv(65536))
            peer.flush()
            continue
        chunk, data = data[:window], data[window:]
        peer.data(sid, chunk, end=not data)


def test_compressed_requests_and_responses(server):
    port, _ = server
    for encoding in ("gzip", "deflate"):
        peer = Peer(port, window=1 << 20)
        sid = peer.headers(extra=[("grpc-encoding", encoding), ("grpc-accept-encoding", encoding)])
        peer.data(sid, frame(compress(simple_request(1000, b"\x00" * 50_000), encoding), compressed=True))
        res = peer.call(sid)
        peer.close()
        assert status_of(res)[0] == 0, res
        assert "gzip" in res["headers"]["grpc-accept-encoding"], res["headers"]
        # Without response_compressed the response goes uncompressed.
        assert res["data"][0] == 0


def test_zip_bomb_is_resource_exhausted_without_inflating_it(server):
    """256 MiB of zeros in a 260 KB gzip message: the server stops at its 4 MiB limit."""
    port, pid = server
    bomb = zeros_compressed(256 << 20, "gzip")
    assert len(bomb) < 1 << 20
    before = rss_kib(pid)
    for path in (UNARY, DUPLEX):
        peer = Peer(port, window=1 << 20)
        sid = peer.headers(path=path, extra=[("grpc-encoding", "gzip")])
        started = time.monotonic()
        send_all(peer, sid, frame(bomb, compressed=True))
        code, message = status_of(peer.call(sid))
        peer.close()
        assert code == 8, message
        assert "inflates" in message and "limit" in message, message
        assert time.monotonic() - started < 10
    grown_mib = (rss_kib(pid) - before) / 1024
    assert grown_mib < 64, f"the server grew by {grown_mib:.0f} MiB on a bomb of 256 MiB"
    assert_healthy(port)


def test_corrupt_or_truncated_compressed_data_is_internal(server):
    port, _ = server
    good = compress(simple_request(10, b"abc"), "gzip")
    for data in (b"\x1f\x8b\x08\x00garbage!!", good[: len(good) // 2], good + b"trailing"):
        peer = Peer(port)
        sid = peer.headers(extra=[("grpc-encoding", "gzip")])
        peer.data(sid, frame(data, compressed=True))
        code, message = status_of(peer.call(sid))
        peer.close()
        assert code == 13, message
        assert "gzip" in message, message
    assert_healthy(port)


def test_compressed_flag_with_identity_encoding_is_internal(server):
    port, _ = server
    peer = Peer(port)
    sid = peer.headers(extra=[("grpc-encoding", "identity")])
    peer.data(sid, frame(compress(b"\x10\x01", "gzip"), compressed=True))
    code, message = status_of(peer.call(sid))
    peer.close()
    assert code == 13, message
    assert "grpc-encoding" in message, message


def test_unsupported_encoding_lists_what_the_server_accepts(server):
    port, _ = server
    peer = Peer(port)
    sid = peer.headers(extra=[("grpc-encoding", "br")])
    peer.data(sid, frame(b""))
    res = peer.call(sid)
    peer.close()
    code, message = status_of(res)
    assert code == 12, message
    block = res["trailers"] or res["headers"]
    assert block["grpc-accept-encoding"] == "identity,deflate,gzip"
    assert "gzip" in message and "br" in message, message


def test_prefix_length_is_the_compressed_size(server):
    """The 5-byte prefix carries the compressed length; the server answers a response_size of
    0 with an empty payload."""
    port, _ = server
    peer = Peer(port)
    sid = peer.headers(extra=[("grpc-encoding", "deflate")])
    packed = compress(simple_request(0, b""), "deflate")
    peer.data(sid, struct.pack(">BI", 1, len(packed)) + packed)
    assert status_of(peer.call(sid))[0] == 0
    peer.close()
