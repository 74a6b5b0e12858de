/// How a request arrived: what the transport read from the request headers.
public struct RequestHead: Sendable {
    /// The `grpc-timeout` header.
    public enum Timeout: Sendable {
        /// No `grpc-timeout` header: no deadline.
        case none
        /// A well-formed timeout.
        case valid(Duration)
        /// A header that does not parse (the raw value); the call is rejected with INTERNAL.
        case malformed(String)
    }

    /// The `:path`, e.g. `/grpc.testing.TestService/UnaryCall`.
    public var path: String
    /// Custom metadata (transport headers removed).
    public var metadata: Metadata
    /// The requested timeout.
    public var timeout: Timeout
    /// `grpc-encoding`, if sent and not `identity`. A name that is not a
    /// ``CompressionAlgorithm`` is answered UNIMPLEMENTED; a transport that sets a known one
    /// delivers the compressed messages as ``CompressedMessageBuffer``s.
    public var encoding: String?
    /// The algorithms the client accepts for responses (`grpc-accept-encoding`).
    public var acceptedCompression: [CompressionAlgorithm] = []
    /// Whether `te: trailers` was present (required by the gRPC spec over HTTP/2).
    public var hasTE: Bool
    /// The peer, e.g. `ipv4:127.0.0.1:5555`.
    public var peer: String
    /// Where the call's handler runs; nil = Swift's global executor.
    public var executor: (any TaskExecutor)? = nil
    /// Inline-handler capability: the transport promises that it delivers every event of this
    /// call (`accept`, each ``RPCRequestPart``, `closed`) on `executor`'s own thread. The handler
    /// then starts right there (`Task.immediate`) instead of being enqueued as a job: a handler
    /// that never suspends runs to its response inside the event that completed the request, with
    /// no thread hop. Ignored without an `executor`. Default false.
    public var deliversEventsOnExecutor = false

    /// Creates a request head.
    public init(
        path: String, metadata: Metadata, timeout: Timeout = .none, encoding: String? = nil,
        hasTE: Bool = true, peer: String
    ) {
        self.path = path
        self.metadata = metadata
        self.timeout = timeout
        self.encoding = encoding
        self.hasTE = hasTE
        self.peer = peer
    }
}

/// The outbound half of one server stream, implemented by a transport.
///
/// The call writes ``RPCResponsePart``s in stream order: `.metadata` first (in the same write as
/// the first message or the status), then messages, then `.status`; or `.trailersOnly` alone.
/// A write is one hand-off to the transport: a unary call answers with one write of
/// `.metadata`, `.message`, `.status`, which a transport can send in one batch (one flush).
public protocol ServerStreamOutbound: Sendable {
    /// Writes one to three parts, in order, as one batch.
    func write(_ first: RPCResponsePart, _ second: RPCResponsePart?, _ third: RPCResponsePart?)
    /// Encodes a response message for this stream. Zero-copy capability, as on the client
    /// (``ClientStreamOutbound/encode(_:)``): a transport encodes straight into its send memory
    /// and sends that memory without copying it. The default encodes into an array.
    func encode<M: RPCMessage>(_ message: M) throws -> MessageBytes
    /// Aborts the stream (HTTP/2: RST_STREAM CANCEL).
    func reset()
    /// Releases a consumed request message of `bytes` bytes (framing not included): the
    /// transport reopens the peer's flow-control window by as much (plus its framing).
    func consume(_ bytes: Int)
}

extension ServerStreamOutbound {
    /// Writes one part.
    @inlinable
    public func write(_ part: RPCResponsePart) { write(part, nil, nil) }

    /// Encodes into an array.
    public func encode<M: RPCMessage>(_ message: M) throws -> MessageBytes {
        MessageBytes(try message.serializedBytes())
    }
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
    /// `self`: one acceptor for every thread.
    public func makeThreadAcceptor() -> any ServerCallAcceptor { self }
}

/// A server transport: accepts streams and hands them to an acceptor.
///
/// Per stream it calls the acceptor with the ``RequestHead``, then feeds the returned
/// ``ServerCall`` the ``RPCRequestPart``s that arrive (``ServerCall/receive(_:)``), stream
/// errors (``ServerCall/receiveError(_:)``), drained output (``ServerCall/drained(_:)``) and the
/// stream's close (``ServerCall/closed(cancelled:)``); the call answers through the
/// ``ServerStreamOutbound`` it was given.
public protocol ServerTransport: Sendable {
    /// Starts accepting; returns once listening.
    func start(acceptor: any ServerCallAcceptor) throws
    /// Stops accepting new calls (HTTP/2 GOAWAY); calls in flight continue.
    func beginGracefulShutdown()
    /// Closes every connection; calls still open are cancelled.
    func stop()
}
