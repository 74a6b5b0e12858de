import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What start-up recovery did (paths relative to the data directory).
public struct RecoveryReport: Sendable, Equatable {
    /// Temp files of interrupted uploads and copies (never committed, so never an image): deleted.
    public var removedTempFiles: [String]
    /// Blobs whose life cycle a crash interrupted (unreferenced `writing`/`doomed` rows): deleted.
    public var removedBlobs: [String]
    /// Files no database row names, moved under `lost+found/<time>/` (never deleted).
    public var lostAndFound: [String]
    /// Where ``lostAndFound`` went, relative to the data directory (`nil` if nothing moved).
    public var lostAndFoundDirectory: String?
}

/// What ``LabGalleryService/reconcileCatalog()`` found between the region catalog and the images.
public struct CatalogReconciliation: Sendable {
    /// New replication rows (image, region) for regions added to a geography since the image was stored.
    public var added: [(image: String, region: String)]
    /// Images stored in a region that is no longer in the catalog (``FsckReport`` reports them).
    public var imagesOutsideCatalog: [String]
}

/// The result of ``LabGalleryService/fsck()``: the database checked against the disk.
public struct FsckReport: Sendable, Equatable {
    /// Problems: bytes the database vouches for that are missing or damaged, images and replicas
    /// outside the region catalog. Any problem makes `labgallery-server fsck` exit non-zero.
    public var problems: [String]
    /// Harmless findings: files no row names (start-up moves them to `lost+found`).
    public var warnings: [String]
    /// Blobs whose SHA-256 was checked.
    public var blobsChecked: Int
    /// Bytes hashed.
    public var bytesChecked: Int64
    /// Whether the data directory is consistent.
    public var isClean: Bool { problems.isEmpty }
}

extension LabGalleryService {
    /// Start-up recovery, once before serving (never while uploads or copies run, and never from a
    /// second process against a live server's data directory):
    /// - deletes temp files of interrupted uploads and copies (`regions/*/tmp`, `labs/tmp`);
    /// - finishes blob life cycles a crash interrupted (see ``BlobRecord``);
    /// - moves every other file under `regions/` and `labs/` that no row names to
    ///   `lost+found/<time>/`, keeping its relative path: start-up never deletes what the
    ///   database does not know (a database restored from an older backup loses no newer image).
    ///
    /// `fleetGrace` (fleet mode): other instances may be running on the same data directory. Then
    /// nothing a live replication lease covers is touched (its partial replica, its `writing` blob:
    /// ``StorageTransaction/leasedReplicationFilePaths()``), and temp files, unreferenced `writing`
    /// blobs and unknown files modified within `fleetGrace` are left alone (an upload in progress on
    /// another instance); an unreferenced `writing` blob row whose file is not there yet is kept too.
    @discardableResult
    public func recoverFiles(fleetGrace: Duration? = nil) throws(LabGalleryError) -> RecoveryReport {
        let regions = regionNames()
        let layout = layout
        let young: (String) -> Bool = { path in
            fleetGrace.map { FileOps.modified(layout.url(path), within: $0) } ?? false
        }
        var temps: [String] = []
        for region in regions {
            temps += FileOps.files(under: layout.tempDirectory(region: region), relativeTo: layout.root)
        }
        temps += FileOps.files(under: layout.labTempDirectory, relativeTo: layout.root)
        temps = temps.filter { !young($0) }
        for t in temps { FileOps.removeQuietly(layout.url(t)) }

        let leased: Set<String> = fleetGrace == nil ? [] : try read { tx in try tx.leasedReplicationFilePaths() }
        let removed = try finishBlobLifeCycles { blob in
            guard fleetGrace != nil else { return false }
            if leased.contains(blob.path) { return true }
            return blob.state == .writing && (access(layout.url(blob.path).path, F_OK) != 0 || young(blob.path))
        }
        let known: Set<String> = try read { tx in
            Set(try tx.blobs().map(\.path)).union(try tx.referencedFilePaths()).union(try tx.partialFilePaths())
        }.union(leased)
        let unknown = storedFiles(regions).filter { !known.contains($0) && !young($0) }
        var directory: String?
        if !unknown.isEmpty {
            let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
            let dir = "lost+found/\(stamp)"
            for path in unknown {
                try FileOps.renameDurably(layout.url(path), to: layout.url("\(dir)/\(path)"))
            }
            directory = dir
        }
        return RecoveryReport(
            removedTempFiles: temps.sorted(), removedBlobs: removed, lostAndFound: unknown,
            lostAndFoundDirectory: directory)
    }

    /// Start-up: gives every image a replication row for each region its geography has now
    /// (a region added to the catalog gets PENDING rows, or COMPLETED ones where it already holds
    /// the bytes) and lists images whose region left the catalog (reported, never COMPLETED).
    /// Rows to regions that left the catalog are kept (their replicas are billed and reported by fsck).
    public func reconcileCatalog() throws(LabGalleryError) -> CatalogReconciliation {
        try write { tx in
            var added: [(image: String, region: String)] = []
            var outside: [String] = []
            for (stored, name) in try allImages(tx) {
                guard catalog.geography(of: stored.image.region) != nil else {
                    outside.append(name.description)
                    continue
                }
                let have = Set(try tx.replicationRows(of: name).map(\.record.region))
                for region in catalog.siblings(of: stored.image.region) where !have.contains(region) {
                    try tx.insertReplications([try replicationRow(for: stored.image, name: name, region: region, tx)])
                    added.append((name.description, region))
                }
            }
            return CatalogReconciliation(added: added, imagesOutsideCatalog: outside)
        }
    }

    /// Checks the database against the disk: every blob's file exists with its recorded size and
    /// SHA-256; every path an image, replica or lab names is a live blob; every image and replica
    /// region is in the catalog. Files no row names are warnings. Reads only; safe beside a
    /// running server (blobs are immutable once live).
    public func fsck() throws(LabGalleryError) -> FsckReport {
        var problems: [String] = []
        var warnings: [String] = []
        let (blobs, references, partials, images) = try read { tx in
            let images = try allImages(tx).map { stored, name in (stored, try tx.replicationRows(of: name)) }
            return (try tx.blobs(), try tx.referencedFilePaths(), try tx.partialFilePaths(), images)
        }
        let byPath = Dictionary(uniqueKeysWithValues: blobs.map { ($0.path, $0) })
        var checked = 0
        var bytes: Int64 = 0
        for blob in blobs where blob.state == .live {
            switch Self.hashFile(layout.url(blob.path)) {
            case .missing:
                problems.append(
                    "missing blob \(blob.path) (region \(blob.region), \(blob.sizeBytes) bytes): the database references it but the file is gone; restore it from a backup"
                )
            case .unreadable(let reason):
                problems.append("unreadable blob \(blob.path): \(reason)")
            case .hashed(let size, let sha):
                checked += 1
                bytes += size
                if size != blob.sizeBytes || sha != blob.sha256 {
                    problems.append(
                        "corrupt blob \(blob.path): \(size) bytes hashing to \(sha), expected \(blob.sizeBytes) bytes hashing to \(blob.sha256); restore it from a backup"
                    )
                }
            }
        }
        for path in references.sorted() where byPath[path]?.state != .live {
            if byPath[path] == nil, access(layout.url(path).path, F_OK) != 0 {
                problems.append(
                    "missing file \(path): referenced by the database, no blob row and no file; restore it from a backup"
                )
            } else if byPath[path] == nil {
                warnings.append("\(path) is referenced but has no blob row")
            }
        }
        for (stored, rows) in images {
            let name = stored.image.name
            guard catalog.geography(of: stored.image.region) != nil else {
                problems.append(
                    "image \(name) is stored in region \(stored.image.region), which is not in the region catalog; add the region back to the catalog (--regions) or delete the image"
                )
                continue
            }
            let targets = Set(catalog.siblings(of: stored.image.region))
            for row in rows where !targets.contains(row.record.region) {
                problems.append(
                    "image \(name) has a \(row.record.state.rawValue) replica in region \(row.record.region), which is no longer in its geography in the region catalog"
                )
            }
        }
        let known = Set(blobs.map(\.path)).union(references).union(partials)
        for f in storedFiles(regionNames()) where !known.contains(f) {
            warnings.append("unknown file \(f): no database row names it (the next start moves it to lost+found)")
        }
        return FsckReport(problems: problems, warnings: warnings, blobsChecked: checked, bytesChecked: bytes)
    }

    /// The region directories under `regions/`, sorted.
    func regionNames() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: layout.regionsURL.path)) ?? []).sorted()
    }

    /// Every file a row could name, sorted: blobs and partial replicas of `regions`, and lab
    /// templates of data directories from before content-addressed blobs (temp files excluded).
    private func storedFiles(_ regions: [String]) -> [String] {
        var files: [String] = []
        for region in regions {
            files += FileOps.files(under: layout.blobDirectory(region: region), relativeTo: layout.root)
            files += FileOps.files(under: layout.partialDirectory(region: region), relativeTo: layout.root)
        }
        files += FileOps.files(under: layout.labsURL, relativeTo: layout.root).filter { !$0.hasPrefix("labs/tmp/") }
        return files.sorted()
    }

    /// Every image with its parsed name, gallery by gallery.
    private func allImages(_ tx: any StorageTransaction) throws -> [(StoredImage, ImageName)] {
        try tx.galleries(after: nil, limit: nil).flatMap { gallery in
            try tx.images(in: try GalleryName(parsing: gallery.name, field: "name"), after: nil, limit: nil).map {
                stored in
                (stored, try ImageName(parsing: stored.image.name, field: "name"))
            }
        }
    }

    private enum FileHash {
        case missing
        case unreadable(String)
        case hashed(Int64, String)
    }

    private static func hashFile(_ url: URL) -> FileHash {
        let fd = Glibc.open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT ? .missing : .unreadable(String(cString: strerror(errno))) }
        defer { close(fd) }
        let hash = HashPipeline()
        var offset: Int64 = 0
        while true {
            let piece = hash.fill { slot in FileOps.readSome(fd, into: slot, at: offset, limit: Int64(slot.count)) }
            if piece.isEmpty { break }
            offset += Int64(piece.count)
        }
        return .hashed(offset, hash.finish())
    }
}
