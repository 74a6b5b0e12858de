import GeneratedProtos
import LabGalleryCore

/// Conversions between the generated API types and the core's domain types — the one place
/// where they meet. Core → proto never fails; proto → core leaves validation to the core
/// (an unspecified enum becomes `nil`, which the core rejects naming the field).
enum Mapping {
    // MARK: core → proto

    static func labAccount(_ a: LabAccount) -> Labgallery_V1_LabAccount {
        .init(name: a.name, displayName: a.displayName, region: a.region, attachedGallery: a.attachedGallery ?? "")
    }

    static func gallery(_ g: Gallery) -> Labgallery_V1_Gallery {
        .init(name: g.name, displayName: g.displayName, region: g.region, geography: g.geography)
    }

    static func image(_ i: Image) -> Labgallery_V1_Image {
        .init(
            name: i.name, displayName: i.displayName, osType: osType(i.osType), osState: osState(i.osState),
            source: source(i.source), sourceLab: i.sourceLab ?? "", sizeBytes: i.sizeBytes, sha256: i.sha256,
            region: i.region, author: i.author)
    }

    static func labAccountImage(_ i: LabAccountImage) -> Labgallery_V1_LabAccountImage {
        .init(
            image: image(i.image), enabled: i.enabled, available: i.available,
            unavailableReason: i.unavailable?.message ?? "")
    }

    static func lab(_ l: Lab) -> Labgallery_V1_Lab {
        .init(name: l.name, displayName: l.displayName, templateImage: l.templateImage)
    }

    static func roleAssignment(_ r: RoleAssignment) -> Labgallery_V1_RoleAssignment {
        .init(principal: r.principal, role: r.role)
    }

    static func replicationStatus(_ s: ReplicationStatus) -> Labgallery_V1_ReplicationStatus {
        .init(
            image: s.image, aggregatedState: replicationState(s.aggregatedState),
            regions: s.regions.map(regionReplication),
            deleted: s.deleted)
    }

    static func regionReplication(_ r: RegionReplication) -> Labgallery_V1_RegionReplication {
        .init(
            region: r.region, state: replicationState(r.state), bytesCopied: r.bytesCopied, bytesTotal: r.bytesTotal,
            progressPercent: Double(r.progressPercent), error: r.error ?? "", attempts: Int32(clamping: r.attempts))
    }

    static func osType(_ t: OSType) -> Labgallery_V1_OsType {
        switch t {
        case .windows: .windows
        case .linux: .linux
        }
    }

    static func osState(_ s: OSState) -> Labgallery_V1_OsState {
        switch s {
        case .generalized: .generalized
        case .specialized: .specialized
        }
    }

    static func source(_ s: ImageSource) -> Labgallery_V1_ImageSource {
        switch s {
        case .uploaded: .uploaded
        case .savedFromLab: .savedFromLab
        }
    }

    static func replicationState(_ s: ReplicationState) -> Labgallery_V1_ReplicationState {
        switch s {
        case .pending: .pending
        case .replicating: .replicating
        case .completed: .completed
        case .failed: .failed
        }
    }

    // MARK: proto → core

    static func osType(_ t: Labgallery_V1_OsType) -> OSType? {
        switch t {
        case .windows: .windows
        case .linux: .linux
        default: nil
        }
    }

    static func osState(_ s: Labgallery_V1_OsState) -> OSState? {
        switch s {
        case .generalized: .generalized
        case .specialized: .specialized
        default: nil
        }
    }

    static func uploadHeader(_ h: Labgallery_V1_UploadImageRequest.Header) -> ImageUploadHeader {
        ImageUploadHeader(
            gallery: h.gallery, imageID: h.imageId, displayName: h.displayName,
            osType: osType(h.osType), osState: osState(h.osState), sha256: h.sha256)
    }

    static func gallerySetup(_ g: Labgallery_V1_CreateLabAccountRequest.OneOf_Gallery?) -> LabAccountGallerySetup {
        switch g {
        case nil: .none
        case .createGallery(let c)?: .create(galleryID: c.galleryId, displayName: c.displayName)
        case .attachGallery(let name)?: .attach(gallery: name)
        }
    }

    static func page(size: Int32, token: String) -> PageRequest {
        PageRequest(size: Int(size), token: token)
    }
}
