import Synchronization

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
    /// Encodes with `serializedBytes()` and copies into the memory `allocate` returns.
    public func serialize(into allocate: (Int) throws -> UnsafeMutableRawBufferPointer) throws {
        let bytes = try serializedBytes()
        let target = try allocate(bytes.count)
        bytes.withUnsafeBytes { target.copyMemory(from: $0) }
    }
}

/// The bytes of one message, read-only: an array, or memory a transport owns (a received
/// message handed over without copying it, or an outbound message a transport encoded straight
/// into its send memory). The memory is released when the last copy of this value goes away.
///
/// This is the zero-copy capability of the transport interface: a transport that has the bytes
/// in its own memory wraps that memory in a ``MessageBuffer`` instead of copying it into an array.
public struct MessageBytes: Sendable {
    @usableFromInline
    enum Storage: Sendable {
        case array([UInt8])
        case buffer(any MessageBuffer)
    }
    @usableFromInline
    let storage: Storage
    /// Outbound: compress the message with this algorithm when it is sent (nil: send it as is).
    /// Set by the call from its compression setting; the stream must declare the same
    /// `grpc-encoding`.
    public var compression: CompressionAlgorithm? = nil

    /// Bytes in an array.
    @inlinable
    public init(_ bytes: [UInt8]) { storage = .array(bytes) }
    /// Bytes in transport memory (not copied).
    @inlinable
    public init(buffer: any MessageBuffer) { storage = .buffer(buffer) }

    /// The size in bytes.
    @inlinable
    public var count: Int {
        switch storage {
        case .array(let a): return a.count
        case .buffer(let b): return b.count
        }
    }

    /// Calls `body` with the bytes (valid only during the call).
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .array(let a): return try a.withUnsafeBytes(body)
        case .buffer(let b): return try withExtendedLifetime(b) { try body(b.bytes) }
        }
    }

    /// The bytes as an array (a copy when they are in transport memory).
    public var array: [UInt8] {
        switch storage {
        case .array(let a): return a
        case .buffer(let b): return [UInt8](b.bytes)
        }
    }

    /// The transport memory holding the bytes, if they are in some: a transport takes its own
    /// buffers back this way (e.g. to send an encoded message without copying it).
    @inlinable
    public var buffer: (any MessageBuffer)? {
        if case .buffer(let b) = storage { return b }
        return nil
    }
}

/// Transport memory holding one message (see ``MessageBytes``); the transport frees it in
/// `deinit`.
public protocol MessageBuffer: AnyObject, Sendable {
    /// The size in bytes.
    var count: Int { get }
    /// The message; valid while this object is alive (and, for a buffer a transport takes back
    /// to send, until it does).
    var bytes: UnsafeRawBufferPointer { get }
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

    /// The path, e.g. `/grpc.testing.TestService/UnaryCall`.
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
    public var streamsRequests: Bool { self == .clientStreaming || self == .bidirectionalStreaming }
    /// Whether the handler may write more than one response.
    public var streamsResponses: Bool { self == .serverStreaming || self == .bidirectionalStreaming }
}

/// Process-wide limits that message codecs honour when they decode (the protobuf bridge,
/// `H2RPCProtobuf`, does). Set them at start-up.
public enum RPCMessageLimits {
    private static let unknownFields = Atomic<Int>(1000)

    /// The most unknown fields (fields the schema does not declare, in a message and its
    /// sub-messages together) a decoded message may carry; more fails the decode, which a server
    /// answers RESOURCE_EXHAUSTED. Default 1,000. A codec that keeps unknown fields allocates for
    /// each, so without a cap a few bytes of wire each become tens of bytes of heap.
    public static var maxUnknownFields: Int {
        get { unknownFields.load(ordering: .relaxed) }
        set { unknownFields.store(max(0, newValue), ordering: .relaxed) }
    }
}
