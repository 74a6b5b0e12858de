/// A message that can travel in an RPC: a Sendable value with a binary encoding.
///
/// Generated protobuf messages conform through protobuf-c (see `H2RPCProtobuf`); the core
/// only ever sees bytes.
public protocol RPCMessage: Sendable {
    /// The default (empty) message.
    init()
    /// Decodes a message from its wire form; throws if the bytes are not a valid encoding.
    init(serializedBytes: UnsafeRawBufferPointer) throws
    /// Encodes the message to its wire form.
    func serializedBytes() throws -> [UInt8]
    /// Encodes the message into memory the caller provides, so a transport can encode straight
    /// into its send buffer: calls `allocate` once with the encoded size and writes exactly that
    /// many bytes into the buffer it returns. The default encodes with `serializedBytes()` and
    /// copies.
    func serialize(into allocate: (Int) throws -> UnsafeMutableRawBufferPointer) throws
}

extension RPCMessage {
    public func serialize(into allocate: (Int) throws -> UnsafeMutableRawBufferPointer) throws {
        let bytes = try serializedBytes()
        let target = try allocate(bytes.count)
        bytes.withUnsafeBytes { target.copyMemory(from: $0) }
    }
}

/// The bytes of one received message, read-only: an array, or memory a transport handed over
/// without copying it (released when the last copy of this value goes away).
struct MessageBytes: Sendable {
    private enum Storage: Sendable {
        case array([UInt8])
        case buffer(any TransportMessageBuffer)
    }
    private let storage: Storage

    init(_ bytes: [UInt8]) { storage = .array(bytes) }
    init(_ buffer: any TransportMessageBuffer) { storage = .buffer(buffer) }

    var count: Int {
        switch storage {
        case .array(let a): return a.count
        case .buffer(let b): return b.count
        }
    }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .array(let a): return try a.withUnsafeBytes(body)
        case .buffer(let b): return try withExtendedLifetime(b) { try body(b.bytes) }
        }
    }
}

/// Transport memory holding one received message; the transport frees it in `deinit`.
protocol TransportMessageBuffer: AnyObject, Sendable {
    var count: Int { get }
    /// The message; valid while this object is alive.
    var bytes: UnsafeRawBufferPointer { get }
}

/// One request message encoded for a transport (see `ClientStreamOutbound.encode`): an
/// array, or transport memory the message was encoded into.
public struct OutboundMessage: Sendable {
    enum Storage: Sendable {
        case bytes([UInt8])
        case buffer(any OutboundMessageBuffer)
    }
    let storage: Storage

    /// A message encoded into an array.
    public init(bytes: [UInt8]) { storage = .bytes(bytes) }
    /// A message encoded into transport memory.
    public init(buffer: any OutboundMessageBuffer) { storage = .buffer(buffer) }

    /// The encoded size in bytes.
    public var count: Int {
        switch storage {
        case .bytes(let b): return b.count
        case .buffer(let b): return b.count
        }
    }

    /// The encoded bytes as an array (a copy if they are in transport memory).
    public var bytes: [UInt8] {
        switch storage {
        case .bytes(let b): return b
        case .buffer(let b): return b.copyBytes()
        }
    }

    /// The transport memory, if the message was encoded into some.
    public var buffer: (any OutboundMessageBuffer)? {
        if case .buffer(let b) = storage { return b }
        return nil
    }
}

/// Transport memory an outbound message was encoded into. The transport frees it when the
/// message is dropped without being sent.
public protocol OutboundMessageBuffer: AnyObject, Sendable {
    /// The encoded size in bytes.
    var count: Int { get }
    /// A copy of the encoded bytes.
    func copyBytes() -> [UInt8]
}

/// Identifies an RPC method: `/package.Service/Method` on the wire.
public struct MethodDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// The fully qualified service name, e.g. `grpc.testing.TestService`.
    public let service: String
    /// The method name, e.g. `UnaryCall`.
    public let method: String
    /// The HTTP/2 `:path` of the method.
    public let path: String

    /// Creates a descriptor.
    public init(service: String, method: String) {
        self.service = service
        self.method = method
        self.path = "/\(service)/\(method)"
    }

    public var description: String { path }
}

/// The four RPC shapes.
public enum RPCKind: Sendable, Hashable {
    /// One request, one response.
    case unary
    /// One request, a stream of responses.
    case serverStreaming
    /// A stream of requests, one response.
    case clientStreaming
    /// Streams both ways.
    case bidirectionalStreaming

    /// Whether the handler starts before the request stream ended.
    var streamsRequests: Bool { self == .clientStreaming || self == .bidirectionalStreaming }
    /// Whether the handler may write more than one response.
    var streamsResponses: Bool { self == .serverStreaming || self == .bidirectionalStreaming }
}
