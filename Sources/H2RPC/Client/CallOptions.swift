/// Per-call options.
public struct CallOptions: Sendable {
    /// How long the call may take; sent to the server as `grpc-timeout` and enforced here too.
    public var timeout: Duration?
    /// How the request messages are compressed (`grpc-encoding`); nil (default): not at all.
    /// One message can still go uncompressed (``ClientCall/send(_:compressed:)``).
    public var compression: CompressionAlgorithm?

    /// Creates options.
    public init(timeout: Duration? = nil, compression: CompressionAlgorithm? = nil) {
        self.timeout = timeout
        self.compression = compression
    }

    /// No timeout.
    public static let defaults = CallOptions()
}

/// Runs before every client call is opened: add credentials, log, reject.
public protocol ClientInterceptor: Sendable {
    /// Adjusts the request head (e.g. adds `authorization`), or throws to fail the call.
    func prepare(_ head: inout ClientRequestHead) throws
}

/// A unary response with its metadata.
public struct ClientResponse<Message: RPCMessage>: Sendable {
    /// The response message.
    public var message: Message
    /// The response headers.
    public var initialMetadata: Metadata
    /// The trailers sent with the OK status.
    public var trailingMetadata: Metadata
}
