import Crypto
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
    public func tempDirectory(region: String) -> URL { regionsURL.appendingPathComponent(region).appendingPathComponent("tmp") }
    /// Blob directory of a region.
    public func blobDirectory(region: String) -> URL { regionsURL.appendingPathComponent(region).appendingPathComponent("blobs") }
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

/// A temporary file being written: bytes go straight to disk (never buffered whole in memory)
/// and through a SHA-256 computed on its own thread (``HashPipeline``); writeback to the disk
/// starts as data arrives, so the final fsync has little left to do. `commit` makes the file
/// durable under its final name; `discard` removes it. Owned by one upload/copy at a time.
struct BlobWriter: Sendable {
    private(set) var fd: Int32
    let tempURL: URL
    private let hash = HashPipeline()
    private(set) var size: Int64 = 0
    private var writeback = FileOps.Writeback()

    /// Creates `<dir>/<random>.part` exclusively (mode 0600), creating `dir` if needed.
    init(in dir: URL) throws(LabGalleryError) {
        try FileOps.createDirectory(dir)
        var rng = SystemRandomNumberGenerator()
        let name = Data((0..<16).map { _ in UInt8.random(in: .min ... .max, using: &rng) }).hexString + ".part"
        tempURL = dir.appendingPathComponent(name)
        fd = open(tempURL.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileOps.error("create \(tempURL.path)") }
    }

    /// Appends bytes and feeds the hash (which runs while the bytes are being written).
    mutating func write(_ bytes: UnsafeRawBufferPointer) throws(LabGalleryError) {
        guard !bytes.isEmpty else { return }
        let fd = fd, path = tempURL.path
        var written = size
        var writeback = writeback
        defer { size = written; self.writeback = writeback }
        try hash.feed(bytes) { (piece) throws(LabGalleryError) in
            try FileOps.writeAll(fd, piece, at: written, path: path)
            written += Int64(piece.count)
            writeback.advance(fd, to: written)
        }
    }

    /// Lowercase hex SHA-256 of everything written (waits for the hash thread); nothing may be
    /// written afterwards.
    var sha256: String { hash.finish() }

    /// fsync + close the temp file, rename it to `layout.url(relativePath)` (creating parent
    /// directories) and fsync the parent directory so the rename itself is durable.
    mutating func commit(to finalURL: URL) throws(LabGalleryError) {
        guard fsync(fd) == 0 else { let e = FileOps.error("fsync \(tempURL.path)"); discard(); throw e }
        close(fd); fd = -1
        do throws(LabGalleryError) {
            try FileOps.renameDurably(tempURL, to: finalURL)
        } catch {
            unlink(tempURL.path)
            throw error
        }
    }

    /// Closes and removes the temp file (idempotent).
    mutating func discard() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(tempURL.path)
    }
}

/// Small POSIX helpers with errors mapped to ``LabGalleryError/internal(message:)``.
enum FileOps {
    static func error(_ what: String) -> LabGalleryError {
        .internal(message: "\(what) failed: \(String(cString: strerror(errno)))")
    }

    static func createDirectory(_ url: URL) throws(LabGalleryError) {
        do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
            throw .internal(message: "cannot create directory \(url.path): \(error)")
        }
    }

    /// Creates `url` and any missing parents, fsyncing the parent of each directory it creates,
    /// so a new gallery or region directory survives a power loss with the files inside it.
    static func createDirectoryDurably(_ url: URL) throws(LabGalleryError) {
        var missing: [URL] = []
        var dir = url.standardizedFileURL
        while access(dir.path, F_OK) != 0, dir.path != "/" {
            missing.append(dir)
            dir = dir.deletingLastPathComponent()
        }
        for d in missing.reversed() {
            if mkdir(d.path, 0o755) != 0 && errno != EEXIST { throw error("create directory \(d.path)") }
            try fsyncDirectory(d.deletingLastPathComponent())
        }
    }

    /// Renames `source` to `target` (creating `target`'s directory durably) and fsyncs the
    /// target directory, so the new name survives a power loss.
    static func renameDurably(_ source: URL, to target: URL) throws(LabGalleryError) {
        let parent = target.deletingLastPathComponent()
        try createDirectoryDurably(parent)
        guard rename(source.path, target.path) == 0 else { throw error("rename to \(target.path)") }
        try fsyncDirectory(parent)
    }

    /// Unlinks a file and fsyncs its directory (the removal is durable before its row goes);
    /// a file already gone is fine.
    static func removeDurably(_ url: URL) {
        guard unlink(url.path) == 0 else { return }
        try? fsyncDirectory(url.deletingLastPathComponent())
    }

    static func fsyncDirectory(_ url: URL) throws(LabGalleryError) {
        let dfd = open(url.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw error("open directory \(url.path)") }
        defer { close(dfd) }
        guard fsync(dfd) == 0 else { throw error("fsync directory \(url.path)") }
    }

    /// One `pread` of up to `limit` bytes into `buffer` at `offset` (retrying EINTR); 0 at end of
    /// file or on error, which the caller reports with its own context.
    static func readSome(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64, limit: Int64) -> Int {
        while true {
            let n = pread(fd, buffer.baseAddress, Int(min(Int64(buffer.count), limit)), off_t(offset))
            if n < 0 && errno == EINTR { continue }
            return max(n, 0)
        }
    }

    /// Writes all of `bytes` at `offset` (retrying short writes and EINTR).
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String) throws(LabGalleryError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, base + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw error("write \(path)")
            }
            done += n
        }
    }

    /// Starts writeback of a file's new data every few MiB, without waiting for it, so the
    /// disk works while more data arrives and the closing fsync finds little left to flush.
    /// Best effort: errors are left for the fsync that makes the data durable to report.
    struct Writeback: Sendable {
        private static let step: Int64 = 8 << 20
        private var started: Int64

        init(from offset: Int64 = 0) { started = offset }

        mutating func advance(_ fd: Int32, to end: Int64) {
            guard end - started >= Self.step else { return }
            _ = FileOps.syncFileRange?(fd, started, end - started, 2 /* SYNC_FILE_RANGE_WRITE */)
            started = end
        }
    }

    /// Copies up to `count` bytes from `source` at `from` to `target` at `to` inside the kernel
    /// (`copy_file_range(2)`: one page-cache copy instead of read's and write's two). Returns the
    /// bytes copied (0 at the source's end), or nil when the kernel cannot do it for these files
    /// (other filesystem, no support), in which case the caller reads and writes itself.
    static func copyRange(from source: Int32, at from: Int64, to target: Int32, at to: Int64, count: Int) throws(LabGalleryError) -> Int? {
        guard let copyFileRange else { return nil }
        var inOffset = from, outOffset = to
        while true {
            let n = copyFileRange(source, &inOffset, target, &outOffset, count, 0)
            if n >= 0 { return n }
            switch errno {
            case EINTR: continue
            case EXDEV, ENOSYS, EOPNOTSUPP, EINVAL: return nil
            default: throw error("copy_file_range")
            }
        }
    }

    // Glibc's Swift module does not export these GNU calls (they need _GNU_SOURCE).
    private static let syncFileRange = libc("sync_file_range", as: (@convention(c) (Int32, Int64, Int64, UInt32) -> Int32).self)
    private static let copyFileRange = libc("copy_file_range",
        as: (@convention(c) (Int32, UnsafeMutablePointer<Int64>?, Int32, UnsafeMutablePointer<Int64>?, Int, UInt32) -> Int).self)

    private static func libc<F>(_ name: String, as type: F.Type) -> F? {
        dlsym(nil, name).map { unsafeBitCast($0, to: type) }
    }

    /// Removes a file, ignoring "does not exist" (used after commits; recovery catches leftovers).
    static func removeQuietly(_ url: URL) { unlink(url.path) }

    /// Streams `source` into a new ``BlobWriter`` in `tempDir` (1 MiB at a time) and returns it
    /// uncommitted, with size and hash computed. Checks the calling task's cancellation between
    /// chunks: a cancelled copy removes its temp file and throws `.cancelled`. A missing source
    /// is DATA_LOSS: the database vouches for bytes that are gone.
    static func copy(_ source: URL, into tempDir: URL) throws(LabGalleryError) -> BlobWriter {
        let sfd = open(source.path, O_RDONLY | O_CLOEXEC)
        guard sfd >= 0 else {
            if errno == ENOENT { throw LabGalleryError.missingBlob(source.path) }
            throw error("open \(source.path)")
        }
        defer { close(sfd) }
        var writer = try BlobWriter(in: tempDir)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(sfd, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                let e = error("read \(source.path)"); writer.discard(); throw e
            }
            if n == 0 { break }
            do throws(LabGalleryError) {
                try LabGalleryService.checkCancellation()
                try writer.write(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            } catch { writer.discard(); throw error }
        }
        return writer
    }

    /// Regular files under `dir`, recursively, as paths relative to `root` (empty if `dir` is missing).
    static func files(under dir: URL, relativeTo root: URL) -> [String] {
        guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        // Resolve symlinks on both sides (e.g. macOS /var → /private/var) so prefixes match.
        let rootPath = root.resolvingSymlinksInPath().path + "/"
        var out: [String] = []
        for case let url as URL in e {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            let p = url.resolvingSymlinksInPath().path
            if p.hasPrefix(rootPath) { out.append(String(p.dropFirst(rootPath.count))) }
        }
        return out
    }

    /// Writes `contents` to a new file with mode 0600 (replacing a stale one), fsynced.
    static func writeSecretFile(_ url: URL, contents: String) throws(LabGalleryError) {
        unlink(url.path)
        let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileOps.error("create \(url.path)") }
        defer { close(fd) }
        let bytes = Array(contents.utf8)
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count, fsync(fd) == 0 else { throw FileOps.error("write \(url.path)") }
        try FileOps.fsyncDirectory(url.deletingLastPathComponent())
    }
}
