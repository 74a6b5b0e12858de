"""Hostile calls, spoken as raw HTTP/2 (python-hyper h2): requests that never complete, requests
without a token, messages that amplify in protobuf-c, strings that are not strings.

The server's limits on calls (README "Limits: calls"): a call is authenticated and its deadline
armed when its headers arrive; a request not complete within the request timeout ends with
DEADLINE_EXCEEDED; incomplete requests may hold at most a budget of bytes; small methods take
small messages; a message may carry at most 1,000 unknown fields; a string field that is not valid
UTF-8 or holds NUL is INVALID_ARGUMENT.
"""
import concurrent.futures
import socket
import struct
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest

import labgallery_testing
from labgallery_testing import rss_kib

UNARY = "/grpc.testing.TestService/UnaryCall"
EMPTY = "/grpc.testing.TestService/EmptyCall"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
GET_GALLERY = "/labgallery.v1.GalleryService/GetGallery"
CREATE_GALLERY = "/labgallery.v1.GalleryService/CreateGallery"
UPLOAD_IMAGE = "/labgallery.v1.ImageService/UploadImage"

MIB = 1024 * 1024
MAX_MESSAGE = 4 * MIB

DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INVALID_ARGUMENT, UNAUTHENTICATED = 4, 8, 3, 16


# MARK: - servers


@pytest.fixture(scope="module")
def interop(tmp_path_factory):
    """Yields (port, pid) of an interop-server: no authentication, no per-method limits."""
    binary = labgallery_testing.find_binary("interop-server")
    port = labgallery_testing.free_port()
    with labgallery_testing.ServerProcess([binary, "--port", port],
                                          log_dir=tmp_path_factory.mktemp("interop-server")) as process:
        process.wait_for_port(port, timeout=20)
        yield port, process.pid
        code = process.stop(timeout=10)
    assert code == 0, f"interop-server exited with {code}; output: {process.log()!r}"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """Yields (port, pid, admin token) of a labgallery-server whose request timeout is 2 s."""
    root = tmp_path_factory.mktemp("gallery")
    binary = labgallery_testing.find_binary("labgallery-server", ("release", "debug"))
    argv = [binary, "--port", "0", "--data-dir", root / "data", "--request-timeout", "2"]
    with labgallery_testing.ServerProcess(argv, log_dir=root) as process:
        port = int(process.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        token = (root / "data" / "admin.token").read_text().strip()
        yield port, process.pid, token
        assert process.stop(timeout=20) == 0, "SIGTERM should drain and exit 0"


# MARK: - a raw HTTP/2 client


def frame(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, contents: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(contents)) + contents


class Peer:
    """A minimal HTTP/2 client over a real socket that honours the server's flow control."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4 * MIB})
        self.conn.initiate_connection()
        self.results = {}
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def headers(self, path, token=None, timeout=None, end=False):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
                ("content-type", "application/grpc"), ("te", "trailers")]
        if token is not None:
            hdrs.append(("authorization", f"Bearer {token}"))
        if timeout is not None:
            hdrs.append(("grpc-timeout", timeout))
        self.conn.send_headers(sid, hdrs, end_stream=end)
        self.results[sid] = {"headers": {}, "trailers": {}, "reset": None, "ended": False, "at": None}
        self.flush()
        return sid

    def send(self, sid, payload: bytes, end=False, deadline=30.0):
        """Sends `payload` on `sid` as the windows allow (reading the server's WINDOW_UPDATEs).
        Returns False if the stream ended (answered or reset) before all of it went out."""
        view = memoryview(payload)
        stop = time.time() + deadline
        while view:
            if self.done(sid):
                return False
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump(0.5)
                if time.time() > stop:
                    raise AssertionError(f"stream {sid}: the server's window stayed closed")
                continue
            n = min(window, len(view))
            try:
                self.conn.send_data(sid, view[:n].tobytes(), end_stream=end and n == len(view))
            except h2.exceptions.StreamClosedError:
                return False
            view = view[n:]
            self.flush()
            self.pump(0)
        if end and not payload:
            self.conn.end_stream(sid)
            self.flush()
        return True

    def pump(self, timeout: float):
        """Reads what the server sent within `timeout` seconds (0: only what is there now)."""
        self.sock.settimeout(timeout if timeout > 0 else 0.0001)
        try:
            chunk = self.sock.recv(1 << 20)
        except (socket.timeout, BlockingIOError):
            return
        finally:
            self.sock.settimeout(10)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        for ev in self.conn.receive_data(chunk):
            r = self.results.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if r is None:
                continue
            if isinstance(ev, h2.events.ResponseReceived):
                r["headers"] = {k.decode(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, h2.events.TrailersReceived):
                r["trailers"] = {k.decode(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, h2.events.StreamEnded):
                r["ended"], r["at"] = True, r["at"] or time.time()
            elif isinstance(ev, h2.events.StreamReset):
                r["reset"], r["at"] = ev.error_code, r["at"] or time.time()
        self.flush()

    def done(self, sid) -> bool:
        r = self.results[sid]
        return r["ended"] or r["reset"] is not None or "grpc-status" in r["headers"]

    def wait(self, sid, timeout: float):
        """Waits until `sid` ends (its status, or a reset); returns its result (status None if not)."""
        stop = time.time() + timeout
        while not self.done(sid) and time.time() < stop:
            self.pump(min(0.2, max(0.001, stop - time.time())))
        r = self.results[sid]
        block = r["trailers"] or r["headers"]
        status = int(block["grpc-status"]) if "grpc-status" in block else None
        return status, block.get("grpc-message", ""), r["reset"]

    def close(self):
        self.sock.close()


def assert_healthy(port, path=EMPTY, token=None):
    peer = Peer(port)
    sid = peer.headers(path, token=token)
    peer.send(sid, frame(b""), end=True)
    status, message, _ = peer.wait(sid, 10)
    peer.close()
    assert status == 0, message


# MARK: - requests that never complete


def test_grpc_timeout_ends_a_request_that_never_completes(interop):
    port, _ = interop
    peer = Peer(port)
    started = time.time()
    quiet = peer.headers(UNARY, timeout="1S")  # HEADERS, and nothing more
    held = peer.headers(UNARY, timeout="1S")  # HEADERS and a message, but no END_STREAM
    peer.send(held, frame(field(3, field(2, b"x" * 1000))))
    for sid in (quiet, held):
        status, message, reset = peer.wait(sid, 3 - (time.time() - started))
        assert status == DEADLINE_EXCEEDED or reset is not None, (status, message, reset)
    assert time.time() - started < 3
    peer.close()
    assert_healthy(port)


def test_a_request_not_complete_within_the_request_timeout_ends(gallery):
    port, _, token = gallery
    peer = Peer(port)
    started = time.time()
    sid = peer.headers(GET_GALLERY, token=token)  # no grpc-timeout: the server's 2 s apply
    peer.send(sid, frame(field(1, b"galleries/nothing")))
    status, message, reset = peer.wait(sid, 10)
    assert status == DEADLINE_EXCEEDED, (status, message, reset)
    assert "not complete" in message
    assert 1.5 < time.time() - started < 10
    peer.close()


def test_headers_without_a_token_are_unauthenticated_at_once(gallery):
    port, _, _ = gallery
    peer = Peer(port)
    started = time.time()
    sid = peer.headers(GET_GALLERY)  # no authorization, no message, no END_STREAM
    status, message, _ = peer.wait(sid, 5)
    assert status == UNAUTHENTICATED, (status, message)
    assert time.time() - started < 1, "answered from the headers, not after the request"
    # The same for a stream that goes on to send a large message: answered before it is held.
    sid = peer.headers(UPLOAD_IMAGE, token="not-a-token")
    status, message, _ = peer.wait(sid, 5)
    assert status == UNAUTHENTICATED, (status, message)
    assert peer.send(sid, frame(b"\x00" * MIB)) is False or peer.done(sid)
    peer.close()


def test_incomplete_4mib_requests_keep_server_memory_bounded(interop):
    """100 streams each send a whole 4 MiB message and never END_STREAM. The calls hold them while
    they wait; past the held-bytes budget (32 MiB) the oldest end with RESOURCE_EXHAUSTED."""
    port, pid = interop
    assert_healthy(port)
    before = rss_kib(pid)
    peak = before
    body = b"\x07" * (MAX_MESSAGE - 16)
    message = frame(field(3, field(2, body)))  # SimpleRequest{payload{body}}: 4 MiB - 5 bytes
    assert len(message) - 5 <= MAX_MESSAGE
    peers = [Peer(port) for _ in range(4)]
    streams = []
    for i in range(100):
        peer = peers[i % len(peers)]
        sid = peer.headers(UNARY)
        peer.send(sid, message)
        streams.append((peer, sid))
        peak = max(peak, rss_kib(pid))
    # The budget holds 8 whole messages: wait (at most 20 s) until the server ended all but those.
    stop = time.time() + 20
    while sum(p.done(s) for p, s in streams) < 100 - 8 and time.time() < stop:
        for peer in peers:
            peer.pump(0.05)
        peak = max(peak, rss_kib(pid))
    evicted = 0
    for peer, sid in streams:
        if peer.done(sid):
            status, message_text, reset = peer.wait(sid, 0)
            assert status == RESOURCE_EXHAUSTED or reset is not None, (status, message_text, reset)
            evicted += 1
    for peer in peers:
        peer.close()
    grown = (peak - before) // 1024
    print(f"RSS before {before // 1024} MiB, peak {peak // 1024} MiB (+{grown} MiB); {evicted} of 100 evicted")
    assert evicted >= 100 - 8, f"only {evicted} of 100 incomplete requests were ended past the budget"
    assert peak - before < 128 * 1024, f"RSS grew by {grown} MiB holding incomplete requests"
    assert_healthy(port)


def push_what_fits(peer, sid, view):
    """Sends as much of `view` on `sid` as the server's windows allow now; returns what is left."""
    while view:
        window = min(peer.conn.local_flow_control_window(sid), peer.conn.max_outbound_frame_size)
        if window <= 0:
            break
        n = min(window, len(view))
        peer.conn.send_data(sid, view[:n].tobytes())
        view = view[n:]
        peer.flush()
    return view


def test_messages_that_never_complete_keep_server_memory_bounded(interop):
    """100 streams on 2 connections each send all but the last byte of a 4 MiB message, so no
    message ever completes and no call ever starts. The shim re-opens windows early only within
    its budget of partial messages (64 MiB, 8 MiB per connection): past it the senders wait on
    closed windows. Without that budget the server would hold 400 MiB."""
    port, pid = interop
    assert_healthy(port)
    before = rss_kib(pid)
    peak = before
    body = b"\x07" * (MAX_MESSAGE - 16)
    message = frame(field(3, field(2, body)))[:-1]  # the last byte never comes
    peers = [Peer(port) for _ in range(2)]
    pending = []
    for i in range(100):
        peer = peers[i % len(peers)]
        pending.append([peer, peer.headers(UNARY), memoryview(message)])
    sent_before, idle_since = -1, time.time()
    while time.time() - idle_since < 2:  # until nothing more goes out for 2 s
        for entry in pending:
            entry[2] = push_what_fits(entry[0], entry[1], entry[2])
        for peer in peers:
            peer.pump(0.02)
        sent = sum(len(message) - len(e[2]) for e in pending)
        if sent != sent_before:
            sent_before, idle_since = sent, time.time()
        peak = max(peak, rss_kib(pid))
    grown = (peak - before) // 1024
    print(f"sent {sent_before // MIB} MiB of 400 MiB; RSS before {before // 1024} MiB, peak {peak // 1024} MiB (+{grown} MiB)")
    assert sent_before < 200 * MIB, f"the server took {sent_before // MIB} MiB of messages that never complete"
    assert peak - before < 128 * 1024, f"RSS grew by {grown} MiB holding partial messages"
    assert_healthy(port)
    for peer in peers:
        peer.close()


def test_a_client_that_never_reads_cannot_pin_responses_without_bound(interop):
    """A client whose stream windows are 0 asks for 400 responses of 64 KiB (25 MiB) on one
    connection and reads none. Past 16 MiB of unread responses on the connection, further calls
    are answered at once with RESOURCE_EXHAUSTED (headers are not flow-controlled), and the
    server's memory stays bounded."""
    port, pid = interop
    assert_healthy(port)
    before = rss_kib(pid)
    peer = Peer(port)
    peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    peer.flush()
    peer.pump(0.5)  # the server's SETTINGS ACK
    request = frame(varint(2 << 3) + varint(64 * 1024))  # SimpleRequest{response_size: 65536}
    sids = []
    for _ in range(400):
        sid = peer.headers(UNARY)
        peer.send(sid, request, end=True)
        sids.append(sid)
        peer.pump(0)
    def answered(sid):  # response headers came: Trailers-Only (refused) or 200 (data held back)
        return bool(peer.results[sid]["headers"])

    def refused(sids):
        return [sid for sid in sids if peer.results[sid]["headers"].get("grpc-status") == str(RESOURCE_EXHAUSTED)]

    stop = time.time() + 60
    while time.time() < stop and not all(answered(sid) for sid in sids):
        peer.pump(0.2)
    assert all(answered(sid) for sid in sids), "every call gets its response headers"
    first = refused(sids)
    # Every earlier response is queued now: a later call is refused whatever the timing.
    later = []
    for _ in range(20):
        sid = peer.headers(UNARY)
        peer.send(sid, request, end=True)
        later.append(sid)
    stop = time.time() + 30
    while time.time() < stop and not all(answered(sid) for sid in later):
        peer.pump(0.2)
    grown = (rss_kib(pid) - before) // 1024
    print(f"{len(first)} of 400 calls refused, then {len(refused(later))} of 20; RSS +{grown} MiB")
    assert len(first) >= 100, f"only {len(first)} of 400 calls were refused"
    assert len(refused(later)) == 20, "calls after the limit are all refused"
    assert "has not read" in peer.results[later[0]]["headers"].get("grpc-message", "")
    assert grown < 64, f"RSS grew by {grown} MiB"
    assert_healthy(port)
    peer.close()


# MARK: - messages that amplify in protobuf-c


def parallel_amplifying_health_checks(port, token=None):
    """8 Health/Check calls in parallel, each a 4 MiB message of `78 00` (field 15, varint 0):
    2M unknown fields, ~64 bytes of heap each in protobuf-c. Returns [(status, message, seconds)]."""
    body = b"\x78\x00" * (MAX_MESSAGE // 2)
    barrier = threading.Barrier(8)

    def one(_):
        peer = Peer(port)
        try:
            sid = peer.headers(HEALTH_CHECK, token=token)
            barrier.wait(timeout=30)
            peer.send(sid, frame(body), end=True)
            sent = time.time()
            status, message, reset = peer.wait(sid, 10)
            answered = peer.results[sid]["at"] or time.time()
            return status, message, reset, max(0.0, answered - sent)
        finally:
            peer.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(8)))


@pytest.mark.parametrize("server_name", ["gallery", "interop"])
def test_health_checks_full_of_unknown_fields_are_refused_promptly(server_name, request):
    server = request.getfixturevalue(server_name)
    port, pid = server[0], server[1]
    before = rss_kib(pid)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        results = parallel_amplifying_health_checks(port)
    finally:
        stop.set()
        sampler.join()
    for status, message, reset, seconds in results:
        # gallery: the 16 KiB limit of small methods; interop: the cap on unknown fields.
        assert status in (RESOURCE_EXHAUSTED, 0), (status, message, reset)
        assert seconds < 1, f"answered {seconds:.2f} s after the request ended"
        if server_name == "gallery":
            assert "limit of 16384 bytes" in message, message
        else:
            assert "unknown fields" in message, message
    grown = (peak[0] - before) // 1024
    print(f"{server_name}: RSS peak +{grown} MiB")
    assert peak[0] < 256 * 1024 + before, f"RSS peak grew by {grown} MiB"
    assert_healthy(port, HEALTH_CHECK)


# MARK: - strings that are not strings


def test_create_gallery_with_nul_in_its_id_is_invalid_argument(gallery):
    port, _, token = gallery
    peer = Peer(port)
    request = field(1, b"a\x00b") + field(2, field(3, b"westus2"))  # gallery_id, gallery.region
    sid = peer.headers(CREATE_GALLERY, token=token)
    peer.send(sid, frame(request), end=True)
    status, message, _ = peer.wait(sid, 10)
    assert status == INVALID_ARGUMENT, (status, message)
    assert "gallery_id" in message, message
    # Invalid UTF-8 deeper in the message names the path.
    request = field(1, b"ok") + field(2, field(2, b"\xff"))  # gallery.display_name
    sid = peer.headers(CREATE_GALLERY, token=token)
    peer.send(sid, frame(request), end=True)
    status, message, _ = peer.wait(sid, 10)
    assert status == INVALID_ARGUMENT, (status, message)
    assert "gallery.display_name" in message, message
    peer.close()
