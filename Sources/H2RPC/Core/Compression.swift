/// A message compression algorithm of gRPC (`grpc-encoding`).
public enum CompressionAlgorithm: String, Sendable, Hashable, CaseIterable {
    /// gzip (RFC 1952).
    case gzip
    /// deflate in the zlib format (RFC 1950), as grpc sends it.
    case deflate

    /// The `grpc-encoding` name.
    public var name: String { rawValue }

    /// The algorithm named `name` in `grpc-encoding` (nil: unknown, or `identity`).
    public init?(name: some StringProtocol) {
        switch name {
        case "gzip": self = .gzip
        case "deflate": self = .deflate
        default: return nil
        }
    }
}

/// Transport memory holding a message as it arrived, still compressed: the call inflates it when
/// its reader takes it (``MessageBytes/decompressed(limit:)``), so a stream holds at most its
/// flow-control window of compressed bytes, and the CPU work runs on the reader's task rather
/// than on the transport's thread.
public protocol CompressedMessageBuffer: MessageBuffer {
    /// The algorithm the message was compressed with.
    var algorithm: CompressionAlgorithm { get }
    /// The inflated message; throws RESOURCE_EXHAUSTED once it would exceed `limit` bytes (or
    /// the transport's own receive limit, whichever is lower) without allocating more than that,
    /// and INTERNAL if the bytes are not valid for the algorithm.
    func decompressed(limit: Int?) throws(RPCError) -> MessageBytes
}

extension MessageBytes {
    /// Whether the message arrived compressed (the transport has not inflated it yet).
    public var isCompressed: Bool { buffer is any CompressedMessageBuffer }

    /// The message inflated if it arrived compressed (at most `limit` bytes, see
    /// ``CompressedMessageBuffer/decompressed(limit:)``), else itself.
    public func decompressed(limit: Int?) throws(RPCError) -> MessageBytes {
        guard let compressed = buffer as? any CompressedMessageBuffer else { return self }
        return try compressed.decompressed(limit: limit)
    }
}
