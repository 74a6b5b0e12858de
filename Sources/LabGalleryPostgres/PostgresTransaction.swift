import Foundation
import LabGalleryCore

/// ``StorageTransaction`` on one connection inside `BEGIN`…`COMMIT`; valid only inside the
/// `read`/`write` closure that created it. The SQL mirrors ``SQLiteStorage``'s, statement for
/// statement, so both engines answer alike.
struct PostgresTransaction: StorageTransaction {
    let c: PostgresConnection

    private func rows(_ sql: String, _ parameters: [PostgresValue?] = []) throws -> [[String?]] {
        try c.query(sql, parameters).rows
    }

    private func count(_ sql: String, _ parameters: [PostgresValue?]) throws -> Int {
        Int(try rows(sql, parameters).first?[0] ?? "0") ?? 0
    }

    private func limit(_ limit: Int?) -> PostgresValue? { limit.map { .int(Int64($0)) } }
    private func text(_ s: String?) -> PostgresValue? { s.map { .string($0) } }

    // MARK: Lab accounts

    private static let labAccountColumns = "id, displayName, region, attachedGalleryId"

    private func labAccount(_ r: [String?]) -> LabAccount {
        LabAccount(
            name: LabAccountName(id: r[0]!).description, displayName: r[1]!, region: r[2]!,
            attachedGallery: r[3].map { GalleryName(id: $0).description })
    }

    func labAccount(_ name: LabAccountName) throws -> LabAccount? {
        try rows("SELECT \(Self.labAccountColumns) FROM labAccount WHERE id = $1", [.string(name.id)]).first.map(
            labAccount)
    }

    func labAccounts(after: String?, limit: Int?) throws -> [LabAccount] {
        try rows(
            "SELECT \(Self.labAccountColumns) FROM labAccount WHERE id > $1 ORDER BY id LIMIT $2",
            [.string(after ?? ""), self.limit(limit)]
        ).map(labAccount)
    }

    func insertLabAccount(_ account: LabAccount) throws {
        let name = try LabAccountName(parsing: account.name, field: "name")
        let gallery = try account.attachedGallery.map { try GalleryName(parsing: $0, field: "attached_gallery").id }
        try c.query(
            "INSERT INTO labAccount (id, displayName, region, attachedGalleryId) VALUES ($1, $2, $3, $4)",
            [.string(name.id), .string(account.displayName), .string(account.region), text(gallery)])
    }

    func setAttachedGallery(_ gallery: GalleryName?, of account: LabAccountName) throws {
        try c.query(
            "UPDATE labAccount SET attachedGalleryId = $1 WHERE id = $2", [text(gallery?.id), .string(account.id)])
    }

    func deleteLabAccount(_ name: LabAccountName) throws {
        // The schema cascades to the account's image overrides.
        try c.query("DELETE FROM labAccount WHERE id = $1", [.string(name.id)])
    }

    func countLabAccounts(attachedTo gallery: GalleryName) throws -> Int {
        try count("SELECT COUNT(*) FROM labAccount WHERE attachedGalleryId = $1", [.string(gallery.id)])
    }

    // MARK: Galleries

    private func gallery(_ r: [String?]) -> Gallery {
        Gallery(name: GalleryName(id: r[0]!).description, displayName: r[1]!, region: r[2]!, geography: r[3]!)
    }

    func gallery(_ name: GalleryName) throws -> Gallery? {
        try rows("SELECT id, displayName, region, geography FROM gallery WHERE id = $1", [.string(name.id)]).first
            .map(gallery)
    }

    func galleries(after: String?, limit: Int?) throws -> [Gallery] {
        try rows(
            "SELECT id, displayName, region, geography FROM gallery WHERE id > $1 ORDER BY id LIMIT $2",
            [.string(after ?? ""), self.limit(limit)]
        ).map(gallery)
    }

    func insertGallery(_ gallery: Gallery) throws {
        let name = try GalleryName(parsing: gallery.name, field: "name")
        try c.query(
            "INSERT INTO gallery (id, displayName, region, geography) VALUES ($1, $2, $3, $4)",
            [.string(name.id), .string(gallery.displayName), .string(gallery.region), .string(gallery.geography)])
    }

    func deleteGallery(_ name: GalleryName) throws {
        // The schema cascades: role assignments and images, and with each image its replication
        // rows and per-account overrides.
        try c.query("DELETE FROM gallery WHERE id = $1", [.string(name.id)])
    }

    // MARK: Role assignments

    func roleAssignments(on gallery: GalleryName) throws -> [RoleAssignment] {
        try rows(
            "SELECT principal, role FROM roleAssignment WHERE galleryId = $1 ORDER BY principal, role",
            [.string(gallery.id)]
        ).map { RoleAssignment(principal: $0[0]!, role: $0[1]!) }
    }

    func grant(_ assignment: RoleAssignment, on gallery: GalleryName) throws {
        try c.query(
            "INSERT INTO roleAssignment (galleryId, principal, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            [.string(gallery.id), .string(assignment.principal), .string(assignment.role)])
    }

    func revoke(_ assignment: RoleAssignment, on gallery: GalleryName) throws {
        try c.query(
            "DELETE FROM roleAssignment WHERE galleryId = $1 AND principal = $2 AND role = $3",
            [.string(gallery.id), .string(assignment.principal), .string(assignment.role)])
    }

    // MARK: Images

    private static let imageColumns =
        "galleryId, id, displayName, osType, osState, source, sourceLab, sizeBytes, sha256, region, author, blobPath"

    private func storedImage(_ r: [String?]) throws -> StoredImage {
        let name = ImageName(gallery: GalleryName(id: r[0]!), id: r[1]!)
        guard let osType = OSType(rawValue: r[3]!), let osState = OSState(rawValue: r[4]!),
            let source = ImageSource(rawValue: r[5]!)
        else {
            throw LabGalleryError.internal(message: "corrupt image row \(name): unknown enum value")
        }
        let image = Image(
            name: name.description, displayName: r[2]!, osType: osType, osState: osState, source: source,
            sourceLab: r[6], sizeBytes: Int64(r[7]!) ?? 0, sha256: r[8]!, region: r[9]!, author: r[10]!)
        return StoredImage(image: image, blobPath: r[11]!)
    }

    func image(_ name: ImageName) throws -> StoredImage? {
        try rows(
            "SELECT \(Self.imageColumns) FROM image WHERE galleryId = $1 AND id = $2",
            [.string(name.gallery.id), .string(name.id)]
        ).first.map(storedImage)
    }

    func images(in gallery: GalleryName, after: String?, limit: Int?) throws -> [StoredImage] {
        try rows(
            "SELECT \(Self.imageColumns) FROM image WHERE galleryId = $1 AND id > $2 ORDER BY id LIMIT $3",
            [.string(gallery.id), .string(after ?? ""), self.limit(limit)]
        ).map(storedImage)
    }

    func insertImage(_ stored: StoredImage) throws {
        let name = try ImageName(parsing: stored.image.name, field: "name")
        let i = stored.image
        try c.query(
            "INSERT INTO image (\(Self.imageColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            [
                .string(name.gallery.id), .string(name.id), .string(i.displayName), .string(i.osType.rawValue),
                .string(i.osState.rawValue), .string(i.source.rawValue), text(i.sourceLab), .int(i.sizeBytes),
                .string(i.sha256), .string(i.region), .string(i.author), .string(stored.blobPath),
            ])
    }

    func deleteImage(_ name: ImageName) throws {
        // The schema cascades to the image's replication rows and per-account overrides.
        try c.query("DELETE FROM image WHERE galleryId = $1 AND id = $2", [.string(name.gallery.id), .string(name.id)])
    }

    // MARK: Replication

    private static let replicationColumns =
        "galleryId, imageId, region, state, bytesCopied, bytesTotal, error, attempts, partialPath, blobPath"

    private func replicationRow(_ r: [String?]) throws -> ReplicationRow {
        let image = ImageName(gallery: GalleryName(id: r[0]!), id: r[1]!)
        guard let state = ReplicationState(rawValue: r[3]!) else {
            throw LabGalleryError.internal(message: "corrupt replication row of \(image): unknown state")
        }
        let record = RegionReplication(
            region: r[2]!, state: state, bytesCopied: Int64(r[4]!) ?? 0, bytesTotal: Int64(r[5]!) ?? 0,
            error: r[6], attempts: Int(r[7]!) ?? 0)
        return ReplicationRow(image: image, record: record, partialPath: r[8], blobPath: r[9])
    }

    private func replicationValues(_ row: ReplicationRow) -> [PostgresValue?] {
        let r = row.record
        return [
            .string(row.image.gallery.id), .string(row.image.id), .string(r.region), .string(r.state.rawValue),
            .int(r.bytesCopied), .int(r.bytesTotal), text(r.error), .int(Int64(r.attempts)), text(row.partialPath),
            text(row.blobPath),
        ]
    }

    func insertReplications(_ rows: [ReplicationRow]) throws {
        for row in rows {
            try c.query(
                "INSERT INTO replication (\(Self.replicationColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                replicationValues(row))
        }
    }

    func replications(of image: ImageName) throws -> [RegionReplication] {
        try replicationRows(of: image).map(\.record)
    }

    func replicationRows(of image: ImageName) throws -> [ReplicationRow] {
        try rows(
            "SELECT \(Self.replicationColumns) FROM replication WHERE galleryId = $1 AND imageId = $2 ORDER BY region",
            [.string(image.gallery.id), .string(image.id)]
        ).map(replicationRow)
    }

    func allReplicationRows() throws -> [ReplicationRow] {
        try rows("SELECT \(Self.replicationColumns) FROM replication ORDER BY galleryId, imageId, region").map(
            replicationRow)
    }

    func updateReplication(_ row: ReplicationRow) throws -> Bool {
        try c.query(
            """
            UPDATE replication SET state = $4, bytesCopied = $5, bytesTotal = $6, error = $7, attempts = $8,
                partialPath = $9, blobPath = $10
            WHERE galleryId = $1 AND imageId = $2 AND region = $3
            """, replicationValues(row)
        ).affected > 0
    }

    // MARK: Replication leases (the database's clock, now(), for every lease time)

    private static let leasedReplicationColumns =
        "r.galleryId, r.imageId, r.region, r.state, r.bytesCopied, r.bytesTotal, r.error, r.attempts, r.partialPath, r.blobPath, r.lease_epoch"

    func claimReplications(owner: String, limit: Int, leaseSeconds: Double) throws -> [ReplicationRow] {
        // SKIP LOCKED: concurrent claimers on other instances pass over each other's rows instead
        // of waiting for them or claiming them twice.
        try rows(
            """
            UPDATE replication r SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2::float8),
                lease_epoch = r.lease_epoch + 1
            FROM (
                SELECT galleryId, imageId, region FROM replication
                WHERE state IN ('PENDING', 'REPLICATING') AND (lease_expires_at IS NULL OR lease_expires_at <= now())
                ORDER BY galleryId, imageId, region LIMIT $3 FOR UPDATE SKIP LOCKED
            ) runnable
            WHERE r.galleryId = runnable.galleryId AND r.imageId = runnable.imageId AND r.region = runnable.region
            RETURNING \(Self.leasedReplicationColumns)
            """, [.string(owner), .double(leaseSeconds), .int(Int64(limit))]
        ).map { r in
            var row = try replicationRow(r)
            row.lease = ReplicationLease(owner: owner, epoch: Int64(r[10] ?? "") ?? 0)
            return row
        }.sorted {
            ($0.image.gallery.id, $0.image.id, $0.record.region) < ($1.image.gallery.id, $1.image.id, $1.record.region)
        }
    }

    func renewReplicationLeases(_ jobs: [LeasedJob], owner: String, leaseSeconds: Double) throws -> [LeasedJob] {
        try jobs.filter { job in
            try c.query(
                """
                UPDATE replication SET lease_expires_at = now() + make_interval(secs => $1::float8)
                WHERE galleryId = $2 AND imageId = $3 AND region = $4 AND lease_owner = $5 AND lease_epoch = $6
                """,
                [
                    .double(leaseSeconds), .string(job.image.gallery.id), .string(job.image.id), .string(job.region),
                    .string(owner), .int(job.lease.epoch),
                ]
            ).affected > 0
        }
    }

    func releaseReplicationLease(_ job: LeasedJob, notBeforeSeconds: Double?) throws -> Bool {
        try c.query(
            """
            UPDATE replication SET lease_owner = NULL,
                lease_expires_at = CASE WHEN $1::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $1::float8) END
            WHERE galleryId = $2 AND imageId = $3 AND region = $4 AND lease_owner = $5 AND lease_epoch = $6
            """,
            [
                notBeforeSeconds.map { .double($0) }, .string(job.image.gallery.id), .string(job.image.id),
                .string(job.region), .string(job.lease.owner), .int(job.lease.epoch),
            ]
        ).affected > 0
    }

    func updateReplication(_ row: ReplicationRow, fencedBy lease: ReplicationLease) throws -> Bool {
        try c.query(
            """
            UPDATE replication SET state = $4, bytesCopied = $5, bytesTotal = $6, error = $7, attempts = $8,
                partialPath = $9, blobPath = $10
            WHERE galleryId = $1 AND imageId = $2 AND region = $3 AND lease_owner = $11 AND lease_epoch = $12
            """, replicationValues(row) + [.string(lease.owner), .int(lease.epoch)]
        ).affected > 0
    }

    func leasedReplicationFilePaths() throws -> Set<String> {
        Set(
            try rows(
                "SELECT partialPath, blobPath FROM replication WHERE lease_owner IS NOT NULL AND lease_expires_at > now()"
            ).flatMap { $0.compactMap { $0 } })
    }

    // MARK: Enablement

    func disabledImages(for account: LabAccountName) throws -> Set<ImageName> {
        Set(
            try rows("SELECT galleryId, imageId FROM imageDisabled WHERE labAccountId = $1", [.string(account.id)])
                .map { ImageName(gallery: GalleryName(id: $0[0]!), id: $0[1]!) })
    }

    func setImageDisabled(_ disabled: Bool, image: ImageName, for account: LabAccountName) throws {
        let key: [PostgresValue?] = [.string(account.id), .string(image.gallery.id), .string(image.id)]
        if disabled {
            try c.query(
                "INSERT INTO imageDisabled (labAccountId, galleryId, imageId) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                key)
        } else {
            try c.query("DELETE FROM imageDisabled WHERE labAccountId = $1 AND galleryId = $2 AND imageId = $3", key)
        }
    }

    func clearImageOverrides(for account: LabAccountName) throws {
        try c.query("DELETE FROM imageDisabled WHERE labAccountId = $1", [.string(account.id)])
    }

    // MARK: Labs

    private static let labColumns =
        "labAccountId, id, displayName, templateGalleryId, templateImageId, templateOsType, templatePath"

    private func storedLab(_ r: [String?]) throws -> StoredLab {
        let name = LabName(labAccount: LabAccountName(id: r[0]!), id: r[1]!)
        let template = ImageName(gallery: GalleryName(id: r[3]!), id: r[4]!)
        guard let osType = OSType(rawValue: r[5]!) else {
            throw LabGalleryError.internal(message: "corrupt lab row \(name): unknown OS type")
        }
        return StoredLab(
            lab: Lab(name: name.description, displayName: r[2]!, templateImage: template.description),
            templatePath: r[6]!, templateOSType: osType)
    }

    func lab(_ name: LabName) throws -> StoredLab? {
        try rows(
            "SELECT \(Self.labColumns) FROM lab WHERE labAccountId = $1 AND id = $2",
            [.string(name.labAccount.id), .string(name.id)]
        ).first.map(storedLab)
    }

    func labs(in account: LabAccountName, after: String?, limit: Int?) throws -> [StoredLab] {
        try rows(
            "SELECT \(Self.labColumns) FROM lab WHERE labAccountId = $1 AND id > $2 ORDER BY id LIMIT $3",
            [.string(account.id), .string(after ?? ""), self.limit(limit)]
        ).map(storedLab)
    }

    func insertLab(_ stored: StoredLab) throws {
        let name = try LabName(parsing: stored.lab.name, field: "name")
        let template = try ImageName(parsing: stored.lab.templateImage, field: "template_image")
        try c.query(
            "INSERT INTO lab (\(Self.labColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                .string(name.labAccount.id), .string(name.id), .string(stored.lab.displayName),
                .string(template.gallery.id), .string(template.id), .string(stored.templateOSType.rawValue),
                .string(stored.templatePath),
            ])
    }

    func deleteLab(_ name: LabName) throws {
        try c.query(
            "DELETE FROM lab WHERE labAccountId = $1 AND id = $2", [.string(name.labAccount.id), .string(name.id)])
    }

    func countLabs(in account: LabAccountName) throws -> Int {
        try count("SELECT COUNT(*) FROM lab WHERE labAccountId = $1", [.string(account.id)])
    }

    private func labName(_ r: [String?]) -> String {
        LabName(labAccount: LabAccountName(id: r[0]!), id: r[1]!).description
    }

    func labs(usingTemplate image: ImageName) throws -> [String] {
        try rows(
            """
            SELECT labAccountId, id FROM lab WHERE templateGalleryId = $1 AND templateImageId = $2
            ORDER BY labAccountId, id
            """, [.string(image.gallery.id), .string(image.id)]
        ).map(labName)
    }

    func labs(usingTemplatesIn gallery: GalleryName) throws -> [String] {
        try rows(
            "SELECT labAccountId, id FROM lab WHERE templateGalleryId = $1 ORDER BY labAccountId, id",
            [.string(gallery.id)]
        ).map(labName)
    }

    // MARK: Blobs

    private func blobRecord(_ r: [String?]) throws -> BlobRecord {
        guard let state = BlobRecord.State(rawValue: r[4]!) else {
            throw LabGalleryError.internal(message: "corrupt blob row \(r[0]!): unknown state")
        }
        return BlobRecord(path: r[0]!, region: r[1]!, sha256: r[2]!, sizeBytes: Int64(r[3]!) ?? 0, state: state)
    }

    func blob(_ path: String) throws -> BlobRecord? {
        try rows("SELECT path, region, sha256, sizeBytes, state FROM blob WHERE path = $1", [.string(path)]).first
            .map(blobRecord)
    }

    func liveBlob(region: String, sha256: String) throws -> BlobRecord? {
        try rows(
            """
            SELECT path, region, sha256, sizeBytes, state FROM blob
            WHERE region = $1 AND sha256 = $2 AND state = 'live' ORDER BY path LIMIT 1
            """, [.string(region), .string(sha256)]
        ).first.map(blobRecord)
    }

    func blobs() throws -> [BlobRecord] {
        try rows("SELECT path, region, sha256, sizeBytes, state FROM blob ORDER BY path").map(blobRecord)
    }

    func insertBlob(_ blob: BlobRecord) throws {
        try c.query(
            "INSERT INTO blob (path, region, sha256, sizeBytes, state) VALUES ($1, $2, $3, $4, $5)",
            [
                .string(blob.path), .string(blob.region), .string(blob.sha256), .int(blob.sizeBytes),
                .string(blob.state.rawValue),
            ])
    }

    func setBlobState(_ state: BlobRecord.State, path: String) throws {
        try c.query("UPDATE blob SET state = $1 WHERE path = $2", [.string(state.rawValue), .string(path)])
    }

    func deleteBlob(path: String) throws {
        try c.query("DELETE FROM blob WHERE path = $1", [.string(path)])
    }

    func blobReferences(_ path: String) throws -> Int {
        try count(
            """
            SELECT (SELECT COUNT(*) FROM image WHERE blobPath = $1)
                 + (SELECT COUNT(*) FROM replication WHERE blobPath = $1)
                 + (SELECT COUNT(*) FROM lab WHERE templatePath = $1)
            """, [.string(path)])
    }

    // MARK: Files

    func partialFilePaths() throws -> Set<String> {
        Set(try rows("SELECT partialPath FROM replication WHERE partialPath IS NOT NULL").compactMap { $0[0] })
    }

    func referencedFilePaths() throws -> Set<String> {
        Set(
            try rows(
                """
                SELECT blobPath FROM image
                UNION SELECT blobPath FROM replication WHERE blobPath IS NOT NULL
                UNION SELECT templatePath FROM lab
                """
            ).compactMap { $0[0] })
    }

    // MARK: Tokens

    private static let tokenColumns = "id, principal, role, extract(epoch FROM createdAt)::float8, revoked"

    private func token(_ r: [String?]) throws -> TokenInfo {
        guard let role = Role(rawValue: r[2]!) else {
            throw LabGalleryError.internal(message: "corrupt token row \(r[0]!): unknown role")
        }
        return TokenInfo(
            id: r[0]!, principal: r[1]!, role: role,
            createdAt: Date(timeIntervalSince1970: Double(r[3]!) ?? 0), revoked: r[4] == "t")
    }

    func insertToken(_ token: TokenInfo, secretHash: String) throws {
        try c.query(
            """
            INSERT INTO token (id, secretHash, principal, role, createdAt, revoked)
            VALUES ($1, $2, $3, $4, to_timestamp($5::float8), $6)
            """,
            [
                .string(token.id), .string(secretHash), .string(token.principal), .string(token.role.rawValue),
                .double(token.createdAt.timeIntervalSince1970), .bool(token.revoked),
            ])
    }

    func token(secretHash: String) throws -> TokenInfo? {
        try rows("SELECT \(Self.tokenColumns) FROM token WHERE secretHash = $1", [.string(secretHash)]).first.map(
            token)
    }

    func tokens() throws -> [TokenInfo] {
        try rows("SELECT \(Self.tokenColumns) FROM token ORDER BY seq").map(token)
    }

    func revokeToken(id: String) throws -> Bool {
        try c.query("UPDATE token SET revoked = true WHERE id = $1", [.string(id)]).affected > 0
    }

    func countTokens() throws -> Int {
        try count("SELECT COUNT(*) FROM token", [])
    }
}
