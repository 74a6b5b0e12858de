import GeneratedProtos
import H2RPC
import LabGalleryCore

/// `labgallery.v1.BillingService`: the cost report arrives with the replication engine
/// (it prices replicas, which that engine creates).
public struct BillingService: Labgallery_V1_BillingService.ServiceProtocol {
    /// Creates the service.
    public init() {}

    /// GetGalleryCost: UNIMPLEMENTED until the replication engine lands.
    public func getGalleryCost(request: Labgallery_V1_GetGalleryCostRequest, context: ServerContext) async throws -> Labgallery_V1_GalleryCost {
        _ = try Caller.current()
        throw RPCError(.unimplemented, "GetGalleryCost is not available yet: the cost report lands with the replication engine")
    }
}
