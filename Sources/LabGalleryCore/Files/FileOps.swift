import CLinuxFiles
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

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

    /// Creates `url` empty with mode 0600 whatever the umask, unless it exists (then unchanged).
    /// SQLite gives the database's -wal and -shm files the database file's mode.
    static func createPrivateFile(_ url: URL) throws(LabGalleryError) {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 {
            if errno == EEXIST { return }
            throw error("create \(url.lastPathComponent)")
        }
        defer { close(fd) }
        guard fchmod(fd, 0o600) == 0 else { throw error("chmod 0600 \(url.lastPathComponent)") }
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
    static func readSome(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64, limit: Int64) -> Int
    {
        while true {
            let n = pread(fd, buffer.baseAddress, Int(min(Int64(buffer.count), limit)), off_t(offset))
            if n < 0 && errno == EINTR { continue }
            return max(n, 0)
        }
    }

    /// Writes all of `bytes` at `offset` (retrying short writes and EINTR).
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String)
        throws(LabGalleryError)
    {
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
            _ = clf_start_writeback(fd, started, end - started)
            started = end
        }
    }

    /// Copies up to `count` bytes from `source` at `from` to `target` at `to` inside the kernel
    /// (`copy_file_range(2)`: one page-cache copy instead of read's and write's two). Returns the
    /// bytes copied (0 at the source's end), or nil when the kernel cannot do it for these files
    /// (other filesystem, no support), in which case the caller reads and writes itself.
    static func copyRange(from source: Int32, at from: Int64, to target: Int32, at to: Int64, count: Int)
        throws(LabGalleryError) -> Int?
    {
        var inOffset = from
        var outOffset = to
        while true {
            let n = clf_copy_file_range(source, &inOffset, target, &outOffset, count)
            if n >= 0 { return n }
            switch errno {
            case EINTR: continue
            case EXDEV, ENOSYS, EOPNOTSUPP, EINVAL: return nil
            default: throw error("copy_file_range")
            }
        }
    }

    /// Removes a file, ignoring "does not exist" (used after commits; recovery catches leftovers).
    static func removeQuietly(_ url: URL) { unlink(url.path) }

    /// Whether the file's last modification is less than `interval` ago (`false` if it does not exist).
    static func modified(_ url: URL, within interval: Duration) -> Bool {
        var st = stat()
        guard stat(url.path, &st) == 0 else { return false }
        let mtime = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
        return Date().timeIntervalSince1970 - mtime < interval.seconds
    }

    /// Streams `source` into a new ``BlobWriter`` in `tempDir` (1 MiB at a time) and returns it
    /// uncommitted, with size and hash computed. Checks the calling task's cancellation between
    /// chunks: a cancelled copy removes its temp file and throws `.cancelled`. A missing source
    /// is DATA_LOSS naming `displayPath` (the path under the data directory: a client never sees
    /// the server's absolute paths): the database vouches for bytes that are gone.
    static func copy(_ source: URL, displayPath: String, into tempDir: URL) throws(LabGalleryError) -> BlobWriter {
        let sfd = open(source.path, O_RDONLY | O_CLOEXEC)
        guard sfd >= 0 else {
            if errno == ENOENT { throw LabGalleryError.missingBlob(displayPath) }
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
                let e = error("read \(source.path)")
                writer.discard()
                throw e
            }
            if n == 0 { break }
            do throws(LabGalleryError) {
                try LabGalleryService.checkCancellation()
                try writer.write(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            } catch {
                writer.discard()
                throw error
            }
        }
        return writer
    }

    /// Regular files under `dir`, recursively, as paths relative to `root` (empty if `dir` is missing).
    static func files(under dir: URL, relativeTo root: URL) -> [String] {
        guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey]) else {
            return []
        }
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
