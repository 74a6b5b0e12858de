import Foundation
import GRDB

/// The embedded ``Storage``: one SQLite file opened as a GRDB `DatabasePool` in WAL mode,
/// with schema migrations (`DatabaseMigrator`) applied on open.
public final class SQLiteStorage: Storage {
    /// The underlying pool (exposed for diagnostics and tests).
    public let pool: DatabasePool

    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    /// A write waits up to `busyTimeout` seconds for another process's write lock (e.g.
    /// `labgallery-server token create`), then fails UNAVAILABLE.
    ///
    /// WAL mode with `synchronous=FULL`: a transaction is durable when it commits (the WAL is
    /// fsynced at every commit), so an acknowledged upload survives a power loss; NORMAL would
    /// only guarantee consistency, not the last commits.
    public init(path: String, busyTimeout: TimeInterval = 10) throws {
        var config = Configuration()
        config.foreignKeysEnabled = true
        config.busyMode = .timeout(busyTimeout)
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        pool = try DatabasePool(path: path, configuration: config)
        try Self.migrator.migrate(pool)
    }

    /// Runs `body` in a read transaction (a WAL snapshot).
    public func read<T>(_ body: (any StorageTransaction) throws -> T) throws -> T {
        do { return try pool.read { db in try body(SQLiteTransaction(db: db)) } } catch let e as DatabaseError {
            throw Self.domainError(e)
        }
    }

    /// Runs `body` in a write transaction (`BEGIN IMMEDIATE`; one writer at a time).
    public func write<T>(_ body: (any StorageTransaction) throws -> T) throws -> T {
        do { return try pool.write { db in try body(SQLiteTransaction(db: db)) } } catch let e as DatabaseError {
            throw Self.domainError(e)
        }
    }

    /// Closes the pool's connections (blocks; waits for transactions in progress).
    public func close() throws { try pool.close() }

    /// A database that cannot take the transaction now (locked past the busy timeout, disk or
    /// quota full, I/O error, read-only file) is UNAVAILABLE with SQLite's reason; anything else
    /// is INTERNAL. Either way nothing was committed.
    static func domainError(_ e: DatabaseError) -> LabGalleryError {
        let reason = e.message ?? "\(e.resultCode)"
        switch e.resultCode.primaryResultCode {
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return .unavailable(message: "the database is busy (\(reason)); retry shortly")
        case .SQLITE_FULL:
            return .unavailable(
                message:
                    "the database cannot grow: the disk holding the data directory is full (\(reason)); free space and retry"
            )
        case .SQLITE_IOERR, .SQLITE_READONLY, .SQLITE_CANTOPEN:
            return .unavailable(
                message:
                    "the database cannot be written (\(reason)); check the data directory's disk and permissions, then retry"
            )
        default:
            return .internal(message: "database error: \(reason)")
        }
    }

    /// `PRAGMA journal_mode` ("wal" for a pool).
    public func journalMode() throws -> String {
        try pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }
    }

    /// `PRAGMA integrity_check` result ("ok" when healthy).
    public func integrityCheck() throws -> String {
        try pool.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "" }
    }

    /// The schema, one migration per released change. Never edit a shipped migration; add a new one.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE gallery (
                        id TEXT PRIMARY KEY NOT NULL,
                        displayName TEXT NOT NULL,
                        region TEXT NOT NULL,
                        geography TEXT NOT NULL
                    );
                    CREATE TABLE labAccount (
                        id TEXT PRIMARY KEY NOT NULL,
                        displayName TEXT NOT NULL,
                        region TEXT NOT NULL,
                        attachedGalleryId TEXT REFERENCES gallery(id) ON DELETE RESTRICT
                    );
                    CREATE INDEX labAccount_attached ON labAccount(attachedGalleryId);
                    CREATE TABLE roleAssignment (
                        galleryId TEXT NOT NULL REFERENCES gallery(id) ON DELETE CASCADE,
                        principal TEXT NOT NULL,
                        role TEXT NOT NULL,
                        PRIMARY KEY (galleryId, principal, role)
                    );
                    CREATE TABLE image (
                        galleryId TEXT NOT NULL REFERENCES gallery(id) ON DELETE CASCADE,
                        id TEXT NOT NULL,
                        displayName TEXT NOT NULL,
                        osType TEXT NOT NULL,
                        osState TEXT NOT NULL,
                        source TEXT NOT NULL,
                        sourceLab TEXT,
                        sizeBytes INTEGER NOT NULL,
                        sha256 TEXT NOT NULL,
                        region TEXT NOT NULL,
                        author TEXT NOT NULL,
                        blobPath TEXT NOT NULL UNIQUE,
                        PRIMARY KEY (galleryId, id)
                    );
                    CREATE TABLE replication (
                        galleryId TEXT NOT NULL,
                        imageId TEXT NOT NULL,
                        region TEXT NOT NULL,
                        state TEXT NOT NULL,
                        bytesCopied INTEGER NOT NULL,
                        bytesTotal INTEGER NOT NULL,
                        error TEXT,
                        attempts INTEGER NOT NULL,
                        blobPath TEXT,  -- replica file, set by the replication engine (later)
                        PRIMARY KEY (galleryId, imageId, region),
                        FOREIGN KEY (galleryId, imageId) REFERENCES image(galleryId, id) ON DELETE CASCADE
                    );
                    CREATE TABLE imageDisabled (
                        labAccountId TEXT NOT NULL REFERENCES labAccount(id) ON DELETE CASCADE,
                        galleryId TEXT NOT NULL,
                        imageId TEXT NOT NULL,
                        PRIMARY KEY (labAccountId, galleryId, imageId),
                        FOREIGN KEY (galleryId, imageId) REFERENCES image(galleryId, id) ON DELETE CASCADE
                    );
                    CREATE INDEX imageDisabled_image ON imageDisabled(galleryId, imageId);
                    CREATE TABLE lab (
                        labAccountId TEXT NOT NULL REFERENCES labAccount(id) ON DELETE RESTRICT,
                        id TEXT NOT NULL,
                        displayName TEXT NOT NULL,
                        templateGalleryId TEXT NOT NULL,
                        templateImageId TEXT NOT NULL,
                        templateOsType TEXT NOT NULL,
                        templatePath TEXT NOT NULL UNIQUE,
                        PRIMARY KEY (labAccountId, id),
                        FOREIGN KEY (templateGalleryId, templateImageId) REFERENCES image(galleryId, id) ON DELETE RESTRICT
                    );
                    CREATE INDEX lab_template ON lab(templateGalleryId, templateImageId);
                    CREATE TABLE token (
                        id TEXT PRIMARY KEY NOT NULL,
                        secretHash TEXT NOT NULL UNIQUE,
                        principal TEXT NOT NULL,
                        role TEXT NOT NULL,
                        createdAt DATETIME NOT NULL,
                        revoked BOOLEAN NOT NULL DEFAULT 0
                    );
                    """)
        }
        // Replication engine: the partial replica file a job resumes from (kept across restarts).
        m.registerMigration("v2") { db in
            try db.execute(sql: "ALTER TABLE replication ADD COLUMN partialPath TEXT")
        }
        // Content-addressed blobs: images, replicas and lab templates reference rows of `blob`, so
        // one blob per (region, SHA-256) serves them all. Image and lab paths lose their UNIQUE
        // constraint (tables rebuilt, SQLite's documented way); existing files become blobs as they are.
        m.registerMigration("v3") { db in
            try db.execute(
                sql: """
                    CREATE TABLE blob (
                        path TEXT PRIMARY KEY NOT NULL,
                        region TEXT NOT NULL,
                        sha256 TEXT NOT NULL,
                        sizeBytes INTEGER NOT NULL,
                        state TEXT NOT NULL  -- writing | live | doomed
                    );
                    CREATE INDEX blob_content ON blob(region, sha256, state);
                    CREATE TABLE image_v3 (
                        galleryId TEXT NOT NULL REFERENCES gallery(id) ON DELETE CASCADE,
                        id TEXT NOT NULL,
                        displayName TEXT NOT NULL,
                        osType TEXT NOT NULL,
                        osState TEXT NOT NULL,
                        source TEXT NOT NULL,
                        sourceLab TEXT,
                        sizeBytes INTEGER NOT NULL,
                        sha256 TEXT NOT NULL,
                        region TEXT NOT NULL,
                        author TEXT NOT NULL,
                        blobPath TEXT NOT NULL,
                        PRIMARY KEY (galleryId, id)
                    );
                    INSERT INTO image_v3 SELECT galleryId, id, displayName, osType, osState, source, sourceLab, sizeBytes,
                        sha256, region, author, blobPath FROM image;
                    DROP TABLE image;
                    ALTER TABLE image_v3 RENAME TO image;
                    CREATE INDEX image_blob ON image(blobPath);
                    CREATE TABLE lab_v3 (
                        labAccountId TEXT NOT NULL REFERENCES labAccount(id) ON DELETE RESTRICT,
                        id TEXT NOT NULL,
                        displayName TEXT NOT NULL,
                        templateGalleryId TEXT NOT NULL,
                        templateImageId TEXT NOT NULL,
                        templateOsType TEXT NOT NULL,
                        templatePath TEXT NOT NULL,
                        PRIMARY KEY (labAccountId, id),
                        FOREIGN KEY (templateGalleryId, templateImageId) REFERENCES image(galleryId, id) ON DELETE RESTRICT
                    );
                    INSERT INTO lab_v3 SELECT labAccountId, id, displayName, templateGalleryId, templateImageId, templateOsType,
                        templatePath FROM lab;
                    DROP TABLE lab;
                    ALTER TABLE lab_v3 RENAME TO lab;
                    CREATE INDEX lab_template ON lab(templateGalleryId, templateImageId);
                    CREATE INDEX lab_blob ON lab(templatePath);
                    CREATE INDEX replication_blob ON replication(blobPath);
                    INSERT OR IGNORE INTO blob SELECT blobPath, region, sha256, sizeBytes, 'live' FROM image;
                    INSERT OR IGNORE INTO blob SELECT r.blobPath, r.region, i.sha256, i.sizeBytes, 'live'
                        FROM replication r JOIN image i ON i.galleryId = r.galleryId AND i.id = r.imageId
                        WHERE r.blobPath IS NOT NULL AND r.state = 'COMPLETED';
                    INSERT OR IGNORE INTO blob SELECT l.templatePath, a.region, i.sha256, i.sizeBytes, 'live'
                        FROM lab l JOIN labAccount a ON a.id = l.labAccountId
                        JOIN image i ON i.galleryId = l.templateGalleryId AND i.id = l.templateImageId;
                    """)
        }
        // Fleets: replication jobs are leased (see ``StorageTransaction/claimReplications(owner:limit:leaseSeconds:)``).
        // lease_expires_at is REAL unix seconds of the database's clock; on a PENDING row without an
        // owner it is the backoff's "not before". lease_epoch is the fencing token, +1 per claim.
        m.registerMigration("v4") { db in
            try db.execute(
                sql: """
                    ALTER TABLE replication ADD COLUMN lease_owner TEXT;
                    ALTER TABLE replication ADD COLUMN lease_expires_at REAL;
                    ALTER TABLE replication ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
                    CREATE INDEX replication_runnable ON replication(state, lease_expires_at);
                    """)
        }
        return m
    }
}

/// ``StorageTransaction`` over one GRDB `Database` connection, valid only inside the
/// `read`/`write` closure that created it (it is not Sendable and never escapes).
struct SQLiteTransaction: StorageTransaction {
    let db: Database

    // MARK: Lab accounts

    /// A page of rows ordered by `id`, strictly after `after`, at most `limit` (`nil`: all).
    private func page<R: FetchableRecord & TableRecord>(
        _ request: QueryInterfaceRequest<R>, id: Column,
        after: String?, limit: Int?
    ) throws -> [R] {
        var q = request.filter(id > (after ?? "")).order(id)
        if let limit { q = q.limit(limit) }
        return try q.fetchAll(db)
    }

    func labAccount(_ name: LabAccountName) throws -> LabAccount? {
        try LabAccountRow.fetchOne(db, key: name.id)?.domain
    }

    func labAccounts(after: String?, limit: Int?) throws -> [LabAccount] {
        try page(LabAccountRow.all(), id: Column(LabAccountRow.Columns.id.rawValue), after: after, limit: limit).map(
            \.domain)
    }

    func insertLabAccount(_ account: LabAccount) throws {
        let name = try LabAccountName(parsing: account.name, field: "name")
        let gallery = try account.attachedGallery.map { try GalleryName(parsing: $0, field: "attached_gallery").id }
        try LabAccountRow(
            id: name.id, displayName: account.displayName, region: account.region, attachedGalleryId: gallery
        ).insert(db)
    }

    func setAttachedGallery(_ gallery: GalleryName?, of account: LabAccountName) throws {
        try LabAccountRow.filter(key: account.id).updateAll(
            db, LabAccountRow.Columns.attachedGalleryId.set(to: gallery?.id))
    }

    func deleteLabAccount(_ name: LabAccountName) throws {
        // The schema cascades to the account's image overrides.
        try LabAccountRow.deleteOne(db, key: name.id)
    }

    func countLabAccounts(attachedTo gallery: GalleryName) throws -> Int {
        try LabAccountRow.filter(LabAccountRow.Columns.attachedGalleryId == gallery.id).fetchCount(db)
    }

    // MARK: Galleries

    func gallery(_ name: GalleryName) throws -> Gallery? {
        try GalleryRow.fetchOne(db, key: name.id)?.domain
    }

    func galleries(after: String?, limit: Int?) throws -> [Gallery] {
        try page(GalleryRow.all(), id: Column(GalleryRow.Columns.id.rawValue), after: after, limit: limit).map(\.domain)
    }

    func insertGallery(_ gallery: Gallery) throws {
        let name = try GalleryName(parsing: gallery.name, field: "name")
        try GalleryRow(
            id: name.id, displayName: gallery.displayName, region: gallery.region, geography: gallery.geography
        ).insert(db)
    }

    func deleteGallery(_ name: GalleryName) throws {
        // The schema cascades: role assignments and images go with the gallery, and with each
        // image its replication rows and per-account overrides.
        try GalleryRow.deleteOne(db, key: name.id)
    }

    // MARK: Role assignments

    func roleAssignments(on gallery: GalleryName) throws -> [RoleAssignment] {
        typealias C = RoleAssignmentRow.Columns
        return try RoleAssignmentRow.filter(C.galleryId == gallery.id).order(C.principal, C.role).fetchAll(db)
            .map { RoleAssignment(principal: $0.principal, role: $0.role) }
    }

    func grant(_ assignment: RoleAssignment, on gallery: GalleryName) throws {
        try RoleAssignmentRow(galleryId: gallery.id, principal: assignment.principal, role: assignment.role).insert(
            db, onConflict: .ignore)
    }

    func revoke(_ assignment: RoleAssignment, on gallery: GalleryName) throws {
        try RoleAssignmentRow.deleteOne(
            db, key: ["galleryId": gallery.id, "principal": assignment.principal, "role": assignment.role])
    }

    // MARK: Images

    func image(_ name: ImageName) throws -> StoredImage? {
        try ImageRow.fetchOne(db, key: ["galleryId": name.gallery.id, "id": name.id])?.domain()
    }

    func images(in gallery: GalleryName, after: String?, limit: Int?) throws -> [StoredImage] {
        try page(
            ImageRow.filter(ImageRow.Columns.galleryId == gallery.id), id: Column(ImageRow.Columns.id.rawValue),
            after: after, limit: limit
        ).map { try $0.domain() }
    }

    func insertImage(_ stored: StoredImage) throws {
        try ImageRow(stored, name: try ImageName(parsing: stored.image.name, field: "name")).insert(db)
    }

    func deleteImage(_ name: ImageName) throws {
        // The schema cascades to the image's replication rows and per-account overrides.
        try ImageRow.deleteOne(db, key: ["galleryId": name.gallery.id, "id": name.id])
    }

    // MARK: Replication

    func replicationRows(of image: ImageName) throws -> [ReplicationRow] {
        try ReplicationRecord.of(image).order(ReplicationRecord.Columns.region).fetchAll(db).map { try $0.domain() }
    }

    func allReplicationRows() throws -> [ReplicationRow] {
        typealias C = ReplicationRecord.Columns
        return try ReplicationRecord.order(C.galleryId, C.imageId, C.region).fetchAll(db).map { try $0.domain() }
    }

    func updateReplication(_ row: ReplicationRow) throws -> Bool {
        do {
            try ReplicationRecord(row).update(db)
            return true
        } catch RecordError.recordNotFound {
            return false
        }
    }

    // MARK: Replication leases

    /// The database's clock in REAL unix seconds (millisecond precision; SQLite 3.40 has no `unixepoch('subsec')`).
    private static let now = "((julianday('now') - 2440587.5) * 86400.0)"
    private static let key = "galleryId = ? AND imageId = ? AND region = ?"

    func claimReplications(owner: String, limit: Int, leaseSeconds: Double) throws -> [ReplicationRow] {
        // One writer at a time (BEGIN IMMEDIATE): the SELECT and the UPDATEs cannot interleave with
        // another instance's claim, which is what FOR UPDATE SKIP LOCKED gives PostgreSQL.
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT galleryId, imageId, region FROM replication
                WHERE state IN ('PENDING', 'REPLICATING') AND (lease_expires_at IS NULL OR lease_expires_at <= \(Self.now))
                ORDER BY galleryId, imageId, region LIMIT ?
                """, arguments: [limit])
        var claimed: [ReplicationRow] = []
        for r in rows {
            let key: [String] = [r["galleryId"], r["imageId"], r["region"]]
            try db.execute(
                sql: """
                    UPDATE replication SET lease_owner = ?, lease_expires_at = \(Self.now) + ?, lease_epoch = lease_epoch + 1
                    WHERE \(Self.key)
                    """, arguments: [owner, leaseSeconds, key[0], key[1], key[2]])
            guard
                let record = try ReplicationRecord.fetchOne(
                    db, key: ["galleryId": key[0], "imageId": key[1], "region": key[2]]),
                let epoch = try Int64.fetchOne(
                    db, sql: "SELECT lease_epoch FROM replication WHERE \(Self.key)",
                    arguments: [key[0], key[1], key[2]])
            else { continue }
            var row = try record.domain()
            row.lease = ReplicationLease(owner: owner, epoch: epoch)
            claimed.append(row)
        }
        return claimed
    }

    func renewReplicationLeases(_ jobs: [LeasedJob], owner: String, leaseSeconds: Double) throws -> [LeasedJob] {
        try jobs.filter { job in
            try db.execute(
                sql: """
                    UPDATE replication SET lease_expires_at = \(Self.now) + ?
                    WHERE \(Self.key) AND lease_owner = ? AND lease_epoch = ?
                    """,
                arguments: [
                    leaseSeconds, job.image.gallery.id, job.image.id, job.region, owner, job.lease.epoch,
                ])
            return db.changesCount > 0
        }
    }

    func releaseReplicationLease(_ job: LeasedJob, notBeforeSeconds: Double?) throws -> Bool {
        try db.execute(
            sql: """
                UPDATE replication SET lease_owner = NULL,
                    lease_expires_at = CASE WHEN ?1 IS NULL THEN NULL ELSE \(Self.now) + ?1 END
                WHERE galleryId = ?2 AND imageId = ?3 AND region = ?4 AND lease_owner = ?5 AND lease_epoch = ?6
                """,
            arguments: [
                notBeforeSeconds, job.image.gallery.id, job.image.id, job.region, job.lease.owner, job.lease.epoch,
            ])
        return db.changesCount > 0
    }

    func updateReplication(_ row: ReplicationRow, fencedBy lease: ReplicationLease) throws -> Bool {
        let r = ReplicationRecord(row)
        try db.execute(
            sql: """
                UPDATE replication SET state = ?, bytesCopied = ?, bytesTotal = ?, error = ?, attempts = ?,
                    partialPath = ?, blobPath = ?
                WHERE \(Self.key) AND lease_owner = ? AND lease_epoch = ?
                """,
            arguments: [
                r.state, r.bytesCopied, r.bytesTotal, r.error, r.attempts, r.partialPath, r.blobPath,
                r.galleryId, r.imageId, r.region, lease.owner, lease.epoch,
            ])
        return db.changesCount > 0
    }

    func leasedReplicationFilePaths() throws -> Set<String> {
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT partialPath, blobPath FROM replication
                WHERE lease_owner IS NOT NULL AND lease_expires_at > \(Self.now)
                """)
        return Set(
            rows.flatMap { r -> [String] in [r["partialPath"] as String?, r["blobPath"] as String?].compactMap { $0 } })
    }

    func insertReplications(_ rows: [ReplicationRow]) throws {
        for row in rows { try ReplicationRecord(row).insert(db) }
    }

    func replications(of image: ImageName) throws -> [RegionReplication] {
        try replicationRows(of: image).map(\.record)
    }

    // MARK: Enablement

    func disabledImages(for account: LabAccountName) throws -> Set<ImageName> {
        Set(
            try ImageDisabledRow.filter(ImageDisabledRow.Columns.labAccountId == account.id).fetchAll(db)
                .map { ImageName(gallery: GalleryName(id: $0.galleryId), id: $0.imageId) })
    }

    func setImageDisabled(_ disabled: Bool, image: ImageName, for account: LabAccountName) throws {
        let row = ImageDisabledRow(labAccountId: account.id, galleryId: image.gallery.id, imageId: image.id)
        if disabled { try row.insert(db, onConflict: .ignore) } else { try row.delete(db) }
    }

    func clearImageOverrides(for account: LabAccountName) throws {
        try ImageDisabledRow.filter(ImageDisabledRow.Columns.labAccountId == account.id).deleteAll(db)
    }

    // MARK: Labs

    func lab(_ name: LabName) throws -> StoredLab? {
        try LabRow.fetchOne(db, key: ["labAccountId": name.labAccount.id, "id": name.id])?.domain()
    }

    func labs(in account: LabAccountName, after: String?, limit: Int?) throws -> [StoredLab] {
        try page(
            LabRow.filter(LabRow.Columns.labAccountId == account.id), id: Column(LabRow.Columns.id.rawValue),
            after: after, limit: limit
        ).map { try $0.domain() }
    }

    func insertLab(_ stored: StoredLab) throws {
        let name = try LabName(parsing: stored.lab.name, field: "name")
        let template = try ImageName(parsing: stored.lab.templateImage, field: "template_image")
        try LabRow(
            labAccountId: name.labAccount.id, id: name.id, displayName: stored.lab.displayName,
            templateGalleryId: template.gallery.id, templateImageId: template.id,
            templateOsType: stored.templateOSType.rawValue, templatePath: stored.templatePath
        ).insert(db)
    }

    func deleteLab(_ name: LabName) throws {
        try LabRow.deleteOne(db, key: ["labAccountId": name.labAccount.id, "id": name.id])
    }

    func countLabs(in account: LabAccountName) throws -> Int {
        try LabRow.filter(LabRow.Columns.labAccountId == account.id).fetchCount(db)
    }

    func labs(usingTemplate image: ImageName) throws -> [String] {
        typealias C = LabRow.Columns
        return try LabRow.filter(C.templateGalleryId == image.gallery.id && C.templateImageId == image.id)
            .order(C.labAccountId, C.id).fetchAll(db).map(\.name.description)
    }

    func labs(usingTemplatesIn gallery: GalleryName) throws -> [String] {
        typealias C = LabRow.Columns
        return try LabRow.filter(C.templateGalleryId == gallery.id).order(C.labAccountId, C.id).fetchAll(db).map(
            \.name.description)
    }

    // MARK: Blobs

    func blob(_ path: String) throws -> BlobRecord? {
        try BlobRow.fetchOne(db, key: path)?.domain()
    }

    func liveBlob(region: String, sha256: String) throws -> BlobRecord? {
        typealias C = BlobRow.Columns
        return try BlobRow.filter(C.region == region && C.sha256 == sha256 && C.state == BlobRecord.State.live.rawValue)
            .order(C.path).fetchOne(db)?.domain()
    }

    func blobs() throws -> [BlobRecord] {
        try BlobRow.order(BlobRow.Columns.path).fetchAll(db).map { try $0.domain() }
    }

    func insertBlob(_ blob: BlobRecord) throws {
        try BlobRow(blob).insert(db)
    }

    func setBlobState(_ state: BlobRecord.State, path: String) throws {
        try BlobRow.filter(key: path).updateAll(db, BlobRow.Columns.state.set(to: state.rawValue))
    }

    func deleteBlob(path: String) throws {
        try BlobRow.deleteOne(db, key: path)
    }

    func blobReferences(_ path: String) throws -> Int {
        try Int.fetchOne(
            db,
            sql: """
                SELECT (SELECT COUNT(*) FROM image WHERE blobPath = ?1)
                     + (SELECT COUNT(*) FROM replication WHERE blobPath = ?1)
                     + (SELECT COUNT(*) FROM lab WHERE templatePath = ?1)
                """, arguments: [path]) ?? 0
    }

    // MARK: Files

    func partialFilePaths() throws -> Set<String> {
        typealias C = ReplicationRecord.Columns
        return Set(try String.fetchAll(db, ReplicationRecord.select(C.partialPath).filter(C.partialPath != nil)))
    }

    func referencedFilePaths() throws -> Set<String> {
        Set(
            try String.fetchAll(
                db,
                sql: """
                    SELECT blobPath FROM image
                    UNION SELECT blobPath FROM replication WHERE blobPath IS NOT NULL
                    UNION SELECT templatePath FROM lab
                    """))
    }

    // MARK: Tokens

    func insertToken(_ token: TokenInfo, secretHash: String) throws {
        try TokenRow(
            id: token.id, secretHash: secretHash, principal: token.principal, role: token.role.rawValue,
            createdAt: token.createdAt, revoked: token.revoked
        ).insert(db)
    }

    func token(secretHash: String) throws -> TokenInfo? {
        try TokenRow.filter(TokenRow.Columns.secretHash == secretHash).fetchOne(db)?.domain()
    }

    func tokens() throws -> [TokenInfo] {
        try TokenRow.order(Column.rowID).fetchAll(db).map { try $0.domain() }
    }

    func revokeToken(id: String) throws -> Bool {
        try TokenRow.filter(key: id).updateAll(db, TokenRow.Columns.revoked.set(to: true)) > 0
    }

    func countTokens() throws -> Int {
        try TokenRow.fetchCount(db)
    }
}
