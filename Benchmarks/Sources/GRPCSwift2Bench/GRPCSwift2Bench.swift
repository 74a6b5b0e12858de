import ArgumentParser
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import UnaryLoad

/// grpc-swift-2 (with its NIO HTTP/2 transport) as the Swift user's alternative in run.sh:
/// a plaintext server answering `grpc.testing.TestService/UnaryCall` and `StreamingOutputCall`,
/// and a unary client load against any such server. Messages go through GRPCCore's raw API with a hand-written
/// codec of the few fields used (no protoc plugin), byte for byte what generated code sends.
@main
struct GRPCSwift2Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grpc-swift2-bench",
        abstract: "grpc-swift-2's server and client, for the side-by-side benchmarks.",
        subcommands: [Serve.self, Unary.self])
}

/// `grpc.testing.TestService/UnaryCall`.
let unaryCall = MethodDescriptor(fullyQualifiedService: "grpc.testing.TestService", method: "UnaryCall")

/// `grpc.testing.TestService/StreamingOutputCall`.
let streamingOutputCall = MethodDescriptor(
    fullyQualifiedService: "grpc.testing.TestService", method: "StreamingOutputCall")

/// Protobuf wire format of the interop messages, only the fields the benchmark uses:
/// `SimpleRequest { int32 response_size = 2; }`,
/// `StreamingOutputCallRequest { repeated ResponseParameters response_parameters = 2; }` with
/// `ResponseParameters { int32 size = 1; }`, and `SimpleResponse` and
/// `StreamingOutputCallResponse`, both `{ Payload payload = 1; }` with `Payload { bytes body = 2; }`.
enum Wire {
    /// Appends a base-128 varint.
    static func putVarint(_ value: UInt64, into out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    /// Calls `field(number, varint, bytes)` for each field of `buffer`: `varint` for wire
    /// type 0, `bytes` (a range of `buffer`) for wire type 2; other wire types are skipped.
    static func fields(
        _ buffer: UnsafeRawBufferPointer, _ field: (Int, UInt64, Range<Int>) -> Void
    ) throws {
        var i = 0
        func varint() throws -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while i < buffer.count {
                let b = buffer[i]
                i += 1
                result |= UInt64(b & 0x7f) << shift
                if b < 0x80 { return result }
                shift += 7
                if shift >= 64 { break }
            }
            throw RPCError(code: .internalError, message: "bad varint")
        }
        while i < buffer.count {
            let key = try varint()
            switch key & 7 {
            case 0: field(Int(key >> 3), try varint(), 0..<0)
            case 1: i += 8
            case 2:
                let n = Int(try varint())
                guard n <= buffer.count - i else { throw RPCError(code: .internalError, message: "truncated") }
                field(Int(key >> 3), 0, i..<(i + n))
                i += n
            case 5: i += 4
            default: throw RPCError(code: .internalError, message: "bad wire type")
            }
        }
    }
}

/// `SimpleRequest` as its `response_size` alone.
struct RequestCodec: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ responseSize: Int) throws -> Bytes {
        var out: [UInt8] = [0x10]
        Wire.putVarint(UInt64(responseSize), into: &out)
        return Bytes(out)
    }

    func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> Int {
        try bytes.withUnsafeBytes { buffer in
            var size = 0
            try Wire.fields(buffer) { number, value, _ in if number == 2 { size = Int(value) } }
            return size
        }
    }
}

/// `StreamingOutputCallRequest` as the `size` of each of its response parameters, in order
/// (`interval_us` and the other fields are not read: the benchmark client sends none).
struct StreamingRequestCodec: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> [Int] {
        try bytes.withUnsafeBytes { buffer in
            var sizes: [Int] = []
            var bad = false
            try Wire.fields(buffer) { number, _, range in
                guard number == 2 else { return }
                var size = 0
                do {
                    try Wire.fields(UnsafeRawBufferPointer(rebasing: buffer[range])) { inner, value, _ in
                        if inner == 1 { size = Int(value) }
                    }
                } catch { bad = true }
                sizes.append(size)
            }
            guard !bad else { throw RPCError(code: .internalError, message: "bad ResponseParameters") }
            return sizes
        }
    }
}

/// `SimpleResponse` (and `StreamingOutputCallResponse`, the same fields) as its payload body's length: the server sends that many zero bytes,
/// the client reads the body's length back (and checks it).
struct ResponseCodec: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ bodySize: Int) throws -> Bytes {
        var payload: [UInt8] = [0x12]
        Wire.putVarint(UInt64(bodySize), into: &payload)
        payload += repeatElement(0, count: bodySize)
        var out: [UInt8] = [0x0a]
        Wire.putVarint(UInt64(payload.count), into: &out)
        return Bytes(out + payload)
    }

    func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> Int {
        try bytes.withUnsafeBytes { buffer in
            var size = 0
            try Wire.fields(buffer) { number, _, range in
                guard number == 1 else { return }
                try? Wire.fields(UnsafeRawBufferPointer(rebasing: buffer[range])) { inner, _, body in
                    if inner == 2 { size = body.count }
                }
            }
            return size
        }
    }
}

/// UnaryCall answers `response_size` zero bytes; StreamingOutputCall writes one response of
/// `size` zero bytes per response parameter, one write each (as the interop server does).
struct TestService: RegistrableRPCService {
    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: unaryCall, deserializer: RequestCodec(), serializer: ResponseCodec()
        ) { request, _ in
            let single = try await ServerRequest(stream: request)
            return StreamingServerResponse(single: ServerResponse(message: single.message))
        }
        router.registerHandler(
            forMethod: streamingOutputCall, deserializer: StreamingRequestCodec(), serializer: ResponseCodec()
        ) { request, _ in
            let sizes = try await ServerRequest(stream: request).message
            return StreamingServerResponse { writer in
                for size in sizes { try await writer.write(size) }
                return [:]
            }
        }
    }
}

extension GRPCSwift2Bench {
    /// A plaintext HTTP/2 server on `--port` until killed.
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve UnaryCall and StreamingOutputCall (plaintext).")
        @Option(help: "Port to listen on.") var port: Int

        func run() async throws {
            let transport = HTTP2ServerTransport.Posix(
                address: .ipv4(host: "127.0.0.1", port: port), transportSecurity: .plaintext)
            try await GRPCServer(transport: transport, services: [TestService()]).serve()
        }
    }

    /// Unary calls/s and latency from grpc-swift-2's client: `--connections` clients (one
    /// HTTP/2 connection each) × `--concurrency` concurrent calls.
    struct Unary: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Unary client load (calls/s, p50, p99).")
        @Option(help: "Server host.") var host = "127.0.0.1"
        @Option(help: "Server port.") var port: Int
        @Option(help: "Connections (one client each).") var connections = 8
        @Option(help: "Concurrent calls per connection.") var concurrency = 32
        @Option(help: "Warm-up seconds (not measured).") var warmup = 1.0
        @Option(help: "Measured seconds.") var duration = 10.0
        @Option(help: "Response payload bytes.") var size = 16

        func run() async throws {
            let clients = try (0..<connections).map { _ in
                GRPCClient(
                    transport: try HTTP2ClientTransport.Posix(
                        target: .ipv4(host: host, port: port), transportSecurity: .plaintext))
            }
            let size = self.size
            let result = try await withThrowingTaskGroup(of: UnaryLoad.Result?.self) { group in
                for client in clients {
                    group.addTask {
                        try await client.runConnections()
                        return nil
                    }
                }
                let result = try await UnaryLoad.run(
                    connections: connections, concurrency: concurrency, warmup: warmup, duration: duration
                ) { connection in
                    let received = try await clients[connection].unary(
                        request: ClientRequest(message: size), descriptor: unaryCall,
                        serializer: RequestCodec(), deserializer: ResponseCodec(), options: .defaults
                    ) { try $0.message }
                    guard received == size else {
                        throw RPCError(code: .internalError, message: "body of \(received) bytes, not \(size)")
                    }
                }
                for client in clients { client.beginGracefulShutdown() }
                try await group.waitForAll()
                return result
            }
            print(result.line)
        }
    }
}
