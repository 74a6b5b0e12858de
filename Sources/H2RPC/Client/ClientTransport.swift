/// What a client sends to open a call.
public struct ClientRequestHead: Sendable {
    /// The method.
    public var method: MethodDescriptor
    /// Custom metadata sent as request headers.
    public var metadata: Metadata
    /// The timeout sent as `grpc-timeout` (the client also enforces it locally).
    public var timeout: Duration?

    /// Creates a request head.
    public init(method: MethodDescriptor, metadata: Metadata, timeout: Duration?) {
        self.method = method
        self.metadata = metadata
        self.timeout = timeout
    }
}

/// The outbound half of one client stream, implemented by a transport.
public protocol ClientStreamOutbound: Sendable {
    /// Sends one message and/or half-closes the stream.
    func send(message: [UInt8]?, end: Bool)
    /// Encodes a request message for this stream, straight into the transport's send memory
    /// where it can (the default encodes into an array).
    func encode<M: RPCMessage>(_ message: M) throws -> OutboundMessage
    /// Sends one message from `encode`.
    func send(_ message: OutboundMessage, end: Bool)
    /// Aborts the stream (RST_STREAM CANCEL).
    func cancel()
    /// Releases `bytes` of consumed inbound data (reopens the server's window).
    func consume(_ bytes: Int)
}

/// A client transport: opens streams to one server.
public protocol ClientTransport: Sendable {
    /// Opens a stream; the transport reports what arrives to `events`.
    func openStream(_ head: ClientRequestHead, events: ClientCallEvents) -> any ClientStreamOutbound
    /// Closes the connection; open calls end with UNAVAILABLE.
    func close()
}

extension ClientStreamOutbound {
    public func encode<M: RPCMessage>(_ message: M) throws -> OutboundMessage {
        OutboundMessage(bytes: try message.serializedBytes())
    }

    public func send(_ message: OutboundMessage, end: Bool) {
        send(message: message.bytes, end: end)
    }
}
