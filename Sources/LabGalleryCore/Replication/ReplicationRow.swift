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
