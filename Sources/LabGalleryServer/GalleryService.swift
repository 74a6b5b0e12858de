import GeneratedProtos
import H2RPC
import LabGalleryCore

/// `labgallery.v1.GalleryService` on the core.
public struct GalleryService: Labgallery_V1_GalleryService.ServiceProtocol {
    private let core: LabGalleryService

    /// Creates the service over the core.
    public init(core: LabGalleryService) { self.core = core }

    /// CreateGallery: a gallery outside any lab account.
    public func createGallery(request: Labgallery_V1_CreateGalleryRequest, context: ServerContext) async throws
        -> Labgallery_V1_Gallery
    {
        let gallery = request.gallery ?? .init()
        return Mapping.gallery(
            try await core.createGallery(
                id: request.galleryId, displayName: gallery.displayName,
                region: gallery.region, caller: try Caller.current()))
    }

    /// GetGallery.
    public func getGallery(request: Labgallery_V1_GetGalleryRequest, context: ServerContext) async throws
        -> Labgallery_V1_Gallery
    {
        Mapping.gallery(try await core.getGallery(name: request.name, caller: try Caller.current()))
    }

    /// DeleteGallery: refused while attached.
    public func deleteGallery(request: Labgallery_V1_DeleteGalleryRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await core.deleteGallery(name: request.name, caller: try Caller.current())
        return .init()
    }

    /// ListGalleries.
    public func listGalleries(request: Labgallery_V1_ListGalleriesRequest, context: ServerContext) async throws
        -> Labgallery_V1_ListGalleriesResponse
    {
        let page = try await core.listGalleries(
            page: Mapping.page(size: request.pageSize, token: request.pageToken), caller: try Caller.current())
        return .init(galleries: page.items.map(Mapping.gallery), nextPageToken: page.nextPageToken)
    }

    /// AttachGallery: FAILED_PRECONDITION if one is attached; grants `lab-services` Contributor.
    public func attachGallery(request: Labgallery_V1_AttachGalleryRequest, context: ServerContext) async throws
        -> Labgallery_V1_LabAccount
    {
        Mapping.labAccount(
            try await core.attachGallery(
                labAccount: request.labAccount, gallery: request.gallery, caller: try Caller.current()))
    }

    /// DetachGallery: requires `confirm`; with `gallery`, only that gallery is detached.
    public func detachGallery(request: Labgallery_V1_DetachGalleryRequest, context: ServerContext) async throws
        -> Labgallery_V1_LabAccount
    {
        Mapping.labAccount(
            try await core.detachGallery(
                labAccount: request.labAccount, confirm: request.confirm, gallery: request.gallery,
                caller: try Caller.current()))
    }

    /// ListRoleAssignments on a gallery.
    public func listRoleAssignments(request: Labgallery_V1_ListRoleAssignmentsRequest, context: ServerContext)
        async throws -> Labgallery_V1_ListRoleAssignmentsResponse
    {
        let assignments = try await core.listRoleAssignments(gallery: request.gallery, caller: try Caller.current())
        return .init(roleAssignments: assignments.map(Mapping.roleAssignment))
    }
}
