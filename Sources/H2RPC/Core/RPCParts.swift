/// What a transport delivers to a server call, in order (see ``ServerCall/receive(_:)``).
///
/// The request headers arrive before any part, as the ``RequestHead`` given to
/// ``ServerCallAcceptor/accept(_:outbound:)``.
public enum RPCRequestPart: Sendable {
    /// One request message (gRPC framing already removed by the transport).
    case message(MessageBytes)
    /// The client half-closed the request stream: no more messages.
    case end
}

/// A part of a response: what a server call writes to its transport (see
/// ``ServerStreamOutbound/write(_:_:_:)``) and what a client transport delivers to its call
/// (see ``ClientCallEvents/receive(_:)``).
///
/// A stream carries `.metadata` once, then any number of `.message`s, then `.status`; or only
/// `.trailersOnly` (an immediate answer, nothing sent before it).
public enum RPCResponsePart: Sendable {
    /// The response headers: initial metadata (transport headers removed).
    case metadata(Metadata)
    /// One response message (gRPC framing removed, or not yet added).
    case message(MessageBytes)
    /// The status with trailing metadata: ends the stream.
    case status(Status, Metadata)
    /// A Trailers-Only response: the status and trailing metadata are the stream's only header
    /// block (nothing was sent before, nothing follows). A client transport may report one as
    /// `.status` too.
    case trailersOnly(Status, Metadata)
}
