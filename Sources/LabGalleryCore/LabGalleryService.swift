import Blocking
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Settings of the domain core.
public struct LabGalleryConfiguration: Sendable, Equatable {
    /// Region → geography catalog (default: the built-in one; see ``RegionCatalog/init(contentsOf:)``).
    public var regionCatalog: RegionCatalog
    /// Which images may be lab templates (default `.any`; `.generalizedOnly` restores the older rule).
    public var templateImages: TemplateImagePolicy
    /// The most replication watch streams open at once, in all (default 10,000); past it a new
    /// watch is RESOURCE_EXHAUSTED.
    public var maxWatchers: Int
    /// The most replication watch streams one caller (principal) has open at once (default 100).
    public var maxWatchersPerCaller: Int
    /// The most replication watch streams one connection has open at once (default 100), so a
    /// peer cannot pin streams past it by spreading them over callers.
    public var maxWatchersPerConnection: Int
    /// Default of ``maxWatchers``.
    public static let defaultMaxWatchers = 10_000
    /// Default of ``maxWatchersPerCaller``.
    public static let defaultMaxWatchersPerCaller = 100
    /// Default of ``maxWatchersPerConnection``.
    public static let defaultMaxWatchersPerConnection = 100
    /// Creates a configuration.
    public init(
        regionCatalog: RegionCatalog = .builtIn, templateImages: TemplateImagePolicy = .any,
        maxWatchers: Int = LabGalleryConfiguration.defaultMaxWatchers,
        maxWatchersPerCaller: Int = LabGalleryConfiguration.defaultMaxWatchersPerCaller,
        maxWatchersPerConnection: Int = LabGalleryConfiguration.defaultMaxWatchersPerConnection
    ) {
        self.regionCatalog = regionCatalog
        self.templateImages = templateImages
        self.maxWatchers = maxWatchers
        self.maxWatchersPerCaller = maxWatchersPerCaller
        self.maxWatchersPerConnection = maxWatchersPerConnection
    }
}

/// The gallery domain: every use case of the gallery API, each one storage transaction.
///
/// Use cases take raw request values (resource names as strings, ids, enums) and validate them,
/// throwing ``LabGalleryError`` with the request field named, so the server maps fields 1:1.
/// Every use case takes the authenticated `caller` and enforces the role it needs:
/// admin for lab accounts, galleries, attach/detach, enable/disable, upload and image deletion;
/// educator for creating/deleting labs and saving template images; reader for Get/List.
///
/// Every use case is `async`: its database and file work runs on ``executor``'s threads (never on
/// Swift's cooperative pool) inside the calling task, so a cancelled call (client reset, deadline)
/// stops between chunks and commits nothing. The service is immutable and thread-safe.
public final class LabGalleryService: Sendable {
    /// The data directory layout.
    public let layout: DataLayout
    /// The persistence behind the use cases.
    public let storage: any Storage
    /// Settings.
    public let configuration: LabGalleryConfiguration
    /// Where image creation and deletion are reported to the replication engine (if one runs).
    public let replicationHooks = ReplicationHooks()
    /// The threads every use case's database and file work runs on (never Swift's cooperative pool).
    public let executor: BlockingExecutor

    /// The region catalog in use.
    public var catalog: RegionCatalog { configuration.regionCatalog }

    /// Creates a service over an already opened storage.
    public init(
        storage: any Storage, layout: DataLayout, configuration: LabGalleryConfiguration = .init(),
        executor: BlockingExecutor = .shared
    ) {
        self.storage = storage
        self.layout = layout
        self.configuration = configuration
        self.executor = executor
    }

    /// Opens the data directory (creating it), the SQLite database `<data-dir>/labgallery.sqlite`
    /// (migrating its schema), and returns the service. Does not touch files: the server calls
    /// ``recoverFiles()`` once at startup, before serving.
    ///
    /// Refuses (FAILED_PRECONDITION) a data directory that holds blobs but no database: a lost,
    /// renamed or misplaced database must never make the server start empty over those images.
    public static func open(
        dataDirectory: URL, configuration: LabGalleryConfiguration = .init(),
        executor: BlockingExecutor = .shared
    ) throws(LabGalleryError) -> LabGalleryService {
        let layout = try prepareDataDirectory(dataDirectory)
        if access(layout.databaseURL.path, F_OK) != 0 {
            let stored =
                (try? FileManager.default.contentsOfDirectory(atPath: layout.regionsURL.path))?.sorted().flatMap {
                    FileOps.files(under: layout.blobDirectory(region: $0), relativeTo: layout.root)
                } ?? []
            guard stored.isEmpty else {
                throw .failedPrecondition(
                    message:
                        "\(layout.root.path) holds \(stored.count) image blob(s) under regions/ but no database (\(layout.databaseURL.lastPathComponent)): the database was lost, renamed or is elsewhere. Restore \(layout.databaseURL.path) from a backup (or point --data-dir at the right directory); to start empty instead, move \(layout.regionsURL.path) away first. Nothing was changed."
                )
            }
        }
        try FileOps.createPrivateFile(layout.databaseURL)
        do {
            let storage = try SQLiteStorage(path: layout.databaseURL.path)
            return LabGalleryService(storage: storage, layout: layout, configuration: configuration, executor: executor)
        } catch {
            throw .internal(message: "cannot open database \(layout.databaseURL.path): \(error)")
        }
    }

    /// Opens the data directory (creating it; the region blob stores live there) over an already
    /// opened `storage`, e.g. a `PostgresStorage` shared by several instances: the database is
    /// elsewhere, so no database file is made and a data directory with blobs is not refused.
    public static func open(
        dataDirectory: URL, storage: any Storage, configuration: LabGalleryConfiguration = .init(),
        executor: BlockingExecutor = .shared
    ) throws(LabGalleryError) -> LabGalleryService {
        let layout = try prepareDataDirectory(dataDirectory)
        return LabGalleryService(storage: storage, layout: layout, configuration: configuration, executor: executor)
    }

    /// Creates the data directory if missing, mode 0700.
    private static func prepareDataDirectory(_ dataDirectory: URL) throws(LabGalleryError) -> DataLayout {
        let layout = DataLayout(root: dataDirectory)
        let created = access(layout.root.path, F_OK) != 0
        try FileOps.createDirectoryDurably(layout.root)
        // Only the server's user reads the data: 0700 and 0600 whatever the umask (chmod after
        // creating, since the umask only takes bits away and may take too many).
        if created && chmod(layout.root.path, 0o700) != 0 { throw FileOps.error("chmod 0700 the data directory") }
        return layout
    }

    // MARK: - Blocking work and transactions with domain errors

    /// Runs `body` on ``executor``'s threads inside the calling task: every use case's database
    /// and file work goes through here, so none of it blocks Swift's cooperative pool. A task
    /// cancelled (client reset, deadline) before a thread takes the work gets `.cancelled`.
    func blocking<T>(_ body: () throws(LabGalleryError) -> T) async throws(LabGalleryError) -> T {
        do { return try await executor.run(body) } catch let error as LabGalleryError { throw error } catch {
            throw LabGalleryError.cancelled
        }
    }

    /// Throws `.cancelled` once the calling task is cancelled; long work calls it between chunks
    /// and before committing, so a cancelled call commits nothing.
    static func checkCancellation() throws(LabGalleryError) {
        if Task.isCancelled { throw LabGalleryError.cancelled }
    }

    /// A read transaction; non-domain errors become `.internal` (or their own domain error, see
    /// ``LabGalleryErrorConvertible``).
    func read<T>(_ body: (any StorageTransaction) throws -> T) throws(LabGalleryError) -> T {
        do { return try storage.read(body) } catch { throw LabGalleryError.wrap(error, "database read failed") }
    }

    /// A write transaction; non-domain errors become `.internal` (or their own domain error).
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
            throw LabGalleryError.failedPrecondition(
                message: "\(account.name) has no gallery attached; attach one first with AttachGallery")
        }
        return try GalleryName(parsing: g, field: "attached_gallery")
    }

    // MARK: - Storing an image (uploads and template saves)

    /// Makes `writer`'s bytes the image's blob in its home region (shared with an existing blob of
    /// the same bytes there), then inserts the image row and one replication row per other region
    /// of the geography in the same transaction (after `check`). A region that already holds the
    /// bytes is COMPLETED at once. On any error, nothing is stored.
    func storeImage(
        _ image: Image, name: ImageName, writer: inout BlobWriter,
        check: (any StorageTransaction) throws -> Void = { _ in }
    ) throws(LabGalleryError) -> Image {
        let rows: [ReplicationRow] = try storeBlob(&writer, region: image.region, sha256: image.sha256) { path, tx in
            try insertImage(image, name: name, blobPath: path, tx, check: check)
        }
        replicationHooks.imageStored(name, rows: rows)
        return image
    }

    /// Inserts an image whose bytes are the blob at `blobPath` (in its home region) with its
    /// replication rows, after checking the gallery and `check`; returns the replication rows.
    func insertImage(
        _ image: Image, name: ImageName, blobPath: String, _ tx: any StorageTransaction,
        check: (any StorageTransaction) throws -> Void
    ) throws -> [ReplicationRow] {
        let gallery = try requireGallery(name.gallery, tx)
        guard gallery.region == image.region else {
            throw LabGalleryError.failedPrecondition(
                message: "\(gallery.name) was re-created in another region while \(name) was being written; retry")
        }
        guard catalog.geography(of: gallery.region) != nil else {
            throw LabGalleryError.failedPrecondition(
                message:
                    "\(gallery.name) is in region \(gallery.region), which is not in the server's region catalog, so its images could not be replicated; add the region back to the catalog (--regions) or use another gallery"
            )
        }
        if try tx.image(name) != nil { throw LabGalleryError.alreadyExists(name.description) }
        try check(tx)
        try tx.insertImage(StoredImage(image: image, blobPath: blobPath))
        let rows = try catalog.siblings(of: gallery.region).map { region in
            try replicationRow(for: image, name: name, region: region, tx)
        }
        try tx.insertReplications(rows)
        try Self.checkCancellation()  // a call already answered DEADLINE_EXCEEDED commits nothing
        return rows
    }

    /// A new replication row of `image` to `region`: COMPLETED at once, sharing the blob, when the
    /// region already holds the image's bytes; PENDING otherwise.
    func replicationRow(for image: Image, name: ImageName, region: String, _ tx: any StorageTransaction) throws
        -> ReplicationRow
    {
        if let blob = try liveBlobPath(region: region, sha256: image.sha256, tx) {
            let record = RegionReplication(
                region: region, state: .completed, bytesCopied: image.sizeBytes,
                bytesTotal: image.sizeBytes, error: nil, attempts: 0)
            return ReplicationRow(image: name, record: record, partialPath: nil, blobPath: blob)
        }
        let record = RegionReplication(
            region: region, state: .pending, bytesCopied: 0, bytesTotal: image.sizeBytes,
            error: nil, attempts: 0)
        return ReplicationRow(image: name, record: record, partialPath: nil, blobPath: nil)
    }
}
