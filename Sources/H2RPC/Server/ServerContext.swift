import Synchronization

/// What a handler knows about its call, and how it sets response metadata.
public struct ServerContext: Sendable {
    /// The method being called.
    public var descriptor: MethodDescriptor { storage.descriptor }
    /// The request metadata (custom headers; transport headers removed).
    public var metadata: Metadata { storage.metadata }
    /// When the call must end, from the client's `grpc-timeout`; nil for no deadline.
    public var deadline: ContinuousClock.Instant? { storage.deadline }
    /// The peer's address, e.g. `ipv4:127.0.0.1:5555`, or `in-process:1`.
    public var peer: String { storage.peer }
    /// The algorithms the client accepts for responses (its `grpc-accept-encoding`).
    public var acceptedCompression: [CompressionAlgorithm] { storage.acceptedCompression }

    /// Whether the request message the handler took last (the single request, or the latest one
    /// its request stream returned) arrived compressed.
    public var requestWasCompressed: Bool { storage.lastRequestCompressed.load(ordering: .relaxed) }

    /// How the following response messages are compressed; nil (default): not at all. The
    /// algorithm is used only if the client accepts it (``acceptedCompression``), and the first
    /// response message fixes the stream's `grpc-encoding`: after an uncompressed first
    /// message, later ones stay uncompressed; after a compressed one, setting nil sends the next
    /// ones uncompressed.
    public var responseCompression: CompressionAlgorithm? {
        get {
            switch storage.responseCompression.load(ordering: .relaxed) {
            case 1: return .gzip
            case 2: return .deflate
            default: return nil
            }
        }
        nonmutating set {
            let raw: UInt8
            switch newValue {
            case .gzip?: raw = 1
            case .deflate?: raw = 2
            case nil: raw = 0
            }
            storage.responseCompression.store(raw, ordering: .relaxed)
        }
    }

    /// All of it in one object (with the response metadata): a context is passed around and
    /// copied for every call, and a copy then retains one reference.
    let storage: Storage

    init(
        descriptor: MethodDescriptor, metadata: Metadata, deadline: ContinuousClock.Instant?, peer: String,
        acceptedCompression: [CompressionAlgorithm] = []
    ) {
        storage = Storage(
            descriptor: descriptor, metadata: metadata, deadline: deadline, peer: peer,
            acceptedCompression: acceptedCompression)
    }

    /// Adds initial metadata (response headers). Takes effect if set before the first
    /// response message is written.
    public func addInitialMetadata(_ metadata: Metadata) {
        storage.response.withLock { $0.initial.append(contentsOf: metadata) }
    }

    /// Adds trailing metadata, sent with the status.
    public func addTrailingMetadata(_ metadata: Metadata) {
        storage.response.withLock { $0.trailing.append(contentsOf: metadata) }
    }

    /// Attaches a value to the call, one per type (replacing an earlier one): how a head check
    /// (``ServerHeadInterceptor/checkHead(context:)``) hands what it learned to `intercept`.
    public func setAttachment<Value: Sendable>(_ value: Value) {
        storage.attachments.withLock { $0[ObjectIdentifier(Value.self)] = value }
    }

    /// The value of type `Value` attached to the call, if any.
    public func attachment<Value: Sendable>(_ type: Value.Type = Value.self) -> Value? {
        storage.attachments.withLock { $0[ObjectIdentifier(Value.self)] } as? Value
    }

    final class Storage: Sendable {
        let descriptor: MethodDescriptor
        let metadata: Metadata
        let deadline: ContinuousClock.Instant?
        let peer: String
        let acceptedCompression: [CompressionAlgorithm]
        /// The handler's response compression (0: none, 1: gzip, 2: deflate): atomics, as every
        /// call reads them on its way out.
        let responseCompression = Atomic<UInt8>(0)
        /// Whether the request message taken last arrived compressed.
        let lastRequestCompressed = Atomic<Bool>(false)
        /// Response metadata the handler sets while it runs.
        let response = Mutex(ResponseMetadata())
        /// Values interceptors attach (see `setAttachment`).
        let attachments = Mutex<[ObjectIdentifier: any Sendable]>([:])

        init(
            descriptor: MethodDescriptor, metadata: Metadata, deadline: ContinuousClock.Instant?, peer: String,
            acceptedCompression: [CompressionAlgorithm]
        ) {
            self.descriptor = descriptor
            self.metadata = metadata
            self.deadline = deadline
            self.peer = peer
            self.acceptedCompression = acceptedCompression
        }
    }
}

/// Response metadata a handler sets while it runs.
struct ResponseMetadata {
    var initial = Metadata()
    var trailing = Metadata()
}
