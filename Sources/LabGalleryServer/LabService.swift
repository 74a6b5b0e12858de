import GeneratedProtos
import H2RPC
import LabGalleryCore

/// `labgallery.v1.LabService` on the core.
public struct LabService: Labgallery_V1_LabService.ServiceProtocol {
    private let core: LabGalleryService

    /// Creates the service over the core.
    public init(core: LabGalleryService) { self.core = core }

    /// CreateLab: the template must be an enabled image of the attached gallery.
    public func createLab(request: Labgallery_V1_CreateLabRequest, context: ServerContext) async throws
        -> Labgallery_V1_Lab
    {
        let lab = request.lab ?? .init()
        return Mapping.lab(
            try await core.createLab(
                labAccount: request.labAccount, labID: request.labId, displayName: lab.displayName,
                templateImage: lab.templateImage, caller: try Caller.current()))
    }

    /// GetLab.
    public func getLab(request: Labgallery_V1_GetLabRequest, context: ServerContext) async throws -> Labgallery_V1_Lab {
        Mapping.lab(try await core.getLab(name: request.name, caller: try Caller.current()))
    }

    /// DeleteLab.
    public func deleteLab(request: Labgallery_V1_DeleteLabRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await core.deleteLab(name: request.name, caller: try Caller.current())
        return .init()
    }

    /// ListLabs of a lab account.
    public func listLabs(request: Labgallery_V1_ListLabsRequest, context: ServerContext) async throws
        -> Labgallery_V1_ListLabsResponse
    {
        let page = try await core.listLabs(
            labAccount: request.labAccount, page: Mapping.page(size: request.pageSize, token: request.pageToken),
            caller: try Caller.current())
        return .init(labs: page.items.map(Mapping.lab), nextPageToken: page.nextPageToken)
    }
}
