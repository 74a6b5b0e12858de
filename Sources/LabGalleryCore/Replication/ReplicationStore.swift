import Foundation
import GRDB
import Synchronization

/// A replication row as the engine sees it: the public record plus the files it owns.
public struct ReplicationRow: Hashable, Sendable {
    /// The replicated image.
    public var image: ImageName
    /// State and progress of the copy to `record.region`.
    public var record: RegionReplication
    /// The partial replica being written (relative to the data directory), kept across restarts so a
    /// job resumes from `record.bytesCopied`; `nil` when no copy is in progress.
    public var partialPath: String?
    /// The finished replica (relative path), set when COMPLETED.
    public var blobPath: String?
    /// Memberwise initializer.
    public init(image: ImageName, record: RegionReplication, partialPath: String?, blobPath: String?) {
        self.image = image; self.record = record; self.partialPath = partialPath; self.blobPath = blobPath
    }
    /// Every file of the row (partial and finished replica).
    public var files: [String] { [partialPath, blobPath].compactMap { $0 } }
}

extension SQLiteTransaction {
    private func replicationRow(_ row: Row) throws -> ReplicationRow {
        let image = ImageName(gallery: GalleryName(id: row["galleryId"]), id: row["imageId"])
        guard let state = ReplicationState(rawValue: row["state"]) else {
            throw LabGalleryError.internal(message: "corrupt replication row of \(image): unknown state")
        }
        let record = RegionReplication(region: row["region"], state: state, bytesCopied: row["bytesCopied"],
                                       bytesTotal: row["bytesTotal"], error: row["error"], attempts: row["attempts"])
        return ReplicationRow(image: image, record: record, partialPath: row["partialPath"], blobPath: row["blobPath"])
    }

    func replicationRows(of image: ImageName) throws -> [ReplicationRow] {
        try Row.fetchAll(db, sql: "SELECT * FROM replication WHERE galleryId = ? AND imageId = ? ORDER BY region",
                         arguments: [image.gallery.id, image.id]).map(replicationRow)
    }

    func allReplicationRows() throws -> [ReplicationRow] {
        try Row.fetchAll(db, sql: "SELECT * FROM replication ORDER BY galleryId, imageId, region").map(replicationRow)
    }

    func updateReplication(_ row: ReplicationRow) throws -> Bool {
        let r = row.record
        try db.execute(sql: """
            UPDATE replication SET state = ?, bytesCopied = ?, bytesTotal = ?, error = ?, attempts = ?, partialPath = ?, blobPath = ?
            WHERE galleryId = ? AND imageId = ? AND region = ?
            """, arguments: [r.state.rawValue, r.bytesCopied, r.bytesTotal, r.error, r.attempts, row.partialPath, row.blobPath,
                             row.image.gallery.id, row.image.id, r.region])
        return db.changesCount > 0
    }
}

extension DataLayout {
    /// Partial replicas of a region: `<data-dir>/regions/<region>/partial`. Unlike `tmp`, startup
    /// recovery keeps the files a replication row references (jobs resume from them).
    public func partialDirectory(region: String) -> URL {
        regionsURL.appendingPathComponent(region).appendingPathComponent("partial")
    }

    /// A fresh relative path for a partial replica of `image` in `region`.
    func newReplicaPartialPath(region: String, image: ImageName) -> String {
        "regions/\(region)/partial/\(image.gallery.id)/\(image.id).\(UUID().uuidString.lowercased()).part"
    }

    /// Absolute URL of a path relative to the data directory (public for the engine's callers and tests).
    public func absoluteURL(_ relativePath: String) -> URL { url(relativePath) }
}

/// How the use cases tell the replication engine about new and deleted images. Without an engine
/// (core-only tests, token commands) the calls do nothing and replication rows simply stay PENDING.
public final class ReplicationHooks: Sendable {
    /// Receives the events; set by ``ReplicationEngine/start()``.
    public protocol Observer: AnyObject, Sendable {
        /// An image and its replication rows (as committed) were stored.
        func imageStored(_ image: ImageName, rows: [ReplicationRow])
        /// An image (and its rows) was deleted; its jobs must stop writing.
        func imageDeleted(_ image: ImageName)
        /// A gallery was deleted (after ``imageDeleted(_:)`` for each of its images).
        func galleryDeleted(_ gallery: GalleryName)
    }

    private let observer = Mutex<(any Observer)?>(nil)

    init() {}

    /// Installs (or with `nil`, removes) the observer.
    public func setObserver(_ o: (any Observer)?) { observer.withLock { $0 = o } }

    func imageStored(_ image: ImageName, rows: [ReplicationRow]) { observer.withLock { $0 }?.imageStored(image, rows: rows) }
    func imageDeleted(_ image: ImageName) { observer.withLock { $0 }?.imageDeleted(image) }
    func galleryDeleted(_ gallery: GalleryName) { observer.withLock { $0 }?.galleryDeleted(gallery) }
}
