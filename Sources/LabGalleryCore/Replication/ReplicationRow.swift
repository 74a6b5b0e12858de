import Foundation

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
    /// The lease this instance holds on the job (fleet mode): every write of the row is then fenced
    /// by it (``StorageTransaction/updateReplication(_:fencedBy:)``). `nil`: unfenced writes (one instance).
    public var lease: ReplicationLease? = nil
    /// Memberwise initializer.
    public init(image: ImageName, record: RegionReplication, partialPath: String?, blobPath: String?) {
        self.image = image
        self.record = record
        self.partialPath = partialPath
        self.blobPath = blobPath
    }
    /// Every file of the row (partial and finished replica).
    public var files: [String] { [partialPath, blobPath].compactMap { $0 } }
}

/// A job's lease (fleet mode): who holds it and the fencing token of that claim.
///
/// Every claim of a job increments `lease_epoch`, so a holder whose lease expired and was claimed
/// by another instance can never write the row again: its writes name the old epoch.
public struct ReplicationLease: Hashable, Sendable {
    /// The holding instance's id (`lease_owner`).
    public var owner: String
    /// The fencing token (`lease_epoch` after the claim).
    public var epoch: Int64
    /// Memberwise initializer.
    public init(owner: String, epoch: Int64) {
        self.owner = owner
        self.epoch = epoch
    }
}

/// One job's lease, as renewed: which job, held by which claim.
public struct LeasedJob: Hashable, Sendable {
    /// The replicated image.
    public var image: ImageName
    /// The job's target region.
    public var region: String
    /// The claim.
    public var lease: ReplicationLease
    /// Memberwise initializer.
    public init(image: ImageName, region: String, lease: ReplicationLease) {
        self.image = image
        self.region = region
        self.lease = lease
    }
}
