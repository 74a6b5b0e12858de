import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

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
        let fd = fd
        let path = tempURL.path
        var written = size
        var writeback = writeback
        defer {
            size = written
            self.writeback = writeback
        }
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
        guard fsync(fd) == 0 else {
            let e = FileOps.error("fsync \(tempURL.path)")
            discard()
            throw e
        }
        close(fd)
        fd = -1
        do throws(LabGalleryError) {
            try FileOps.renameDurably(tempURL, to: finalURL)
        } catch {
            unlink(tempURL.path)
            throw error
        }
    }

    /// Closes and removes the temp file (idempotent).
    mutating func discard() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(tempURL.path)
    }
}
