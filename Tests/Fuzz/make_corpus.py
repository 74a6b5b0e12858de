#!/usr/bin/env python3
"""Regenerates the seed corpus of the fuzz targets (Tests/Fuzz/corpus/<target>/) from real traffic.

    python3 Tests/Fuzz/make_corpus.py

Needs the release builds of interop-server and labgallery-server (as the pytest suites do:
`swift build -c release --product interop-server`, `... --product labgallery-server`) and
Python grpcio, grpcio-tools, protobuf, h2 (`make pydeps`).

Seeds, by where they come from:
  capture_*   A recording proxy on loopback sits between a grpcio client and our server and
              records both byte streams of each connection: every interop test case
              (Tests/Interop/grpcio_interop_cases.py, one connection each) against
              interop-server, and the gallery workflow of Tests/GalleryPython against
              labgallery-server. fuzz_h2_server gets each client-to-server stream (cut at a
              frame boundary past 64 KiB, the targets' -max_len); the decoder targets get
              every gRPC message in them, both ways, as the message type of its method.
              (The bearer token in the gallery capture is that of a throwaway server with a
              temporary data directory, gone when the script ends.)
  h2_*        Requests written with the Python h2 package for what grpcio does not send:
              CONTINUATION, padding, PRIORITY, PING, RST_STREAM, WINDOW_UPDATE, SETTINGS
              changes, GOAWAY, request trailers, a message split over frames, a compressed
              flag, a length over the limit, a truncated message.
  pb_*        Every message of the decoder table from the Python protobuf runtime: empty, and
              with every field set (recursively, repeated and map fields twice).

Files under Tests/Fuzz/corpus/<target>/ named regression_* are inputs that once crashed
a target (kept so that the bug stays fixed); this script leaves them alone and replaces
every other file.
"""

from __future__ import annotations

import hashlib
import importlib
import pathlib
import socket
import struct
import sys
import tempfile
import threading

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "Tests" / "pyhelpers"))
sys.path.insert(0, str(REPO / "Tests" / "Interop"))
sys.path.insert(0, str(REPO / "Tests" / "GalleryPython"))
sys.path.insert(0, str(HERE))

import grpc  # noqa: E402
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.settings  # noqa: E402
import hpack  # noqa: E402
import hyperframe.frame  # noqa: E402

import labgallery_testing  # noqa: E402
import messages  # noqa: E402

CORPUS = HERE / "corpus"
MAX_LEN = 64 * 1024  # the targets' -max_len
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PER_TYPE = 6  # captured messages kept per message type (the smallest distinct ones)


# MARK: - recording proxy


class RecordingProxy:
    """Listens on 127.0.0.1 and forwards each connection to 127.0.0.1:upstream, recording
    both byte streams; `connections` gets (client_to_server, server_to_client) when one closes."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.connections: list[tuple[bytes, bytes]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self._threads.append(t)
            t.start()

    def _serve(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.upstream))
        up, down = bytearray(), bytearray()

        def pump(src: socket.socket, dst: socket.socket, record: bytearray) -> None:
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    record += data
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        back = threading.Thread(target=pump, args=(server, client, down), daemon=True)
        back.start()
        pump(client, server, up)
        back.join(timeout=30)
        client.close()
        server.close()
        with self._lock:
            self.connections.append((bytes(up), bytes(down)))

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=30)


# MARK: - reading captures


def frames(data: bytes):
    """(type, flags, stream id, payload) of each whole frame."""
    i = 0
    while i + 9 <= len(data):
        length = int.from_bytes(data[i:i + 3], "big")
        if i + 9 + length > len(data):
            return
        yield data[i + 3], data[i + 4], int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF, data[i + 9:i + 9 + length]
        i += 9 + length


def frame_cut(data: bytes, limit: int) -> bytes:
    """The longest prefix of `data` (preface, then whole frames) of at most `limit` bytes."""
    end = len(PREFACE)
    for _type, _flags, _sid, payload in frames(data[len(PREFACE):]):
        if end + 9 + len(payload) > limit:
            break
        end += 9 + len(payload)
    return data[:end]


def header_payload(ftype: int, flags: int, payload: bytes) -> bytes:
    """The header block fragment of a HEADERS or CONTINUATION frame."""
    if ftype == 0x9:
        return payload
    pad = 0
    if flags & 0x8:
        pad = payload[0]
        payload = payload[1:]
    if flags & 0x20:
        payload = payload[5:]
    return payload[:len(payload) - pad] if pad else payload


def data_payload(flags: int, payload: bytes) -> bytes:
    if flags & 0x8:
        pad = payload[0]
        return payload[1:len(payload) - pad]
    return payload


def streams(data: bytes, skip: int) -> tuple[dict[int, str], dict[int, bytes]]:
    """:path (request streams) and DATA bytes of each stream in one direction of a connection."""
    decoder = hpack.Decoder()
    decoder.max_allowed_table_size = 1 << 20
    paths: dict[int, str] = {}
    body: dict[int, bytearray] = {}
    block, block_sid = b"", 0
    for ftype, flags, sid, payload in frames(data[skip:]):
        if ftype in (0x1, 0x9):
            block += header_payload(ftype, flags, payload)
            block_sid = sid
            if flags & 0x4:  # END_HEADERS
                for name, value in decoder.decode(block, raw=True):
                    if name == b":path":
                        paths[block_sid] = value.decode(errors="replace")
                block = b""
        elif ftype == 0x0:
            body.setdefault(sid, bytearray()).extend(data_payload(flags, payload))
    return paths, {sid: bytes(b) for sid, b in body.items()}


def grpc_messages(body: bytes):
    """(compressed, message) of each whole gRPC message."""
    i = 0
    while i + 5 <= len(body):
        flag, length = body[i], struct.unpack(">I", body[i + 1:i + 5])[0]
        if i + 5 + length > len(body):
            return
        yield flag & 1, body[i + 5:i + 5 + length]
        i += 5 + length


def method_types() -> dict[str, tuple[str, str]]:
    """'/pkg.Service/Method' -> (request full name, response full name), from Protos/."""
    import re
    found = {}
    for proto in sorted(messages.PROTOS.rglob("*.proto")):
        text = messages._strip_comments(proto.read_text())
        package = re.search(r"^\s*package\s+([\w.]+)\s*;", text, flags=re.M)
        prefix = package.group(1) + "." if package else ""
        for service, body in re.findall(r"\bservice\s+(\w+)\s*\{(.*?)\n\}", text, flags=re.S):
            for method, req, resp in re.findall(
                    r"\brpc\s+(\w+)\s*\(\s*(?:stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(?:stream\s+)?([\w.]+)\s*\)", body):
                full = lambda n: n if "." in n else prefix + n  # noqa: E731
                found[f"/{prefix}{service}/{method}"] = (full(req), full(resp))
    return found


# MARK: - capturing


def capture_interop(out: dict[str, list[tuple[bytes, bytes]]]) -> None:
    import grpcio_interop_cases
    import interop_stubs
    binary = labgallery_testing.find_binary("interop-server")
    port = labgallery_testing.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        stubs = interop_stubs.load(pathlib.Path(tmp) / "stubs")
        with labgallery_testing.ServerProcess([binary, "--port", port], log_dir=pathlib.Path(tmp) / "log") as server:
            server.wait_for_line(f"listening on port {port}", timeout=30)
            for case in grpcio_interop_cases.CASE_NAMES:
                proxy = RecordingProxy(port)
                channel = grpc.insecure_channel(f"127.0.0.1:{proxy.port}")
                try:
                    grpc.channel_ready_future(channel).result(timeout=10)
                    grpcio_interop_cases.run(case, channel, stubs)
                except Exception as error:  # noqa: BLE001  (a failing case still made traffic)
                    print(f"  interop {case}: {error!r} (kept the capture)")
                finally:
                    channel.close()
                proxy.close()
                out[f"interop_{case}"] = proxy.connections
            server.stop(timeout=20)


def capture_gallery(out: dict[str, list[tuple[bytes, bytes]]]) -> None:
    import test_workflow
    from grpc_tools import protoc
    import grpc_tools
    binary = labgallery_testing.find_binary("labgallery-server", ("release", "debug"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        stubs = tmp / "stubs"
        stubs.mkdir()
        sources = sorted(str(p.relative_to(messages.PROTOS)) for p in (messages.PROTOS / "labgallery" / "v1").glob("*.proto"))
        bundled = pathlib.Path(grpc_tools.__file__).parent / "_proto"
        rc = protoc.main(["grpc_tools.protoc", f"-I{messages.PROTOS}", f"-I{bundled}",
                          f"--python_out={stubs}", f"--grpc_python_out={stubs}", *sources])
        if rc != 0:
            raise SystemExit("protoc failed on the gallery protos")
        sys.path.insert(0, str(stubs))
        api = {}
        for source in sources:
            stem = pathlib.Path(source).stem
            api[stem] = importlib.import_module(f"labgallery.v1.{stem}_pb2")
            api[stem + "_grpc"] = importlib.import_module(f"labgallery.v1.{stem}_pb2_grpc")
        data_dir = tmp / "data"
        argv = [binary, "--port", "0", "--data-dir", data_dir]
        with labgallery_testing.ServerProcess(argv, log_dir=tmp / "log") as server:
            port = int(server.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
            token = (data_dir / "admin.token").read_text().strip()
            proxy = RecordingProxy(port)
            test_workflow.test_main_workflow(api, (proxy.port, token))
            proxy.close()
            out["gallery_workflow"] = proxy.connections
            server.stop(timeout=20)
        sys.path.remove(str(stubs))


# MARK: - h2 seeds


def h2_seeds() -> dict[str, bytes]:
    """Requests the grpcio captures lack, written with the h2 package."""
    def conn():
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        c.initiate_connection()
        return c

    def req(path=b"/grpc.testing.TestService/UnaryCall", extra=()):
        return [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path), (b":authority", b"127.0.0.1"),
                (b"content-type", b"application/grpc"), (b"te", b"trailers"), *extra]

    def msg(payload: bytes, flag: int = 0) -> bytes:
        return bytes([flag]) + struct.pack(">I", len(payload)) + payload

    seeds = {}
    # CONTINUATION: a header block larger than one frame.
    c = conn()
    c.send_headers(1, req(extra=[(b"x-big-%d" % i, b"v" * 900) for i in range(20)]))
    c.send_data(1, msg(b"\x0a\x03abc"), end_stream=True)
    seeds["h2_continuation"] = c.data_to_send()
    # Padding on HEADERS is not offered by h2; on DATA it is.
    c = conn()
    c.send_headers(1, req())
    c.send_data(1, msg(b"\x12\x02hi"), pad_length=17, end_stream=True)
    seeds["h2_padded_data"] = c.data_to_send()
    # PRIORITY, PING, WINDOW_UPDATE, SETTINGS changes, then a request on a later stream.
    c = conn()
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
                       h2.settings.SettingCodes.MAX_FRAME_SIZE: 1 << 15,
                       h2.settings.SettingCodes.HEADER_TABLE_SIZE: 256})
    c.ping(b"12345678")
    c.increment_flow_control_window(1 << 20)
    c.send_headers(3, req(b"/grpc.testing.TestService/FullDuplexCall"))
    c.prioritize(3, weight=200, depends_on=0, exclusive=False)
    for i in range(4):
        c.send_data(3, msg(b"\x08\x01" * (i + 1)))
    c.increment_flow_control_window(4096, stream_id=3)
    c.send_data(3, b"", end_stream=True)
    seeds["h2_control_frames"] = c.data_to_send()
    # RST_STREAM of a call in progress, then GOAWAY.
    c = conn()
    c.send_headers(1, req(b"/grpc.testing.TestService/StreamingInputCall"))
    c.send_data(1, msg(b"\x0a\x01x"))
    c.reset_stream(1, error_code=8)
    c.send_headers(3, req(b"/grpc.testing.TestService/EmptyCall"), end_stream=True)
    c.close_connection(error_code=0, last_stream_id=0)
    seeds["h2_reset_goaway"] = c.data_to_send()
    # Request trailers, and a message split over DATA frames (with an empty message after).
    c = conn()
    c.send_headers(1, req(b"/grpc.testing.TestService/StreamingInputCall"))
    whole = msg(b"\x0a\x40" + bytes(range(64)))
    for k in range(0, len(whole), 7):
        c.send_data(1, whole[k:k + 7])
    c.send_data(1, msg(b""))
    c.send_headers(1, [(b"x-trailer", b"1")], end_stream=True)
    seeds["h2_split_message_trailers"] = c.data_to_send()
    # Compressed flag; a declared length over the limit; a message cut short by END_STREAM.
    c = conn()
    c.send_headers(1, req(extra=[(b"grpc-encoding", b"gzip")]))
    c.send_data(1, msg(b"\x1f\x8b\x08\x00", flag=1), end_stream=True)
    c.send_headers(3, req())
    c.send_data(3, b"\x00\x7f\xff\xff\xff", end_stream=True)
    c.send_headers(5, req())
    c.send_data(5, b"\x00\x00\x00\x01\x00abc", end_stream=True)
    seeds["h2_bad_messages"] = c.data_to_send()
    # Many streams opened and cancelled (the rapid-reset pattern), kept small.
    c = conn()
    for sid in range(1, 80, 2):
        c.send_headers(sid, req(b"/grpc.testing.TestService/EmptyCall"))
        c.reset_stream(sid, error_code=8)
    seeds["h2_rapid_reset"] = c.data_to_send()
    return seeds


# MARK: - protobuf seeds


def pb_classes(table: list[dict[str, str]]):
    """full name -> Python message class, built from a descriptor set of Protos/."""
    import grpc_tools
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from grpc_tools import protoc
    bundled = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    sources = sorted(str(p.relative_to(messages.PROTOS)) for p in messages.PROTOS.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "set.pb"
        rc = protoc.main(["grpc_tools.protoc", f"-I{messages.PROTOS}", f"-I{bundled}", "--include_imports",
                          f"--descriptor_set_out={out}", *sources])
        if rc != 0:
            raise SystemExit("protoc failed to write the descriptor set")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    return {row["name"]: message_factory.GetMessageClass(pool.FindMessageTypeByName(row["name"])) for row in table}


def fill(message, depth: int = 0) -> None:
    """Sets every field of `message` (recursively, to depth 3): repeated and map fields twice."""
    from google.protobuf.descriptor import FieldDescriptor as F
    samples = {
        F.TYPE_INT32: [150, -2], F.TYPE_INT64: [1 << 40, -3], F.TYPE_UINT32: [300, 7], F.TYPE_UINT64: [1 << 63, 1],
        F.TYPE_SINT32: [-150, 2], F.TYPE_SINT64: [-(1 << 40), 5], F.TYPE_FIXED32: [0xDEADBEEF, 1],
        F.TYPE_FIXED64: [1 << 60, 2], F.TYPE_SFIXED32: [-7, 9], F.TYPE_SFIXED64: [-(1 << 50), 3],
        F.TYPE_FLOAT: [1.5, -0.25], F.TYPE_DOUBLE: [3.25, -1e300], F.TYPE_BOOL: [True, True],
        F.TYPE_STRING: ["h\u00e9llo \u263a", "b"], F.TYPE_BYTES: [b"\x00\x01\xff", b"z"],
    }
    seen_oneofs = set()
    for field in message.DESCRIPTOR.fields:
        if field.containing_oneof is not None:
            if field.containing_oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(field.containing_oneof.name)
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:
            repeated = field.label == F.LABEL_REPEATED
        if is_map:
            key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            container = getattr(message, field.name)
            for k in range(2):
                key = samples[key_field.type][k]
                if value_field.type == F.TYPE_MESSAGE:
                    if depth < 3:
                        fill(container[key], depth + 1)
                else:
                    container[key] = _value(value_field, samples, k)
        elif field.type == F.TYPE_MESSAGE:
            if depth >= 3:
                continue
            if repeated:
                for _ in range(2):
                    fill(getattr(message, field.name).add(), depth + 1)
            else:
                sub = getattr(message, field.name)
                sub.SetInParent()
                fill(sub, depth + 1)
        elif repeated:
            getattr(message, field.name).extend(_value(field, samples, k) for k in range(2))
        else:
            setattr(message, field.name, _value(field, samples, 0))


def _value(field, samples, k):
    from google.protobuf.descriptor import FieldDescriptor as F
    if field.type == F.TYPE_ENUM:
        values = field.enum_type.values
        return values[min(k + 1, len(values) - 1)].number
    return samples[field.type][k]


# MARK: - writing


def write(target: str, seeds: dict[str, bytes]) -> None:
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        if not old.name.startswith("regression_"):
            old.unlink()
    seen = set()
    for name, data in sorted(seeds.items()):
        digest = hashlib.sha1(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        (directory / f"{name}_{digest[:8]}").write_bytes(data)
    print(f"{target}: {len(seen)} seeds")


def main() -> int:
    table = messages.table()
    index = {row["name"]: i for i, row in enumerate(table)}
    captures: dict[str, list[tuple[bytes, bytes]]] = {}
    print("capturing the interop cases against interop-server ...")
    capture_interop(captures)
    print("capturing the gallery workflow against labgallery-server ...")
    capture_gallery(captures)

    server_seeds: dict[str, bytes] = {}
    decoded: dict[str, list[bytes]] = {}
    methods = method_types()
    for name, connections in sorted(captures.items()):
        for n, (up, down) in enumerate(connections):
            if not up.startswith(PREFACE):
                continue
            seed = up if len(up) <= MAX_LEN else frame_cut(up, MAX_LEN)
            server_seeds[f"capture_{name}_{n}"] = seed
            paths, up_bodies = streams(up, len(PREFACE))
            _, down_bodies = streams(down, 0)
            for sid, path in paths.items():
                if path not in methods:
                    continue
                request, response = methods[path]
                for full, bodies in ((request, up_bodies), (response, down_bodies)):
                    for compressed, m in grpc_messages(bodies.get(sid, b"")):
                        if not compressed and len(m) < MAX_LEN:
                            decoded.setdefault(full, []).append(m)
    for name, data in h2_seeds().items():
        server_seeds[name] = data

    decoder_seeds: dict[str, bytes] = {}
    for full, found in decoded.items():
        for k, m in enumerate(sorted(set(found), key=lambda b: (len(b), b))[:PER_TYPE]):
            decoder_seeds[f"capture_{full}_{k}"] = bytes([index[full]]) + m
    classes = pb_classes(table)
    for full, cls in classes.items():
        decoder_seeds[f"pb_{full}_empty"] = bytes([index[full]])
        message = cls()
        fill(message)
        decoder_seeds[f"pb_{full}_filled"] = bytes([index[full]]) + message.SerializeToString()

    write("fuzz_h2_server", server_seeds)
    write("fuzz_protobuf_c", decoder_seeds)
    write("fuzz_swift_decoders", decoder_seeds)
    captured = sorted(decoded)
    missing = [row["name"] for row in table if row["name"] not in decoded]
    print(f"messages seen in the captures: {len(captured)} of {len(table)}; only from protobuf: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
