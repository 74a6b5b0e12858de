import Foundation
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
    private let slots = WatcherSlots()

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
        let caller = try Caller.current()
        let slot = try slots.acquire(caller: caller.name, peer: context.peer, core.configuration)
        defer { slots.release(slot) }
        let watch = try await core.watchReplication(image: request.image, caller: caller)
        try await pump(watch, to: response, context: context)
    }

    /// WatchGalleryReplication: every image's state, then every change, until the client cancels.
    public func watchGalleryReplication(
        request: Labgallery_V1_WatchGalleryReplicationRequest,
        response: ResponseWriter<Labgallery_V1_ReplicationStatus>, context: ServerContext
    ) async throws {
        let caller = try Caller.current()
        let slot = try slots.acquire(caller: caller.name, peer: context.peer, core.configuration)
        defer { slots.release(slot) }
        let watch = try await core.watchGalleryReplication(gallery: request.gallery, caller: caller)
        try await pump(watch, to: response, context: context)
    }

    /// RetryReplication: re-queues failed regions (all of them when `regions` is empty).
    public func retryReplication(request: Labgallery_V1_RetryReplicationRequest, context: ServerContext) async throws
        -> Labgallery_V1_ReplicationStatus
    {
        Mapping.replicationStatus(
            try await core.retryReplication(
                image: request.image, regions: request.regions, caller: try Caller.current()))
    }

    /// How often a watch stream re-checks the token it was opened with: a revoked token's
    /// streams end with UNAUTHENTICATED within this time (plus one database read).
    static let tokenRecheckInterval = Duration.seconds(2)

    private func pump(
        _ watch: ReplicationWatch, to response: ResponseWriter<Labgallery_V1_ReplicationStatus>,
        context: ServerContext
    ) async throws {
        defer { watch.close() }
        let token = try? AuthenticationInterceptor.bearerToken(in: context.metadata)
        let encodings = self.encodings
        let core = self.core
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while let status = try await watch.next() {
                        try await response.write(encodings.encoded(status))
                    }
                }
                if let token {
                    // The token may be revoked while the stream runs (by `token revoke`, from
                    // another process): re-check it, and end the stream as an unknown token would.
                    group.addTask {
                        while true {
                            try await Task.sleep(for: Self.tokenRecheckInterval)
                            do { _ = try await core.authenticate(token: token) } catch let e as LabGalleryError
                                where e.code == .unauthenticated
                            {
                                throw e
                            } catch {}  // a busy database: check again next time
                        }
                    }
                }
                _ = try await group.next()
                group.cancelAll()
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

/// Open watch streams, in all, per principal and per connection: a watch past any cap is
/// RESOURCE_EXHAUSTED (`--max-watchers`, `--max-watchers-per-caller`,
/// `--max-watchers-per-connection`), so no caller and no connection can hold unbounded streams.
final class WatcherSlots: Sendable {
    /// One open watch: whose, and on which connection (the peer address names a live connection).
    struct Slot {
        let caller: String
        let peer: String
    }
    private struct Counts {
        var total = 0
        var byCaller: [String: Int] = [:]
        var byPeer: [String: Int] = [:]
    }
    private let counts = Mutex(Counts())

    func acquire(caller: String, peer: String, _ limits: LabGalleryConfiguration) throws -> Slot {
        let refusal: String? = counts.withLock { c in
            if c.total >= limits.maxWatchers {
                return
                    "the server has \(limits.maxWatchers) replication watch streams open, its limit; close one or retry later"
            }
            let mine = c.byCaller[caller, default: 0]
            if mine >= limits.maxWatchersPerCaller {
                return
                    "you have \(limits.maxWatchersPerCaller) replication watch streams open, the limit per caller; close one first (one gallery watch covers every image of a gallery)"
            }
            let onConnection = c.byPeer[peer, default: 0]
            if onConnection >= limits.maxWatchersPerConnection {
                return
                    "this connection has \(limits.maxWatchersPerConnection) replication watch streams open, the limit per connection; close one first (one gallery watch covers every image of a gallery)"
            }
            c.total += 1
            c.byCaller[caller] = mine + 1
            c.byPeer[peer] = onConnection + 1
            return nil
        }
        if let refusal { throw RPCError(.resourceExhausted, refusal) }
        return Slot(caller: caller, peer: peer)
    }

    func release(_ slot: Slot) {
        counts.withLock { c in
            c.total -= 1
            let left = c.byCaller[slot.caller, default: 1] - 1
            c.byCaller[slot.caller] = left > 0 ? left : nil
            let leftOnConnection = c.byPeer[slot.peer, default: 1] - 1
            c.byPeer[slot.peer] = leftOnConnection > 0 ? leftOnConnection : nil
        }
    }
}
