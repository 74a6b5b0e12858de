import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where everything lives under the data directory:
///
/// ```
/// <data-dir>/labgallery.sqlite                                   database (+ -wal, -shm)
/// <data-dir>/admin.token                                         first-start admin token (0600)
/// <data-dir>/regions/<region>/tmp/<random>.part                  uploads / copies in progress
/// <data-dir>/regions/<region>/partial/<gallery>/<image>.<uuid>.part   replica copies (resumable)
/// <data-dir>/regions/<region>/blobs/<ab>/<sha256>.<random>.blob  a blob: image bytes, stored once
///                                                                per region and content
/// <data-dir>/lost+found/<time>/<path>                            files start-up found but no row names
/// ```
///
/// Images, replicas and lab templates reference blobs (``BlobRecord``); a blob is deleted only
/// when its last reference goes. Final names carry a random suffix so that a blob being removed
/// and a new blob of the same bytes never share a file.
public struct DataLayout: Sendable, Equatable {
    /// The data directory.
    public let root: URL
    /// Creates a layout rooted at `root`.
    public init(root: URL) { self.root = root.standardizedFileURL }

    /// `<data-dir>/labgallery.sqlite`.
    public var databaseURL: URL { root.appendingPathComponent("labgallery.sqlite") }
    /// `<data-dir>/admin.token`.
    public var adminTokenURL: URL { root.appendingPathComponent("admin.token") }
    /// `<data-dir>/regions`.
    public var regionsURL: URL { root.appendingPathComponent("regions") }
    /// `<data-dir>/labs` (lab templates of data directories from before content-addressed blobs).
    public var labsURL: URL { root.appendingPathComponent("labs") }
    /// `<data-dir>/lost+found`: where start-up moves files that no database row names.
    public var lostAndFoundURL: URL { root.appendingPathComponent("lost+found") }

    /// Temp directory of a region's blob store.
    public func tempDirectory(region: String) -> URL {
        regionsURL.appendingPathComponent(region).appendingPathComponent("tmp")
    }
    /// Blob directory of a region.
    public func blobDirectory(region: String) -> URL {
        regionsURL.appendingPathComponent(region).appendingPathComponent("blobs")
    }
    /// Temp directory for template copies of older data directories.
    public var labTempDirectory: URL { labsURL.appendingPathComponent("tmp") }

    /// A fresh relative path for a blob of `region` holding bytes with this SHA-256.
    func newBlobPath(region: String, sha256: String) -> String {
        "regions/\(region)/blobs/\(sha256.prefix(2))/\(sha256).\(randomSuffix()).blob"
    }

    /// Absolute URL of a path relative to the data directory.
    func url(_ relativePath: String) -> URL { root.appendingPathComponent(relativePath) }

    private func randomSuffix() -> String {
        var rng = SystemRandomNumberGenerator()
        return Data((0..<8).map { _ in UInt8.random(in: .min ... .max, using: &rng) }).hexString
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

extension DataLayout {
    /// The path of a live blob of `region` with these bytes, whose file exists; `nil` if none.
    func liveBlobPath(region: String, sha256: String, _ tx: any StorageTransaction) throws -> String? {
        guard let blob = try tx.liveBlob(region: region, sha256: sha256),
            access(url(blob.path).path, F_OK) == 0
        else { return nil }
        return blob.path
    }
}
