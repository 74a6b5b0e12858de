/// How a request arrived: what the transport read from the request headers.
public struct RequestHead: Sendable {
    /// The `grpc-timeout` header.
    public enum Timeout: Sendable {
        case none
        case valid(Duration)
        case malformed(String)
    }

    /// The `:path`, e.g. `/grpc.testing.TestService/UnaryCall`.
    public var path: String
    /// Custom metadata (transport headers removed).
    public var metadata: Metadata
    /// The requested timeout.
    public var timeout: Timeout
    /// `grpc-encoding`, if sent and not `identity`.
    public var encoding: String?
    /// Whether `te: trailers` was present (required by the gRPC spec over HTTP/2).
    public var hasTE: Bool
    /// The peer, e.g. `ipv4:127.0.0.1:5555`.
    public var peer: String
    /// Where the call's handler runs; nil = Swift's global executor.
    public var executor: (any TaskExecutor)? = nil
    /// The transport delivers this call's events on `executor`'s own thread, so the handler
    /// can start right there (`Task.immediate`) instead of being enqueued as a job: a handler
    /// that never suspends runs to its response inside the event that completed the request.
    var startsHandlerInline = false

    /// Creates a request head.
    public init(path: String, metadata: Metadata, timeout: Timeout = .none, encoding: String? = nil,
                hasTE: Bool = true, peer: String) {
        self.path = path
        self.metadata = metadata
        self.timeout = timeout
        self.encoding = encoding
        self.hasTE = hasTE
        self.peer = peer
    }
}

/// The outbound half of one server stream, implemented by a transport.
public protocol ServerStreamOutbound: Sendable {
    /// Sends, in order and each optional: response headers, one message, the status with
    /// trailers (which ends the stream).
    func send(headers: Metadata?, message: [UInt8]?, status: Status?, trailers: Metadata)
    /// Ends the stream with a Trailers-Only response (nothing was sent before).
    func sendTrailersOnly(status: Status, trailers: Metadata)
    /// Aborts the stream (RST_STREAM CANCEL).
    func reset()
    /// Releases `bytes` of consumed inbound data (reopens the peer's window).
    func consume(_ bytes: Int)
}

/// Receives the calls a transport accepts: implemented by the server's dispatcher.
public protocol ServerCallAcceptor: Sendable {
    /// A request's headers arrived; returns the call that will receive its events, or nil
    /// if it was answered at once (the transport then discards the rest of the stream).
    func accept(_ head: RequestHead, outbound: any ServerStreamOutbound) -> ServerCall?
    /// An acceptor for one of several transport threads that accept calls side by side (event
    /// loops): it serves the same calls, but shares no per-call state with the other threads'
    /// (counters, reference-counted route objects), so their calls do not contend on it.
    /// The default is `self`.
    func makeThreadAcceptor() -> any ServerCallAcceptor
}

extension ServerCallAcceptor {
    public func makeThreadAcceptor() -> any ServerCallAcceptor { self }
}

/// A server transport: accepts streams and hands them to an acceptor.
public protocol ServerTransport: Sendable {
    /// Starts accepting; returns once listening.
    func start(acceptor: any ServerCallAcceptor) throws
    /// Stops accepting new calls (HTTP/2 GOAWAY); calls in flight continue.
    func beginGracefulShutdown()
    /// Closes every connection; calls still open are cancelled.
    func stop()
}
