import Foundation
import GRDB

// GRDB records of the tables the replication engine and the blob life cycle use: typed columns
// (`Columns`) instead of string subscripts, and the conversions to the domain's types in one place.

/// A row of `replication`: one job of an image to one region.
struct ReplicationRecord: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "replication"

    /// The table's columns.
    enum Columns: String, ColumnExpression {
        case galleryId, imageId, region, state, bytesCopied, bytesTotal, error, attempts, partialPath, blobPath
    }

    var galleryId: String
    var imageId: String
    var region: String
    var state: String
    var bytesCopied: Int64
    var bytesTotal: Int64
    var error: String?
    var attempts: Int
    var partialPath: String?
    var blobPath: String?

    init(_ row: ReplicationRow) {
        let r = row.record
        galleryId = row.image.gallery.id
        imageId = row.image.id
        region = r.region
        state = r.state.rawValue
        bytesCopied = r.bytesCopied
        bytesTotal = r.bytesTotal
        error = r.error
        attempts = r.attempts
        partialPath = row.partialPath
        blobPath = row.blobPath
    }

    /// The engine's view of the row; INTERNAL for a state this version does not know.
    func domain() throws -> ReplicationRow {
        let image = ImageName(gallery: GalleryName(id: galleryId), id: imageId)
        guard let state = ReplicationState(rawValue: state) else {
            throw LabGalleryError.internal(message: "corrupt replication row of \(image): unknown state")
        }
        let record = RegionReplication(
            region: region, state: state, bytesCopied: bytesCopied, bytesTotal: bytesTotal,
            error: error, attempts: attempts)
        return ReplicationRow(image: image, record: record, partialPath: partialPath, blobPath: blobPath)
    }

    /// The rows of one image.
    static func of(_ image: ImageName) -> QueryInterfaceRequest<ReplicationRecord> {
        filter(Columns.galleryId == image.gallery.id && Columns.imageId == image.id)
    }
}

/// A row of `blob`: one file of a region's blob store (see ``BlobRecord``).
struct BlobRow: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "blob"

    /// The table's columns.
    enum Columns: String, ColumnExpression {
        case path, region, sha256, sizeBytes, state
    }

    var path: String
    var region: String
    var sha256: String
    var sizeBytes: Int64
    var state: String

    init(_ blob: BlobRecord) {
        path = blob.path
        region = blob.region
        sha256 = blob.sha256
        sizeBytes = blob.sizeBytes
        state = blob.state.rawValue
    }

    /// The domain's blob; INTERNAL for a state this version does not know.
    func domain() throws -> BlobRecord {
        guard let state = BlobRecord.State(rawValue: state) else {
            throw LabGalleryError.internal(message: "corrupt blob row \(path): unknown state")
        }
        return BlobRecord(path: path, region: region, sha256: sha256, sizeBytes: sizeBytes, state: state)
    }
}

/// A row of `gallery`.
struct GalleryRow: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "gallery"
    enum Columns: String, ColumnExpression { case id, displayName, region, geography }
    var id: String
    var displayName: String
    var region: String
    var geography: String

    var domain: Gallery {
        Gallery(name: GalleryName(id: id).description, displayName: displayName, region: region, geography: geography)
    }
}

/// A row of `labAccount`.
struct LabAccountRow: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "labAccount"
    enum Columns: String, ColumnExpression { case id, displayName, region, attachedGalleryId }
    var id: String
    var displayName: String
    var region: String
    var attachedGalleryId: String?

    var domain: LabAccount {
        LabAccount(
            name: LabAccountName(id: id).description, displayName: displayName, region: region,
            attachedGallery: attachedGalleryId.map { GalleryName(id: $0).description })
    }
}

/// A row of `roleAssignment`.
struct RoleAssignmentRow: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "roleAssignment"
    enum Columns: String, ColumnExpression { case galleryId, principal, role }
    var galleryId: String
    var principal: String
    var role: String
}

/// A row of `image`.
struct ImageRow: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "image"
    enum Columns: String, ColumnExpression {
        case galleryId, id, displayName, osType, osState, source, sourceLab, sizeBytes, sha256, region, author, blobPath
    }
    var galleryId: String
    var id: String
    var displayName: String
    var osType: String
    var osState: String
    var source: String
    var sourceLab: String?
    var sizeBytes: Int64
    var sha256: String
    var region: String
    var author: String
    var blobPath: String

    init(_ stored: StoredImage, name: ImageName) {
        let i = stored.image
        galleryId = name.gallery.id
        id = name.id
        displayName = i.displayName
        osType = i.osType.rawValue
        osState = i.osState.rawValue
        source = i.source.rawValue
        sourceLab = i.sourceLab
        sizeBytes = i.sizeBytes
        sha256 = i.sha256
        region = i.region
        author = i.author
        blobPath = stored.blobPath
    }

    func domain() throws -> StoredImage {
        let name = ImageName(gallery: GalleryName(id: galleryId), id: id)
        guard let osType = OSType(rawValue: osType), let osState = OSState(rawValue: osState),
            let source = ImageSource(rawValue: source)
        else {
            throw LabGalleryError.internal(message: "corrupt image row \(name): unknown enum value")
        }
        let image = Image(
            name: name.description, displayName: displayName, osType: osType, osState: osState, source: source,
            sourceLab: sourceLab, sizeBytes: sizeBytes, sha256: sha256, region: region, author: author)
        return StoredImage(image: image, blobPath: blobPath)
    }
}

/// A row of `imageDisabled`: an image disabled for a lab account.
struct ImageDisabledRow: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "imageDisabled"
    enum Columns: String, ColumnExpression { case labAccountId, galleryId, imageId }
    var labAccountId: String
    var galleryId: String
    var imageId: String
}

/// A row of `lab`.
struct LabRow: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "lab"
    enum Columns: String, ColumnExpression {
        case labAccountId, id, displayName, templateGalleryId, templateImageId, templateOsType, templatePath
    }
    var labAccountId: String
    var id: String
    var displayName: String
    var templateGalleryId: String
    var templateImageId: String
    var templateOsType: String
    var templatePath: String

    var name: LabName { LabName(labAccount: LabAccountName(id: labAccountId), id: id) }

    func domain() throws -> StoredLab {
        let template = ImageName(gallery: GalleryName(id: templateGalleryId), id: templateImageId)
        guard let osType = OSType(rawValue: templateOsType) else {
            throw LabGalleryError.internal(message: "corrupt lab row \(name): unknown OS type")
        }
        return StoredLab(
            lab: Lab(name: name.description, displayName: displayName, templateImage: template.description),
            templatePath: templatePath, templateOSType: osType)
    }
}

/// A row of `token`: a token's record with the SHA-256 of its secret (never the secret).
struct TokenRow: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "token"
    enum Columns: String, ColumnExpression { case id, secretHash, principal, role, createdAt, revoked }
    var id: String
    var secretHash: String
    var principal: String
    var role: String
    var createdAt: Date
    var revoked: Bool

    func domain() throws -> TokenInfo {
        guard let role = Role(rawValue: role) else {
            throw LabGalleryError.internal(message: "corrupt token row \(id): unknown role")
        }
        return TokenInfo(id: id, principal: principal, role: role, createdAt: createdAt, revoked: revoked)
    }
}
