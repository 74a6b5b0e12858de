/// What a client sends to open a call.
public struct ClientRequestHead: Sendable {
    /// The method.
    public var method: MethodDescriptor
    /// Custom metadata sent as request headers.
    public var metadata: Metadata
    /// The timeout sent as `grpc-timeout` (the client also enforces it locally).
    public var timeout: Duration?
    /// The request `grpc-encoding`: messages whose ``MessageBytes/compression`` is set are sent
    /// compressed with it.
    public var compression: CompressionAlgorithm?

    /// Creates a request head.
    public init(
        method: MethodDescriptor, metadata: Metadata, timeout: Duration?, compression: CompressionAlgorithm? = nil
    ) {
        self.method = method
        self.metadata = metadata
        self.timeout = timeout
        self.compression = compression
    }
}

/// The outbound half of one client stream, implemented by a transport.
public protocol ClientStreamOutbound: Sendable {
    /// Writes a part of the request stream: a message, or the half-close.
    func write(_ part: RPCRequestPart)
    /// Encodes a request message for this stream. Zero-copy capability: a transport encodes
    /// straight into its send memory (``MessageBytes/init(buffer:)``) and, when the message is
    /// written, sends that memory without copying it. The default encodes into an array.
    func encode<M: RPCMessage>(_ message: M) throws -> MessageBytes
    /// Aborts the stream (HTTP/2: RST_STREAM CANCEL).
    func cancel()
    /// Releases a consumed response message of `bytes` bytes (as received, framing not
    /// included): the transport reopens the server's flow-control window by as much (plus its
    /// framing).
    func consume(_ bytes: Int)
}

/// A client transport: opens streams to one server.
///
/// Per stream it reports what arrives to the call's ``ClientCallEvents``: the
/// ``RPCResponsePart``s (``ClientCallEvents/receive(_:)``) and drained output
/// (``ClientCallEvents/drained(_:)``).
public protocol ClientTransport: Sendable {
    /// Opens a stream; the transport reports what arrives to `events`.
    func openStream(_ head: ClientRequestHead, events: ClientCallEvents) -> any ClientStreamOutbound
    /// Closes the connection; open calls end with UNAVAILABLE.
    func close()
}

extension ClientStreamOutbound {
    /// Encodes into an array.
    public func encode<M: RPCMessage>(_ message: M) throws -> MessageBytes {
        MessageBytes(try message.serializedBytes())
    }
}
