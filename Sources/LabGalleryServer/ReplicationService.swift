import GeneratedProtos
import H2RPC
import LabGalleryCore

/// `labgallery.v1.ReplicationService`: the status is served from the durable replication records;
/// streaming and retries arrive with the replication engine.
public struct ReplicationService: Labgallery_V1_ReplicationService.ServiceProtocol {
    private let core: LabGalleryService

    /// Creates the service over the core.
    public init(core: LabGalleryService) { self.core = core }

    /// GetReplicationStatus: one entry per other region of the gallery's geography.
    public func getReplicationStatus(request: Labgallery_V1_GetReplicationStatusRequest, context: ServerContext) async throws -> Labgallery_V1_ReplicationStatus {
        Mapping.replicationStatus(try core.replicationStatus(image: request.image, caller: try Caller.current()))
    }

    /// WatchReplication: UNIMPLEMENTED until the replication engine lands.
    public func watchReplication(request: Labgallery_V1_WatchReplicationRequest, response: ResponseWriter<Labgallery_V1_ReplicationStatus>, context: ServerContext) async throws {
        _ = try Caller.current()
        throw Self.notYet("WatchReplication")
    }

    /// WatchGalleryReplication: UNIMPLEMENTED until the replication engine lands.
    public func watchGalleryReplication(request: Labgallery_V1_WatchGalleryReplicationRequest, response: ResponseWriter<Labgallery_V1_ReplicationStatus>, context: ServerContext) async throws {
        _ = try Caller.current()
        throw Self.notYet("WatchGalleryReplication")
    }

    /// RetryReplication: UNIMPLEMENTED until the replication engine lands.
    public func retryReplication(request: Labgallery_V1_RetryReplicationRequest, context: ServerContext) async throws -> Labgallery_V1_ReplicationStatus {
        _ = try Caller.current()
        throw Self.notYet("RetryReplication")
    }

    static func notYet(_ method: String) -> RPCError {
        RPCError(.unimplemented, "\(method) is not available yet: replication streaming lands with the replication engine; use GetReplicationStatus meanwhile")
    }
}
