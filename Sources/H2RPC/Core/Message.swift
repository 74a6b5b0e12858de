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
