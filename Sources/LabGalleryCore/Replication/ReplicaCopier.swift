import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Moves and hashes a replica's bytes: from the image's blob in its home region into the job's
/// partial file in the target region, over a ``ReplicaLink``. Blocking: runs on the job's thread.
///
/// Each chunk is copied inside the kernel when it can (`copy_file_range`), then read back from the
/// page cache into a ``HashPipeline`` slot, so what is verified is what was written and SHA-256
/// runs on its own thread beside the copy; writeback starts as it goes and a ``ProgressPersister``
/// makes the offset durable every ``persistEvery`` bytes without pausing the copy. A run resumes
/// from the durable prefix the row vouches for (truncating anything past it, re-hashing the rest).
/// Nothing here knows the database or the engine: they come in through ``Progress``.
struct ReplicaCopier: Sendable {
    /// Bytes per read/write (and hash slot).
    var chunkSize: Int
    /// Progress is made durable as soon as this many more bytes are written.
    var persistEvery: Int64

    /// What to copy, where to.
    struct Request: Sendable {
        /// The image's blob (the source).
        var source: URL
        /// Home region of the image (for messages).
        var sourceRegion: String
        /// Size the image's row records.
        var size: Int64
        /// SHA-256 the image's row records (lowercase hex).
        var sha256: String
        /// The partial replica file and its data-directory-relative name (for messages).
        var partial: URL
        var partialName: String
        /// Target region.
        var region: String
        /// Offset the job's row says is durable in the partial file.
        var durableOffset: Int64
        /// Attempt number (1-based).
        var attempt: Int
    }

    /// How the copy reports to its job.
    struct Progress {
        /// Records a new durable offset when the run's starting offset differs from the row's
        /// (throws as the job's steps do).
        var recordStart: (Int64) throws(JobError) -> Void
        /// Records a durable offset from the persister's thread: `nil` when recorded, else why the copy must stop.
        var recordDurable: @Sendable (Int64) -> ProgressPersister.State?
        /// Bytes up to this offset were written (and `n` more copied by this run).
        var copied: (_ offset: Int64, _ n: Int64) -> Void
        /// The run proved it may write (``JobControl``) and is about to write the chunk at this offset.
        var willWrite: (_ offset: Int64) -> Void = { _ in }
    }

    /// How a run ended without an error.
    enum Result: Equatable, Sendable {
        /// Every byte is in the partial file, fsynced, and its SHA-256 is the image's.
        case verified
        /// The job was told to stop (shutdown or deletion) before the end.
        case stopped(JobSignal)
    }

    /// Copies the rest of the replica. Throws ``JobError/copyFailed(reason:discard:)`` (discard when
    /// the partial copy cannot be trusted), ``JobError/rowGone`` or ``JobError/recordFailed(reason:)``
    /// from `progress`.
    func copy(_ r: Request, link: any ReplicaLink, control: JobControl, progress: Progress) throws(JobError) -> Result {
        let total = r.size
        let setUp = link.setUpDelay(attempt: r.attempt)
        if setUp > .zero, !Self.pause(setUp, control) { return .stopped(control.value) }
        if let reason = link.unreachable(attempt: r.attempt) { throw .copyFailed(reason: reason, discard: false) }
        do { try FileOps.createDirectory(r.partial.deletingLastPathComponent()) } catch {
            throw .copyFailed(
                reason: "cannot create the replica directory in \(r.region): \(error.message)", discard: false)
        }
        let fd = open(r.partial.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw .copyFailed(
                reason: "cannot open \(r.partialName): \(String(cString: strerror(errno)))", discard: false)
        }
        var fdOpen = true
        defer { if fdOpen { close(fd) } }
        let src = open(r.source.path, O_RDONLY | O_CLOEXEC)
        guard src >= 0 else {
            throw .copyFailed(
                reason:
                    "cannot read the image in its home region \(r.sourceRegion): \(String(cString: strerror(errno)))",
                discard: false)
        }
        defer { close(src) }

        // SHA-256 of the replica's bytes runs on its own thread, overlapping the reads and writes.
        let hash = HashPipeline(slotSize: chunkSize)

        // Keep only the durable prefix the row vouches for, and re-hash it.
        var offset = r.durableOffset
        var st = stat()
        if fstat(fd, &st) != 0 || Int64(st.st_size) < offset { offset = 0 }
        if !control.shouldRun { return .stopped(control.value) }
        guard ftruncate(fd, off_t(offset)) == 0 else {
            throw .copyFailed(
                reason: "cannot truncate \(r.partialName): \(String(cString: strerror(errno)))", discard: true)
        }
        var hashed: Int64 = 0
        while hashed < offset {
            let piece = hash.fill { slot in FileOps.readSome(fd, into: slot, at: hashed, limit: offset - hashed) }
            guard !piece.isEmpty else {
                throw .copyFailed(reason: "cannot re-read the partial replica \(r.partialName)", discard: true)
            }
            hashed += Int64(piece.count)
        }
        if r.durableOffset != offset { try progress.recordStart(offset) }

        let start = ContinuousClock.now
        let runStart = offset
        var sent: Int64 = 0
        var writeback = FileOps.Writeback(from: offset)
        var kernelCopy = true  // until copy_file_range says it cannot copy between these files
        let persister = ProgressPersister(fd: fd, offset: offset, every: persistEvery, persist: progress.recordDurable)
        defer { _ = persister.stop() }
        while offset < total {
            // Fleet mode: the lease is proven (monotonic clock) right before each chunk is written.
            if !control.shouldRun { return .stopped(control.value) }
            progress.willWrite(offset)
            let piece = try hash.fill { (slot) throws(JobError) in
                let want = Int(min(Int64(slot.count), total - offset))
                let n: Int
                do throws(LabGalleryError) {
                    // Inside the kernel when it can, then read back (from the page cache) for the hash.
                    if kernelCopy,
                        let copied = try FileOps.copyRange(from: src, at: offset, to: fd, at: offset, count: want)
                    {
                        n = copied
                        guard n == 0 || FileOps.readSome(fd, into: slot, at: offset, limit: Int64(n)) == n else {
                            throw .internal(message: "re-reading \(n) bytes of the replica at offset \(offset) failed")
                        }
                    } else {
                        kernelCopy = false
                        n = FileOps.readSome(src, into: slot, at: offset, limit: Int64(want))
                        try FileOps.writeAll(
                            fd, UnsafeRawBufferPointer(rebasing: slot[0..<n]), at: offset, path: r.partialName)
                    }
                } catch {
                    throw .copyFailed(reason: "copy to \(r.region) failed: \(error.message)", discard: false)
                }
                guard n > 0 else { return 0 }
                let bytes = UnsafeMutableRawBufferPointer(rebasing: slot[0..<n])
                let changed: Bool
                do throws(LinkFailure) {
                    changed = try link.received(
                        bytes, in: LinkTransfer(attempt: r.attempt, start: runStart, offset: offset, total: total))
                } catch {
                    throw .copyFailed(reason: error.reason, discard: false)
                }
                if changed {
                    do throws(LabGalleryError) {
                        try FileOps.writeAll(fd, UnsafeRawBufferPointer(bytes), at: offset, path: r.partialName)
                    } catch {
                        throw .copyFailed(reason: "copy to \(r.region) failed: \(error.message)", discard: false)
                    }
                }
                return n
            }
            let n = piece.count
            guard n > 0 else {
                throw .copyFailed(
                    reason:
                        "the image in \(r.sourceRegion) is shorter than its recorded size (\(offset) of \(total) bytes); it may be damaged",
                    discard: false)
            }
            offset += Int64(n)
            sent += Int64(n)
            writeback.advance(fd, to: offset)
            switch persister.advance(to: offset) {
            case .running: break
            case .deleted: throw .rowGone
            case .leaseLost: throw .leaseLost
            case .failed(let reason): throw .copyFailed(reason: reason, discard: false)
            }
            progress.copied(offset, Int64(n))
            let due = link.transferTime(for: sent)
            if due > .zero {
                let elapsed = ContinuousClock.now - start
                if due > elapsed, !Self.pause(due - elapsed, control) { return .stopped(control.value) }
            }
        }

        switch persister.stop() {
        case .running: break
        case .deleted: throw .rowGone
        case .leaseLost: throw .leaseLost
        case .failed(let reason): throw .copyFailed(reason: reason, discard: false)
        }
        guard fsync(fd) == 0 else {
            throw .copyFailed(
                reason: "fsync in \(r.region) failed: \(String(cString: strerror(errno)))", discard: false)
        }
        close(fd)
        fdOpen = false
        let digest = hash.finish()
        guard digest == r.sha256 else {
            throw .copyFailed(
                reason:
                    "checksum mismatch: the replica in \(r.region) hashes to \(digest) but the image's SHA-256 is \(r.sha256); the copy was discarded",
                discard: true)
        }
        return .verified
    }

    /// Sleeps up to `duration`, in slices, returning early (false) once the job is asked to stop.
    static func pause(_ duration: Duration, _ control: JobControl) -> Bool {
        let end = ContinuousClock.now + duration
        while ContinuousClock.now < end {
            if !control.shouldRun { return false }
            let left = end - ContinuousClock.now
            let slice = min(left, .milliseconds(50))
            let us = slice.components.seconds * 1_000_000 + slice.components.attoseconds / 1_000_000_000_000
            if us > 0 { usleep(UInt32(us)) }
        }
        return control.shouldRun
    }
}
