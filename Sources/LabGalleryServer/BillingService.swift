import GeneratedProtos
import H2RPC
import LabGalleryCore

/// `labgallery.v1.BillingService`: the gallery's storage cost, priced from the server's price sheet.
public struct BillingService: Labgallery_V1_BillingService.ServiceProtocol {
    private let core: LabGalleryService
    private let priceSheet: PriceSheet

    /// Creates the service over the core, pricing with `priceSheet`.
    public init(core: LabGalleryService, priceSheet: PriceSheet = .default) {
        self.core = core
        self.priceSheet = priceSheet
    }

    /// GetGalleryCost: one line per stored replica (home region, then COMPLETED replicas), money as decimal strings.
    public func getGalleryCost(request: Labgallery_V1_GetGalleryCostRequest, context: ServerContext) async throws
        -> Labgallery_V1_GalleryCost
    {
        let cost = try await core.galleryCost(gallery: request.gallery, sheet: priceSheet, caller: try Caller.current())
        return .init(
            gallery: cost.gallery, currency: cost.currency,
            lines: cost.lines.map {
                .init(
                    image: $0.image, region: $0.region, sizeBytes: $0.sizeBytes, monthlyCost: $0.monthlyCost.description
                )
            },
            monthlyTotal: cost.monthlyTotal.description,
            oneTimeReplicationEgress: cost.oneTimeReplicationEgress.description,
            billedBytes: cost.billedBytes, storedBytes: cost.storedBytes)
    }
}
