import Synchronization

/// What a handler knows about its call, and how it sets response metadata.
public struct ServerContext: Sendable {
    /// The method being called.
    public let descriptor: MethodDescriptor
    /// The request metadata (custom headers; transport headers removed).
    public let metadata: Metadata
    /// When the call must end, from the client's `grpc-timeout`; nil for no deadline.
    public let deadline: ContinuousClock.Instant?
    /// The peer's address, e.g. `ipv4:127.0.0.1:5555`, or `in-process`.
    public let peer: String

    let response: ResponseMetadata

    init(descriptor: MethodDescriptor, metadata: Metadata, deadline: ContinuousClock.Instant?, peer: String) {
        self.descriptor = descriptor
        self.metadata = metadata
        self.deadline = deadline
        self.peer = peer
        self.response = ResponseMetadata()
    }

    /// Adds initial metadata (response headers). Takes effect if set before the first
    /// response message is written.
    public func addInitialMetadata(_ metadata: Metadata) {
        response.state.withLock { $0.initial.append(contentsOf: metadata) }
    }

    /// Adds trailing metadata, sent with the status.
    public func addTrailingMetadata(_ metadata: Metadata) {
        response.state.withLock { $0.trailing.append(contentsOf: metadata) }
    }
}

/// Response metadata a handler sets while it runs.
final class ResponseMetadata: Sendable {
    struct State {
        var initial = Metadata()
        var trailing = Metadata()
    }
    let state = Mutex(State())
}
