import Foundation

/// Persistence behind the use cases. The use cases talk only to this protocol, so a PostgreSQL
/// implementation can follow without touching them (``SQLiteStorage`` is the embedded default).
///
/// The protocol is transaction-shaped: every use case runs its reads and writes inside one
/// ``write(_:)`` (or ``read(_:)``) call, which commits when `body` returns and rolls back when it throws.
/// Implementations must give `write` serializable semantics relative to other writes (SQLite: one writer;
/// PostgreSQL: `SERIALIZABLE` or explicit row locks), because use cases check-then-write inside `body`.
public protocol Storage: Sendable {
    /// Runs `body` in a read-only transaction seeing one consistent snapshot.
    func read<T>(_ body: (any StorageTransaction) throws -> T) throws -> T
    /// Runs `body` in a read-write transaction; commits if it returns, rolls back if it throws
    /// (rethrowing the error unchanged).
    func write<T>(_ body: (any StorageTransaction) throws -> T) throws -> T
    /// Closes the storage (blocks until its connections are closed); nothing may use it afterwards.
    func close() throws
}

/// A stored blob: one file of a region's blob store, named by the data-directory-relative `path`
/// that image, replica and lab rows reference.
///
/// Life cycle, each step one transaction, so a crash at any point leaves nothing referenced
/// missing and nothing unreferenced behind after the next start:
/// `writing` (row first, then the file is renamed into place) → `live` (in the same transaction
/// as its first reference) → `doomed` (in the transaction that drops its last reference) → the
/// file is unlinked, then the row deleted. Start-up finishes what a crash interrupted: `writing`
/// and `doomed` rows without references lose their file and row.
public struct BlobRecord: Hashable, Sendable {
    /// Where the blob is in its life cycle.
    public enum State: String, Sendable {
        /// Being renamed into place; not yet referenced (or referenced only by the replica row renaming it).
        case writing
        /// Referenced; may be shared by new references.
        case live
        /// Unreferenced; its file is being removed.
        case doomed
    }
    /// Path relative to the data directory.
    public var path: String
    /// Region whose store holds it.
    public var region: String
    /// Lowercase hex SHA-256 of its bytes.
    public var sha256: String
    /// Size in bytes.
    public var sizeBytes: Int64
    /// Life-cycle state.
    public var state: State
    /// Memberwise initializer.
    public init(path: String, region: String, sha256: String, sizeBytes: Int64, state: State) {
        self.path = path
        self.region = region
        self.sha256 = sha256
        self.sizeBytes = sizeBytes
        self.state = state
    }
}

/// An image row: the public ``Image`` plus where its bytes live.
public struct StoredImage: Hashable, Sendable {
    /// The image.
    public var image: Image
    /// Path of the blob relative to the data directory.
    public var blobPath: String
    /// Memberwise initializer.
    public init(image: Image, blobPath: String) {
        self.image = image
        self.blobPath = blobPath
    }
}

/// A lab row: the public ``Lab`` plus the blob its template is.
public struct StoredLab: Hashable, Sendable {
    /// The lab.
    public var lab: Lab
    /// Path of the blob (in the lab account's region) the lab's template was created from.
    public var templatePath: String
    /// OS type of the template (copied from the template image, used when saving it back).
    public var templateOSType: OSType
    /// Memberwise initializer.
    public init(lab: Lab, templatePath: String, templateOSType: OSType) {
        self.lab = lab
        self.templatePath = templatePath
        self.templateOSType = templateOSType
    }
}

/// The operations a use case can perform inside one transaction. Keys are typed names;
/// list calls return rows in ascending id order, starting strictly after `after`, at most `limit` rows
/// (`nil` limit = all). Deletes cascade to dependent rows as documented per method.
public protocol StorageTransaction {
    // MARK: Lab accounts
    /// The account, or `nil`.
    func labAccount(_ name: LabAccountName) throws -> LabAccount?
    /// Accounts ordered by id.
    func labAccounts(after: String?, limit: Int?) throws -> [LabAccount]
    /// Inserts a new account (its `attachedGallery` must exist).
    func insertLabAccount(_ account: LabAccount) throws
    /// Sets or clears the attached gallery.
    func setAttachedGallery(_ gallery: GalleryName?, of account: LabAccountName) throws
    /// Deletes the account and its image overrides (not its labs: callers refuse while it has labs).
    func deleteLabAccount(_ name: LabAccountName) throws
    /// Number of accounts with `gallery` attached.
    func countLabAccounts(attachedTo gallery: GalleryName) throws -> Int

    // MARK: Galleries
    /// The gallery, or `nil`.
    func gallery(_ name: GalleryName) throws -> Gallery?
    /// Galleries ordered by id.
    func galleries(after: String?, limit: Int?) throws -> [Gallery]
    /// Inserts a new gallery.
    func insertGallery(_ gallery: Gallery) throws
    /// Deletes the gallery with its role assignments, images, their replication records and overrides.
    func deleteGallery(_ name: GalleryName) throws

    // MARK: Role assignments
    /// Role assignments on `gallery`, ordered by principal then role.
    func roleAssignments(on gallery: GalleryName) throws -> [RoleAssignment]
    /// Adds an assignment (no-op if present).
    func grant(_ assignment: RoleAssignment, on gallery: GalleryName) throws
    /// Removes an assignment (no-op if absent).
    func revoke(_ assignment: RoleAssignment, on gallery: GalleryName) throws

    // MARK: Images
    /// The image row, or `nil`.
    func image(_ name: ImageName) throws -> StoredImage?
    /// Images of `gallery` ordered by id.
    func images(in gallery: GalleryName, after: String?, limit: Int?) throws -> [StoredImage]
    /// Inserts a new image row.
    func insertImage(_ image: StoredImage) throws
    /// Deletes the image with its replication records and overrides.
    func deleteImage(_ name: ImageName) throws

    // MARK: Replication
    /// Inserts replication rows (with their files, e.g. a shared blob of a COMPLETED row).
    func insertReplications(_ rows: [ReplicationRow]) throws
    /// Replication records of `image`, ordered by region.
    func replications(of image: ImageName) throws -> [RegionReplication]
    /// Replication rows of `image` with their files, ordered by region (the replication engine's view).
    func replicationRows(of image: ImageName) throws -> [ReplicationRow]
    /// Every replication row of every image, ordered by gallery, image, region (engine startup).
    func allReplicationRows() throws -> [ReplicationRow]
    /// Writes state, progress, error, attempts and files of an existing row; `false` if the row is gone
    /// (its image was deleted meanwhile).
    func updateReplication(_ row: ReplicationRow) throws -> Bool

    // MARK: Replication leases (fleet mode; columns lease_owner, lease_expires_at, lease_epoch)
    // Lease times are the DATABASE's clock (SQLite: REAL unix seconds from julianday('now');
    // PostgreSQL: `now()`, a timestamptz), never an instance's: every instance compares against one clock.
    /// Claims up to `limit` runnable jobs for `owner` and returns their rows with ``ReplicationRow/lease`` set.
    /// Runnable: `state` PENDING or REPLICATING, and `lease_expires_at` NULL or not after the database's now
    /// (for a PENDING row a future `lease_expires_at` with no owner is its backoff: "not before";
    /// for a REPLICATING row it is a live holder's lease). Each claimed row gets `lease_owner = owner`,
    /// `lease_expires_at = now + leaseSeconds`, `lease_epoch = lease_epoch + 1`; nothing else changes.
    /// PostgreSQL: `SELECT … WHERE <runnable> ORDER BY galleryId, imageId, region LIMIT $n FOR UPDATE SKIP LOCKED`,
    /// then the UPDATE of those keys (or one `UPDATE … WHERE (keys) IN (that SELECT) RETURNING *`), in one
    /// transaction: concurrent claimers skip each other's rows instead of waiting or double-claiming.
    func claimReplications(owner: String, limit: Int, leaseSeconds: Double) throws -> [ReplicationRow]
    /// Renews the leases `owner` holds: for each job whose row still has `lease_owner = owner` and
    /// `lease_epoch = job.lease.epoch`, sets `lease_expires_at = now + leaseSeconds` (even if it had just
    /// expired: an unchanged epoch means nobody claimed it since). Returns the jobs still held; the others
    /// were taken over or deleted. PostgreSQL: one `UPDATE … WHERE (keys, owner, epoch) … RETURNING` keys.
    func renewReplicationLeases(_ jobs: [LeasedJob], owner: String, leaseSeconds: Double) throws -> [LeasedJob]
    /// Releases a lease if still held (same owner and epoch): `lease_owner = NULL` and `lease_expires_at =
    /// now + notBeforeSeconds` (a backoff any instance honours), or NULL when `notBeforeSeconds` is nil
    /// (claimable at once). The epoch stays. Returns whether it was held.
    func releaseReplicationLease(_ job: LeasedJob, notBeforeSeconds: Double?) throws -> Bool
    /// The fenced ``updateReplication(_:)``: writes the row only if `lease_owner = lease.owner AND lease_epoch =
    /// lease.epoch`; `false` when not (lease lost) or when the row is gone. Lease columns are not changed.
    /// PostgreSQL: the same UPDATE with the two extra predicates (the row lock orders it against a claim).
    func updateReplication(_ row: ReplicationRow, fencedBy lease: ReplicationLease) throws -> Bool
    /// Partial and blob paths of rows whose lease is live now (owner set, `lease_expires_at` after the
    /// database's now): start-up recovery of another instance never touches them.
    func leasedReplicationFilePaths() throws -> Set<String>

    // MARK: Per-account image enablement (only disabled images are stored)
    /// Images disabled for `account`.
    func disabledImages(for account: LabAccountName) throws -> Set<ImageName>
    /// Marks `image` disabled (`true`) or enabled (`false`, the default) for `account`.
    func setImageDisabled(_ disabled: Bool, image: ImageName, for account: LabAccountName) throws
    /// Removes every override of `account` (all images back to enabled).
    func clearImageOverrides(for account: LabAccountName) throws

    // MARK: Labs
    /// The lab row, or `nil`.
    func lab(_ name: LabName) throws -> StoredLab?
    /// Labs of `account` ordered by id.
    func labs(in account: LabAccountName, after: String?, limit: Int?) throws -> [StoredLab]
    /// Inserts a new lab.
    func insertLab(_ lab: StoredLab) throws
    /// Deletes the lab row.
    func deleteLab(_ name: LabName) throws
    /// Number of labs in `account`.
    func countLabs(in account: LabAccountName) throws -> Int
    /// Names of labs whose template was created from `image`.
    func labs(usingTemplate image: ImageName) throws -> [String]
    /// Names of labs whose template was created from any image of `gallery`.
    func labs(usingTemplatesIn gallery: GalleryName) throws -> [String]

    // MARK: Blobs (content-addressed per region; see ``BlobRecord``)
    /// The blob stored at `path`, or `nil`.
    func blob(_ path: String) throws -> BlobRecord?
    /// A live blob of `region` with these bytes, or `nil`.
    func liveBlob(region: String, sha256: String) throws -> BlobRecord?
    /// Every blob row, ordered by path.
    func blobs() throws -> [BlobRecord]
    /// Inserts a blob row.
    func insertBlob(_ blob: BlobRecord) throws
    /// Changes a blob's state.
    func setBlobState(_ state: BlobRecord.State, path: String) throws
    /// Deletes a blob row (its file is gone).
    func deleteBlob(path: String) throws
    /// Rows referencing the blob at `path`: images, replicas (finished or being renamed) and lab templates.
    func blobReferences(_ path: String) throws -> Int

    // MARK: Files
    /// Every blob path referenced by an image, replica or lab template row.
    func referencedFilePaths() throws -> Set<String>
    /// Partial replica files that replication rows resume from.
    func partialFilePaths() throws -> Set<String>

    // MARK: Tokens
    /// Inserts a token record with the SHA-256 (hex) of its secret.
    func insertToken(_ token: TokenInfo, secretHash: String) throws
    /// The token whose secret hashes to `secretHash`, or `nil`.
    func token(secretHash: String) throws -> TokenInfo?
    /// All tokens in creation (insertion) order.
    func tokens() throws -> [TokenInfo]
    /// Marks the token revoked; returns `false` if there is no such id.
    func revokeToken(id: String) throws -> Bool
    /// Number of token records (revoked included).
    func countTokens() throws -> Int
}
