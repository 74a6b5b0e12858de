import Foundation

/// Settings of the domain core.
public struct LabGalleryConfiguration: Sendable, Equatable {
    /// Region → geography catalog (default: the built-in one; see ``RegionCatalog/init(contentsOf:)``).
    public var regionCatalog: RegionCatalog
    /// Which images may be lab templates (default `.any`; `.generalizedOnly` restores the older rule).
    public var templateImages: TemplateImagePolicy
    /// Creates a configuration.
    public init(regionCatalog: RegionCatalog = .builtIn, templateImages: TemplateImagePolicy = .any) {
        self.regionCatalog = regionCatalog; self.templateImages = templateImages
    }
}

/// What startup recovery removed (paths relative to the data directory).
public struct RecoveryReport: Sendable, Equatable {
    /// Temp files of interrupted uploads and copies.
    public var removedTempFiles: [String]
    /// Final-looking blobs/templates that no database row references (crash between rename and commit).
    public var removedOrphanFiles: [String]
}

/// The gallery domain: every use case of the gallery API, each one storage transaction.
///
/// Use cases take raw request values (resource names as strings, ids, enums) and validate them,
/// throwing ``LabGalleryError`` with the request field named, so the server maps fields 1:1.
/// Every use case takes the authenticated `caller` and enforces the role it needs:
/// admin for lab accounts, galleries, attach/detach, enable/disable, upload and image deletion;
/// educator for creating/deleting labs and saving template images; reader for Get/List.
///
/// All methods are synchronous and thread-safe (the service is immutable; the database pool
/// serializes writes). Call them from async handlers directly, or hop to a thread pool for big copies.
public final class LabGalleryService: Sendable {
    /// The data directory layout.
    public let layout: DataLayout
    /// The persistence behind the use cases.
    public let storage: any Storage
    /// Settings.
    public let configuration: LabGalleryConfiguration
    /// Where image creation and deletion are reported to the replication engine (if one runs).
    public let replicationHooks = ReplicationHooks()

    /// The region catalog in use.
    public var catalog: RegionCatalog { configuration.regionCatalog }

    /// Creates a service over an already opened storage.
    public init(storage: any Storage, layout: DataLayout, configuration: LabGalleryConfiguration = .init()) {
        self.storage = storage; self.layout = layout; self.configuration = configuration
    }

    /// Opens the data directory (creating it), the SQLite database `<data-dir>/labgallery.sqlite`
    /// (migrating its schema), and returns the service. Does not touch files: the server calls
    /// ``recoverFiles()`` once at startup, before serving.
    public static func open(dataDirectory: URL, configuration: LabGalleryConfiguration = .init()) throws(LabGalleryError) -> LabGalleryService {
        let layout = DataLayout(root: dataDirectory)
        try FileOps.createDirectory(layout.root)
        do {
            let storage = try SQLiteStorage(path: layout.databaseURL.path)
            return LabGalleryService(storage: storage, layout: layout, configuration: configuration)
        } catch {
            throw .internal(message: "cannot open database \(layout.databaseURL.path): \(error)")
        }
    }

    /// Startup recovery: deletes temp files of interrupted uploads/copies and blob or template
    /// files that no row references. Call it once at startup before serving requests — never
    /// while uploads are running (their temp files would be deleted), and not from a second process
    /// (e.g. token management commands) against a live server's data directory.
    @discardableResult
    public func recoverFiles() throws(LabGalleryError) -> RecoveryReport {
        let fm = FileManager.default
        let regions = (try? fm.contentsOfDirectory(atPath: layout.regionsURL.path)) ?? []
        var temps: [String] = []
        for region in regions.sorted() {
            temps += FileOps.files(under: layout.tempDirectory(region: region), relativeTo: layout.root)
        }
        temps += FileOps.files(under: layout.labTempDirectory, relativeTo: layout.root)
        for t in temps { FileOps.removeQuietly(layout.url(t)) }

        let referenced = try read { try $0.referencedFilePaths() }
        var candidates: [String] = []
        for region in regions.sorted() {
            candidates += FileOps.files(under: layout.blobDirectory(region: region), relativeTo: layout.root)
        }
        for region in regions.sorted() {
            // Partial replicas: kept while a replication row references them (the job resumes from them).
            candidates += FileOps.files(under: layout.partialDirectory(region: region), relativeTo: layout.root)
        }
        candidates += FileOps.files(under: layout.labsURL, relativeTo: layout.root)
        let orphans = candidates.filter { !referenced.contains($0) && !$0.hasPrefix("labs/tmp/") }.sorted()
        for o in orphans { FileOps.removeQuietly(layout.url(o)) }
        return RecoveryReport(removedTempFiles: temps.sorted(), removedOrphanFiles: orphans)
    }

    // MARK: - Transactions with domain errors

    /// A read transaction; non-domain errors become `.internal`.
    func read<T>(_ body: (any StorageTransaction) throws -> T) throws(LabGalleryError) -> T {
        do { return try storage.read(body) } catch { throw LabGalleryError.wrap(error, "database read failed") }
    }

    /// A write transaction; non-domain errors become `.internal`.
    func write<T>(_ body: (any StorageTransaction) throws -> T) throws(LabGalleryError) -> T {
        do { return try storage.write(body) } catch { throw LabGalleryError.wrap(error, "database write failed") }
    }

    // MARK: - Shared lookups (throwing notFound / failedPrecondition with actionable messages)

    /// The gallery with its geography derived from the current catalog (stored value if the region vanished).
    func withGeography(_ g: Gallery) -> Gallery {
        var g = g
        if let geo = catalog.geography(of: g.region) { g.geography = geo }
        return g
    }

    func requireLabAccount(_ name: LabAccountName, _ tx: any StorageTransaction) throws -> LabAccount {
        guard let a = try tx.labAccount(name) else { throw LabGalleryError.notFound(name.description) }
        return a
    }

    func requireGallery(_ name: GalleryName, _ tx: any StorageTransaction) throws -> Gallery {
        guard let g = try tx.gallery(name) else { throw LabGalleryError.notFound(name.description) }
        return withGeography(g)
    }

    func requireImage(_ name: ImageName, _ tx: any StorageTransaction) throws -> StoredImage {
        guard let i = try tx.image(name) else {
            if try tx.gallery(name.gallery) == nil { throw LabGalleryError.notFound(name.gallery.description) }
            throw LabGalleryError.notFound(name.description)
        }
        return i
    }

    func requireLab(_ name: LabName, _ tx: any StorageTransaction) throws -> StoredLab {
        guard let l = try tx.lab(name) else { throw LabGalleryError.notFound(name.description) }
        return l
    }

    /// The attached gallery of `account`, or FAILED_PRECONDITION saying to attach one.
    func requireAttachedGallery(_ account: LabAccount) throws -> GalleryName {
        guard let g = account.attachedGallery else {
            throw LabGalleryError.failedPrecondition(message: "\(account.name) has no gallery attached; attach one first with AttachGallery")
        }
        return try GalleryName(parsing: g, field: "attached_gallery")
    }

    // MARK: - Storing an image (uploads and template saves)

    /// Commits `writer` to a fresh blob path in the image's home region, then inserts the image row
    /// and its PENDING replication records in one transaction (after `check`). If the transaction
    /// fails the blob is removed; if the process dies in between, recovery removes it.
    func storeImage(_ image: Image, name: ImageName, writer: inout BlobWriter,
                    check: (any StorageTransaction) throws -> Void = { _ in }) throws(LabGalleryError) -> Image {
        let relative = layout.newImageBlobPath(region: image.region, image: name)
        let url = layout.url(relative)
        try writer.commit(to: url)
        do {
            let stored = try write { tx in
                let gallery = try requireGallery(name.gallery, tx)
                guard gallery.region == image.region else {
                    throw LabGalleryError.failedPrecondition(message: "\(gallery.name) was re-created in another region while \(name) was being written; retry")
                }
                if try tx.image(name) != nil { throw LabGalleryError.alreadyExists(name.description) }
                try check(tx)
                try tx.insertImage(StoredImage(image: image, blobPath: relative))
                let replicas = catalog.siblings(of: gallery.region).map {
                    RegionReplication(region: $0, state: .pending, bytesCopied: 0, bytesTotal: image.sizeBytes, error: nil, attempts: 0)
                }
                try tx.insertReplications(replicas, for: name)
                return image
            }
            replicationHooks.imageStored(name)
            return stored
        } catch {
            FileOps.removeQuietly(url)
            throw error
        }
    }
}
