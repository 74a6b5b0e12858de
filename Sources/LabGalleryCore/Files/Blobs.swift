import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The life cycle of content-addressed blobs (see ``BlobRecord``): storing new bytes once per
/// region, sharing them, and removing a blob only after its last reference is gone.
/// Everything here blocks (database, fsync): call it from ``LabGalleryService/blocking(_:)``
/// or a thread of its own.
extension LabGalleryService {
    /// Makes `writer`'s bytes a live blob of `region` and runs `reference` (which inserts the
    /// rows that point at the blob's path) in the same transaction that makes it live.
    ///
    /// When `region` already holds a live blob with this SHA-256 the new bytes are dropped and
    /// `reference` gets that blob: unchanged bytes are stored once. Otherwise a `writing` row is
    /// committed first, the file renamed into place (durably), then row and references committed
    /// together. Any failure or cancellation removes what was written; a crash in between leaves a
    /// `writing` row that start-up clears.
    func storeBlob<T>(
        _ writer: inout BlobWriter, region: String, sha256: String,
        reference: (String, any StorageTransaction) throws -> T
    ) throws(LabGalleryError) -> T {
        let size = writer.size
        let first: BlobPlacement<T>
        do throws(LabGalleryError) {
            try Self.checkCancellation()
            first = try write { tx in
                if let live = try liveBlobPath(region: region, sha256: sha256, tx) {
                    return .shared(try reference(live, tx))
                }
                let path = layout.newBlobPath(region: region, sha256: sha256)
                try tx.insertBlob(
                    BlobRecord(path: path, region: region, sha256: sha256, sizeBytes: size, state: .writing))
                return .new(path)
            }
        } catch {
            writer.discard()
            throw error
        }
        let path: String
        switch first {
        case .shared(let value):
            writer.discard()
            return value
        case .new(let p):
            path = p
        }
        do throws(LabGalleryError) {
            try Self.checkCancellation()
            try writer.commit(to: layout.url(path))
            try Self.checkCancellation()
            return try write { tx in
                try tx.setBlobState(.live, path: path)
                return try reference(path, tx)
            }
        } catch {
            writer.discard()
            abandonBlob(path)
            throw error
        }
    }

    /// The path of a live blob of `region` with these bytes, whose file exists; `nil` if none.
    func liveBlobPath(region: String, sha256: String, _ tx: any StorageTransaction) throws -> String? {
        try layout.liveBlobPath(region: region, sha256: sha256, tx)
    }

    /// Checks, inside a transaction that is about to reference it, that the blob at `path` is live
    /// and its file exists: DATA_LOSS otherwise (the database vouches for bytes that are gone).
    func requireLiveBlob(_ path: String, _ tx: any StorageTransaction) throws {
        if let blob = try tx.blob(path), blob.state != .live {
            throw LabGalleryError.internal(message: "blob \(path) is \(blob.state.rawValue), not live; retry")
        }
        guard access(layout.url(path).path, F_OK) == 0 else { throw LabGalleryError.missingBlob(path) }
    }

    /// Inside the transaction that removed references to `paths`: marks the blobs that no row
    /// references any more `doomed` and returns them, for ``collect(_:)`` after the commit.
    func release(_ paths: [String], _ tx: any StorageTransaction) throws -> [String] {
        var doomed: [String] = []
        for path in Set(paths).sorted() {
            guard let blob = try tx.blob(path), blob.state != .doomed, try tx.blobReferences(path) == 0 else {
                continue
            }
            try tx.setBlobState(.doomed, path: path)
            doomed.append(path)
        }
        return doomed
    }

    /// After the commit that doomed them: removes the blobs' files (durably), then their rows.
    /// A crash or failure here leaves `doomed` rows that start-up finishes.
    func collect(_ doomed: [String]) {
        for path in doomed {
            FileOps.removeDurably(layout.url(path))
            _ = try? write { tx in
                if try tx.blob(path)?.state == .doomed { try tx.deleteBlob(path: path) }
            }
        }
    }

    /// Removes a blob that was being written when its store failed (best effort; start-up
    /// clears what is left).
    func abandonBlob(_ path: String) {
        FileOps.removeDurably(layout.url(path))
        _ = try? write { tx in
            if try tx.blob(path)?.state == .writing, try tx.blobReferences(path) == 0 { try tx.deleteBlob(path: path) }
        }
    }

    /// Start-up: finishes every blob life cycle a crash interrupted. Unreferenced `writing` and
    /// `doomed` blobs (and any unreferenced `live` one) lose their file, then their row, except those
    /// `keep` accepts (fleet mode: another instance's work in progress). Returns the paths removed.
    func finishBlobLifeCycles(keep: (BlobRecord) -> Bool = { _ in false }) throws(LabGalleryError) -> [String] {
        let dead: [String] = try write { tx in
            var dead: [String] = []
            for blob in try tx.blobs() where try tx.blobReferences(blob.path) == 0 && !keep(blob) {
                // A `writing` blob named by a replica row is that job's to finish (it resumes).
                if blob.state != .doomed { try tx.setBlobState(.doomed, path: blob.path) }
                dead.append(blob.path)
            }
            return dead
        }
        collect(dead)
        return dead
    }
}

/// Where ``LabGalleryService/storeBlob(_:region:sha256:reference:)``'s first transaction left the bytes.
private enum BlobPlacement<T> {
    /// The region already had them: referenced, nothing new written.
    case shared(T)
    /// A new `writing` blob row at this path; the file goes there next.
    case new(String)
}
