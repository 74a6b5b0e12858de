import GeneratedProtos
import H2RPC
import LabGalleryCore

/// `labgallery.v1.LabAccountService` on the core.
public struct LabAccountService: Labgallery_V1_LabAccountService.ServiceProtocol {
    private let core: LabGalleryService

    /// Creates the service over the core.
    public init(core: LabGalleryService) { self.core = core }

    /// CreateLabAccount: with a new gallery (`create_gallery`), an existing one (`attach_gallery`), or none.
    public func createLabAccount(request: Labgallery_V1_CreateLabAccountRequest, context: ServerContext) async throws
        -> Labgallery_V1_LabAccount
    {
        let account = request.labAccount ?? .init()
        return Mapping.labAccount(
            try await core.createLabAccount(
                id: request.labAccountId, displayName: account.displayName, region: account.region,
                gallery: Mapping.gallerySetup(request.gallery), caller: try Caller.current()))
    }

    /// GetLabAccount.
    public func getLabAccount(request: Labgallery_V1_GetLabAccountRequest, context: ServerContext) async throws
        -> Labgallery_V1_LabAccount
    {
        Mapping.labAccount(try await core.getLabAccount(name: request.name, caller: try Caller.current()))
    }

    /// DeleteLabAccount.
    public func deleteLabAccount(request: Labgallery_V1_DeleteLabAccountRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await core.deleteLabAccount(name: request.name, caller: try Caller.current())
        return .init()
    }

    /// ListLabAccounts.
    public func listLabAccounts(request: Labgallery_V1_ListLabAccountsRequest, context: ServerContext) async throws
        -> Labgallery_V1_ListLabAccountsResponse
    {
        let page = try await core.listLabAccounts(
            page: Mapping.page(size: request.pageSize, token: request.pageToken), caller: try Caller.current())
        return .init(labAccounts: page.items.map(Mapping.labAccount), nextPageToken: page.nextPageToken)
    }
}
