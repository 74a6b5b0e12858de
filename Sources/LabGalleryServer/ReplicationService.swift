import GeneratedProtos
import H2RPC
import LabGalleryCore
import Synchronization

/// `labgallery.v1.ReplicationService` on the core (which checks roles and reaches the replication engine).
///
/// Watch streams read from a per-call mailbox that keeps only the latest status per image, so a slow
/// client (whose `write` suspends under HTTP/2 flow control) sees progress coalesced and never slows
/// replication or grows server memory. Client cancellation and deadlines cancel the handler's task,
/// which ends the wait; server shutdown ends every stream with UNAVAILABLE.
public struct ReplicationService: Labgallery_V1_ReplicationService.ServiceProtocol {
    private let core: LabGalleryService
    private let encodings = StatusEncodings()

    /// Creates the service over the core.
    public init(core: LabGalleryService) { self.core = core }

    /// GetReplicationStatus: one entry per other region of the gallery's geography (live progress).
    public func getReplicationStatus(request: Labgallery_V1_GetReplicationStatusRequest, context: ServerContext)
        async throws -> Labgallery_V1_ReplicationStatus
    {
        Mapping.replicationStatus(try await core.replicationStatus(image: request.image, caller: try Caller.current()))
    }

    /// WatchReplication: the full state at once, then one per change; ends OK after a COMPLETED or FAILED state.
    public func watchReplication(
        request: Labgallery_V1_WatchReplicationRequest, response: ResponseWriter<Labgallery_V1_ReplicationStatus>,
        context: ServerContext
    ) async throws {
        let watch = try await core.watchReplication(image: request.image, caller: try Caller.current())
        try await pump(watch, to: response)
    }

    /// WatchGalleryReplication: every image's state, then every change, until the client cancels.
    public func watchGalleryReplication(
        request: Labgallery_V1_WatchGalleryReplicationRequest,
        response: ResponseWriter<Labgallery_V1_ReplicationStatus>, context: ServerContext
    ) async throws {
        let watch = try await core.watchGalleryReplication(gallery: request.gallery, caller: try Caller.current())
        try await pump(watch, to: response)
    }

    /// RetryReplication: re-queues failed regions (all of them when `regions` is empty).
    public func retryReplication(request: Labgallery_V1_RetryReplicationRequest, context: ServerContext) async throws
        -> Labgallery_V1_ReplicationStatus
    {
        Mapping.replicationStatus(
            try await core.retryReplication(
                image: request.image, regions: request.regions, caller: try Caller.current()))
    }

    private func pump(_ watch: ReplicationWatch, to response: ResponseWriter<Labgallery_V1_ReplicationStatus>)
        async throws
    {
        defer { watch.close() }
        do {
            while let status = try await watch.next() {
                try await response.write(encodings.encoded(status))
            }
        } catch ReplicationWatchError.shutdown {
            throw RPCError(
                .unavailable,
                "the server is shutting down; reconnect and watch again (every message is the full state, nothing is lost)"
            )
        }
    }
}

/// The latest encoding of each image's status, shared by the watch streams: every watcher of an
/// image receives the same status after a change, so it is encoded once, not once per watcher.
private final class StatusEncodings: Sendable {
    private static let maxImages = 1024
    private let latest = Mutex<
        [String: (status: ReplicationStatus, message: SerializedMessage<Labgallery_V1_ReplicationStatus>)]
    >([:])

    func encoded(_ status: ReplicationStatus) throws -> SerializedMessage<Labgallery_V1_ReplicationStatus> {
        if let hit = latest.withLock({ $0[status.image] }), hit.status == status { return hit.message }
        let message = try SerializedMessage(Mapping.replicationStatus(status))
        latest.withLock { cache in
            if cache.count >= Self.maxImages { cache.removeAll(keepingCapacity: true) }
            cache[status.image] = (status, message)
        }
        return message
    }
}
