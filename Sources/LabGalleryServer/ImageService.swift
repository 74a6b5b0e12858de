import Foundation
import GeneratedProtos
import H2RPC
import LabGalleryCore

/// `labgallery.v1.ImageService` on the core.
public struct ImageService: Labgallery_V1_ImageService.ServiceProtocol {
    private let core: LabGalleryService

    /// Creates the service over the core.
    public init(core: LabGalleryService) { self.core = core }

    /// UploadImage (client streaming): the header first, then chunks, each appended to the
    /// core's upload session as it arrives (the image is never held in memory). A stream error,
    /// cancellation or any failure aborts the session, so nothing is stored.
    public func uploadImage(requests: RequestStream<Labgallery_V1_UploadImageRequest>, context: ServerContext)
        async throws -> Labgallery_V1_Image
    {
        let caller = try Caller.current()
        var messages = requests.makeAsyncIterator()
        guard case .header(let header)? = try await messages.next()?.data else {
            throw RPCError(
                .invalidArgument,
                "header: the header must be the first message of UploadImage; send UploadImageRequest{header: …} first, then the bytes in chunk messages"
            )
        }
        let upload = try await core.beginUpload(Mapping.uploadHeader(header), caller: caller)
        do {
            while let message = try await messages.next() {
                switch message.data {
                case .chunk(let bytes):
                    try await upload.append(bytes)
                case .header:
                    throw RPCError(
                        .invalidArgument,
                        "header: only the first message of UploadImage may be a header; send the image bytes in chunk messages"
                    )
                case nil:
                    continue  // An empty message carries nothing; tolerated like an empty chunk.
                }
            }
            return Mapping.image(try await upload.finish())
        } catch {
            upload.abort()
            throw error
        }
    }

    /// GetImage.
    public func getImage(request: Labgallery_V1_GetImageRequest, context: ServerContext) async throws
        -> Labgallery_V1_Image
    {
        Mapping.image(try await core.getImage(name: request.name, caller: try Caller.current()))
    }

    /// DeleteImage: refused while a lab uses it as template.
    public func deleteImage(request: Labgallery_V1_DeleteImageRequest, context: ServerContext) async throws
        -> Google_Protobuf_Empty
    {
        try await core.deleteImage(name: request.name, caller: try Caller.current())
        return .init()
    }

    /// ListImages of a gallery.
    public func listImages(request: Labgallery_V1_ListImagesRequest, context: ServerContext) async throws
        -> Labgallery_V1_ListImagesResponse
    {
        let page = try await core.listImages(
            gallery: request.gallery, page: Mapping.page(size: request.pageSize, token: request.pageToken),
            caller: try Caller.current())
        return .init(images: page.items.map(Mapping.image), nextPageToken: page.nextPageToken)
    }

    /// ListLabAccountImages: the attached gallery's images, enabled by default, each with whether CreateLab would accept it now.
    public func listLabAccountImages(request: Labgallery_V1_ListLabAccountImagesRequest, context: ServerContext)
        async throws -> Labgallery_V1_ListLabAccountImagesResponse
    {
        let page = try await core.listLabAccountImages(
            labAccount: request.labAccount, page: PageRequest(size: Int(request.pageSize), token: request.pageToken),
            caller: try Caller.current())
        return .init(images: page.items.map(Mapping.labAccountImage), nextPageToken: page.nextPageToken)
    }

    /// SetImagesEnabled: all or nothing.
    public func setImagesEnabled(request: Labgallery_V1_SetImagesEnabledRequest, context: ServerContext) async throws
        -> Labgallery_V1_SetImagesEnabledResponse
    {
        let images = try await core.setImagesEnabled(
            labAccount: request.labAccount, images: request.images,
            enabled: request.enabled, caller: try Caller.current())
        return .init(images: images.map(Mapping.labAccountImage))
    }

    /// SaveLabTemplateImage: an image saved from the lab into the attached gallery (SPECIALIZED; GENERALIZED under generalized-only).
    public func saveLabTemplateImage(request: Labgallery_V1_SaveLabTemplateImageRequest, context: ServerContext)
        async throws -> Labgallery_V1_Image
    {
        Mapping.image(
            try await core.saveLabTemplateImage(
                lab: request.lab, imageID: request.imageId,
                displayName: request.displayName, caller: try Caller.current()))
    }
}
