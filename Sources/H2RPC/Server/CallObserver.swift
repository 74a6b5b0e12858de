/// What one server call did, reported once when it ends: the access log's record.
public struct ServerCallSummary: Sendable {
    /// The method path the client asked for, `/package.Service/Method` (also an unknown one).
    public var path: String
    /// The peer's address, e.g. `ipv4:127.0.0.1:5555`, `ipv6:[::1]:5555`, or `in-process`.
    public var peer: String
    /// The status the client got; CANCELLED when the stream closed before a status went out
    /// (the client reset it, or the connection dropped).
    public var status: Status
    /// From the request's headers to the end of the call.
    public var duration: Duration
    /// Request message payload bytes received (gRPC framing not counted).
    public var requestBytes: Int
    /// Response message payload bytes written (gRPC framing not counted).
    public var responseBytes: Int
    /// The call's context, with what interceptors attached to it (the authenticated caller);
    /// nil for a call refused before it had one (unknown method, malformed head).
    public var context: ServerContext?

    /// Memberwise initializer.
    public init(
        path: String, peer: String, status: Status, duration: Duration, requestBytes: Int, responseBytes: Int,
        context: ServerContext?
    ) {
        self.path = path
        self.peer = peer
        self.status = status
        self.duration = duration
        self.requestBytes = requestBytes
        self.responseBytes = responseBytes
        self.context = context
    }
}

/// Told about every call when it ends, whatever ended it (the handler, a rejection by an
/// interceptor or by the server, the deadline, the client): an access log, metrics.
///
/// Called on the thread that ended the call (a handler task or the transport's event loop),
/// before the server counts the call as over, so a graceful shutdown waits for it: keep it short
/// and never block.
public protocol ServerCallObserver: Sendable {
    /// One call ended.
    func callEnded(_ summary: ServerCallSummary)
}
