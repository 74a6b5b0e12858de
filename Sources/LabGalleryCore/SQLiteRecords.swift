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
        galleryId = row.image.gallery.id; imageId = row.image.id; region = r.region; state = r.state.rawValue
        bytesCopied = r.bytesCopied; bytesTotal = r.bytesTotal; error = r.error; attempts = r.attempts
        partialPath = row.partialPath; blobPath = row.blobPath
    }

    /// The engine's view of the row; INTERNAL for a state this version does not know.
    func domain() throws -> ReplicationRow {
        let image = ImageName(gallery: GalleryName(id: galleryId), id: imageId)
        guard let state = ReplicationState(rawValue: state) else {
            throw LabGalleryError.internal(message: "corrupt replication row of \(image): unknown state")
        }
        let record = RegionReplication(region: region, state: state, bytesCopied: bytesCopied, bytesTotal: bytesTotal,
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
        path = blob.path; region = blob.region; sha256 = blob.sha256; sizeBytes = blob.sizeBytes; state = blob.state.rawValue
    }

    /// The domain's blob; INTERNAL for a state this version does not know.
    func domain() throws -> BlobRecord {
        guard let state = BlobRecord.State(rawValue: state) else {
            throw LabGalleryError.internal(message: "corrupt blob row \(path): unknown state")
        }
        return BlobRecord(path: path, region: region, sha256: sha256, sizeBytes: sizeBytes, state: state)
    }
}
