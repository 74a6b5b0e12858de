import Foundation

/// What the replication engine needs from persistence, and nothing more: its rows, the image a
/// job copies, and the few transactions of a job's life. Every method blocks (database): call it
/// from a job's thread or ``LabGalleryService/blocking(_:)``. The engine knows no use case and no
/// service; ``StorageReplicationStore`` implements this over any ``Storage``.
///
/// Every write of a row that carries a ``ReplicationRow/lease`` is fenced by it: it applies only
/// while that claim still holds the job, and reports the row as gone otherwise (the engine then
/// tells a lost lease from a deleted image with ``job(_:region:)``).
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

    // MARK: Fleet mode
    /// The image's replication rows, ordered by region; `nil` when the image is gone.
    func rows(of image: ImageName) throws(LabGalleryError) -> [ReplicationRow]?
    /// Whether the gallery exists (a gallery watch ends when another instance deletes it).
    func galleryExists(_ gallery: GalleryName) throws(LabGalleryError) -> Bool
    /// Claims up to `limit` runnable jobs (see ``StorageTransaction/claimReplications(owner:limit:leaseSeconds:)``).
    func claim(owner: String, limit: Int, lease: Duration) throws(LabGalleryError) -> [ReplicationRow]
    /// Renews `jobs`' leases; returns those still held.
    func renew(_ jobs: [LeasedJob], owner: String, lease: Duration) throws(LabGalleryError) -> [LeasedJob]
    /// Releases a lease still held; the job is claimable again after `notBefore` (at once when `nil`).
    func release(_ job: LeasedJob, notBefore: Duration?) throws(LabGalleryError)
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
        try write { tx in try put(row, tx) }
    }

    /// Writes `row`, fenced by its lease when it carries one.
    private func put(_ row: ReplicationRow, _ tx: any StorageTransaction) throws -> Bool {
        guard let lease = row.lease else { return try tx.updateReplication(row) }
        return try tx.updateReplication(row, fencedBy: lease)
    }

    /// Thrown inside a transaction whose row write did not apply, to roll back its other writes.
    private struct NotApplied: Error {}

    /// A write transaction whose row write may not apply: `body` throws ``NotApplied`` then, which
    /// rolls back its other writes, and the result is `nil`.
    private func fencedWrite<T>(_ body: (any StorageTransaction) throws -> T) throws(LabGalleryError) -> T? {
        do { return try storage.write(body) } catch is NotApplied { return nil } catch {
            throw LabGalleryError.wrap(error, "database write failed")
        }
    }

    /// Writes `row` inside `tx`, or throws ``NotApplied``.
    private func require(_ row: ReplicationRow, _ tx: any StorageTransaction) throws {
        guard try put(row, tx) else { throw NotApplied() }
    }

    public func completeSharing(_ row: ReplicationRow, sha256: String) throws(LabGalleryError) -> ReplicationRow?? {
        try fencedWrite { tx -> ReplicationRow? in
            guard let blob = try layout.liveBlobPath(region: row.record.region, sha256: sha256, tx) else { return nil }
            var done = row
            done.blobPath = blob
            done.record.state = .completed
            done.record.bytesCopied = done.record.bytesTotal
            done.record.error = nil
            done.partialPath = nil
            try require(done, tx)
            return done
        }
    }

    public func nameReplica(_ row: ReplicationRow, sha256: String, size: Int64) throws(LabGalleryError) -> (
        path: String, shared: Bool
    )? {
        let region = row.record.region
        return try fencedWrite { tx in
            if let existing = try layout.liveBlobPath(region: region, sha256: sha256, tx) { return (existing, true) }
            let path = row.blobPath ?? layout.newBlobPath(region: region, sha256: sha256)
            if try tx.blob(path) == nil {
                try tx.insertBlob(
                    BlobRecord(path: path, region: region, sha256: sha256, sizeBytes: size, state: .writing))
            }
            var named = row
            named.blobPath = path
            try require(named, tx)
            return (path, false)
        }
    }

    public func complete(_ row: ReplicationRow, blob: String) throws(LabGalleryError) -> Bool {
        let done: Bool? = try fencedWrite { tx in
            try tx.setBlobState(.live, path: blob)
            try require(row, tx)
            return true
        }
        return done != nil
    }

    public func blobState(_ path: String) throws(LabGalleryError) -> BlobRecord.State? {
        try read { tx in try tx.blob(path)?.state }
    }

    public func rows(of image: ImageName) throws(LabGalleryError) -> [ReplicationRow]? {
        try read { tx in try tx.image(image) == nil ? nil : try tx.replicationRows(of: image) }
    }

    public func galleryExists(_ gallery: GalleryName) throws(LabGalleryError) -> Bool {
        try read { tx in try tx.gallery(gallery) != nil }
    }

    public func claim(owner: String, limit: Int, lease: Duration) throws(LabGalleryError) -> [ReplicationRow] {
        try write { tx in try tx.claimReplications(owner: owner, limit: limit, leaseSeconds: lease.seconds) }
    }

    public func renew(_ jobs: [LeasedJob], owner: String, lease: Duration) throws(LabGalleryError) -> [LeasedJob] {
        try write { tx in try tx.renewReplicationLeases(jobs, owner: owner, leaseSeconds: lease.seconds) }
    }

    public func release(_ job: LeasedJob, notBefore: Duration?) throws(LabGalleryError) {
        _ = try write { tx in try tx.releaseReplicationLease(job, notBeforeSeconds: notBefore?.seconds) }
    }
}

extension Duration {
    /// The duration in (fractional) seconds.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
