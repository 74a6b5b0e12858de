import Foundation

/// What the replication engine needs from persistence, and nothing more: its rows, the image a
/// job copies, and the few transactions of a job's life. Every method blocks (database): call it
/// from a job's thread or ``LabGalleryService/blocking(_:)``. The engine knows no use case and no
/// service; ``StorageReplicationStore`` implements this over any ``Storage``.
public protocol ReplicationStore: Sendable {
    /// Where the files are.
    var layout: DataLayout { get }
    /// Every replication row, ordered by gallery, image, region (engine start).
    func allRows() throws(LabGalleryError) -> [ReplicationRow]
    /// A job's row and the image it copies, or `nil` when either is gone.
    func job(_ image: ImageName, region: String) throws(LabGalleryError) -> (row: ReplicationRow, source: StoredImage)?
    /// Writes the row; `false` if it is gone (its image was deleted).
    func update(_ row: ReplicationRow) throws(LabGalleryError) -> Bool
    /// When `region` holds a live blob with these bytes: writes `row` COMPLETED sharing it and
    /// returns the row as written. `.some(nil)`: no such blob; `nil`: the row is gone.
    func completeSharing(_ row: ReplicationRow, sha256: String) throws(LabGalleryError) -> ReplicationRow??
    /// Before a verified replica is renamed into place: a live blob of the region with these bytes
    /// to share (`shared`), or a `writing` blob row at the row's (or a new) path, recorded in the
    /// row. `nil`: the row is gone.
    func nameReplica(_ row: ReplicationRow, sha256: String, size: Int64) throws(LabGalleryError) -> (
        path: String, shared: Bool
    )?
    /// Makes `blob` live and writes the COMPLETED row in one transaction; `false` if the row is gone.
    func complete(_ row: ReplicationRow, blob: String) throws(LabGalleryError) -> Bool
    /// The state of the blob row at `path`, `nil` if there is none.
    func blobState(_ path: String) throws(LabGalleryError) -> BlobRecord.State?
}

/// ``ReplicationStore`` over a ``Storage`` (the SQL lives in the storage).
public struct StorageReplicationStore: ReplicationStore {
    /// The storage.
    public let storage: any Storage
    /// The data directory.
    public let layout: DataLayout

    /// Creates the store.
    public init(storage: any Storage, layout: DataLayout) {
        self.storage = storage
        self.layout = layout
    }

    private func read<T>(_ body: (any StorageTransaction) throws -> T) throws(LabGalleryError) -> T {
        do { return try storage.read(body) } catch { throw LabGalleryError.wrap(error, "database read failed") }
    }

    private func write<T>(_ body: (any StorageTransaction) throws -> T) throws(LabGalleryError) -> T {
        do { return try storage.write(body) } catch { throw LabGalleryError.wrap(error, "database write failed") }
    }

    public func allRows() throws(LabGalleryError) -> [ReplicationRow] {
        try read { tx in try tx.allReplicationRows() }
    }

    public func job(_ image: ImageName, region: String) throws(LabGalleryError) -> (
        row: ReplicationRow, source: StoredImage
    )? {
        try read { tx in
            guard let row = try tx.replicationRows(of: image).first(where: { $0.record.region == region }),
                let source = try tx.image(image)
            else { return nil }
            return (row, source)
        }
    }

    public func update(_ row: ReplicationRow) throws(LabGalleryError) -> Bool {
        try write { tx in try tx.updateReplication(row) }
    }

    public func completeSharing(_ row: ReplicationRow, sha256: String) throws(LabGalleryError) -> ReplicationRow?? {
        try write { tx -> ReplicationRow?? in
            guard let blob = try layout.liveBlobPath(region: row.record.region, sha256: sha256, tx) else {
                return .some(nil)
            }
            var done = row
            done.blobPath = blob
            done.record.state = .completed
            done.record.bytesCopied = done.record.bytesTotal
            done.record.error = nil
            done.partialPath = nil
            return try tx.updateReplication(done) ? .some(done) : nil
        }
    }

    public func nameReplica(_ row: ReplicationRow, sha256: String, size: Int64) throws(LabGalleryError) -> (
        path: String, shared: Bool
    )? {
        let region = row.record.region
        return try write { tx in
            if let existing = try layout.liveBlobPath(region: region, sha256: sha256, tx) { return (existing, true) }
            let path = row.blobPath ?? layout.newBlobPath(region: region, sha256: sha256)
            if try tx.blob(path) == nil {
                try tx.insertBlob(
                    BlobRecord(path: path, region: region, sha256: sha256, sizeBytes: size, state: .writing))
            }
            var named = row
            named.blobPath = path
            return try tx.updateReplication(named) ? (path, false) : nil
        }
    }

    public func complete(_ row: ReplicationRow, blob: String) throws(LabGalleryError) -> Bool {
        try write { tx in
            try tx.setBlobState(.live, path: blob)
            return try tx.updateReplication(row)
        }
    }

    public func blobState(_ path: String) throws(LabGalleryError) -> BlobRecord.State? {
        try read { tx in try tx.blob(path)?.state }
    }
}
