import Crypto
import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Copies every image to the other regions of its gallery's geography, durably and resumably, and
/// publishes every change to watchers.
///
/// - One job per (image, target region): PENDING → REPLICATING → COMPLETED, or FAILED after
///   ``ReplicationConfiguration/maxAttempts`` attempts (capped exponential backoff in between; while
///   waiting the job is PENDING with the last error). ``retry(image:regions:caller:)`` starts over.
/// - A job writes `regions/<r>/partial/…part`; a background thread fsyncs it and persists its offset every
///   ``ReplicationConfiguration/persistEvery`` bytes (data first, then the row, so the persisted
///   offset never exceeds the durable bytes). After a crash the job truncates the partial file to the
///   persisted offset, re-hashes that prefix and continues. At the end the replica is fsynced, its
///   SHA-256 compared with the image's (a mismatch fails the attempt and discards the copy), renamed
///   into `regions/<r>/blobs/` and the row marked COMPLETED; a COMPLETED row is never copied again.
/// - At most ``ReplicationConfiguration/concurrency`` jobs run, each on its own thread (blocking file
///   I/O and WAN pacing stay off the Swift concurrency pool, so RPC handling is never starved).
public final class ReplicationEngine: ReplicationHooks.Observer {
    /// The core whose images are replicated.
    public let service: LabGalleryService
    /// Engine settings.
    public let configuration: ReplicationConfiguration

    private struct JobKey: Hashable, Sendable {
        var image: ImageName
        var region: String
    }

    /// Stop request of a running job: checked between chunks.
    private final class JobControl: Sendable {
        static let run = 0, shutdown = 1, deleted = 2
        let flag = Atomic<Int>(0)
        var value: Int { flag.load(ordering: .acquiring) }
    }

    private struct Entry {
        var name: ImageName
        var regions: [RegionReplication]
        var lastPublished: ContinuousClock.Instant?
        var status: ReplicationStatus { ReplicationStatus(image: name.description, regions: regions) }
    }

    private struct State {
        var images: [String: Entry] = [:]
        var imageWatchers: [String: [Int: WatchMailbox]] = [:]
        var galleryWatchers: [String: [Int: WatchMailbox]] = [:]
        var nextWatcherID = 0
        var ready: [JobKey] = []
        var running: [JobKey: JobControl] = [:]
        var started = false
        var stopped = false
        var watchersClosed = false
    }

    private let state = Mutex(State())
    private let threads = DispatchGroup()
    private let copiedBytes = Atomic<Int64>(0)

    /// Creates an engine (idle until ``start()``).
    public init(service: LabGalleryService, configuration: ReplicationConfiguration = .init()) {
        self.service = service; self.configuration = configuration
    }

    /// Bytes written to replica files by this engine since it was created (resumed prefixes excluded).
    public var bytesCopied: Int64 { copiedBytes.load(ordering: .relaxed) }

    /// Jobs running now.
    public var runningJobs: Int { state.withLock { $0.running.count } }

    private var layout: DataLayout { service.layout }

    // MARK: - Lifecycle

    /// Loads every replication row, queues the unfinished jobs (REPLICATING ones resume from their
    /// persisted offset) and starts listening to image creation and deletion.
    public func start() throws(LabGalleryError) {
        let rows = try service.read { tx in try tx.allReplicationRows() }
        let starts = state.withLock { s -> [(JobKey, JobControl)] in
            guard !s.started else { return [] }
            s.started = true
            for row in rows {
                s.images[row.image.description, default: Entry(name: row.image, regions: [])].regions.append(row.record)
                if row.record.state == .pending || row.record.state == .replicating {
                    s.ready.append(JobKey(image: row.image, region: row.record.region))
                }
            }
            return schedule(&s)
        }
        service.replicationHooks.setObserver(self)
        launch(starts)
    }

    /// Ends every watch stream with ``ReplicationWatchError/shutdown`` and refuses new ones.
    public func closeWatchers() {
        let wake = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.watchersClosed = true
            var wake: [CheckedContinuation<Void, Never>] = []
            for m in s.imageWatchers.values.flatMap(\.values) + s.galleryWatchers.values.flatMap(\.values) {
                if let w = m.finish(shutdown: true) { wake.append(w) }
            }
            s.imageWatchers = [:]
            s.galleryWatchers = [:]
            return wake
        }
        for w in wake { w.resume() }
    }

    /// Stops: closes watchers, asks running jobs to stop (their rows keep the last persisted offset,
    /// so they resume on the next start) and waits until every job thread has returned.
    public func stop() async {
        service.replicationHooks.setObserver(nil)
        closeWatchers()
        state.withLock { s in
            s.stopped = true
            s.ready = []
            for c in s.running.values { c.flag.store(JobControl.shutdown, ordering: .releasing) }
        }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            threads.notify(queue: .global()) { c.resume() }
        }
    }

    // MARK: - Hooks

    /// Loads the new image's rows, publishes its status and queues its jobs.
    public func imageStored(_ image: ImageName) {
        guard let rows = try? service.read({ tx in try tx.replicationRows(of: image) }) else { return }
        var wake: [CheckedContinuation<Void, Never>] = []
        let starts = state.withLock { s -> [(JobKey, JobControl)] in
            guard !s.stopped else { return [] }
            s.images[image.description] = Entry(name: image, regions: rows.map(\.record))
            for r in rows where r.record.state == .pending { s.ready.append(JobKey(image: image, region: r.record.region)) }
            wake = publish(image.description, &s, force: true)
            return schedule(&s)
        }
        for w in wake { w.resume() }
        launch(starts)
    }

    /// Stops the image's jobs (they discard their partial files) and ends its watch streams with NOT_FOUND.
    public func imageDeleted(_ image: ImageName) {
        let key = image.description
        let wake = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.images[key] = nil
            s.ready.removeAll { $0.image == image }
            for (k, c) in s.running where k.image == image { c.flag.store(JobControl.deleted, ordering: .releasing) }
            let watchers = s.imageWatchers.removeValue(forKey: key) ?? [:]
            return watchers.values.compactMap { $0.finish(shutdown: false, error: .notFound(resource: key, message: "\(key) was deleted while being watched")) }
        }
        for w in wake { w.resume() }
    }

    // MARK: - Status, watching, retry

    /// GetReplicationStatus (reader): the live status (fresher than the persisted progress).
    public func status(image: String, caller: Principal) throws(LabGalleryError) -> ReplicationStatus {
        let persisted = try service.replicationStatus(image: image, caller: caller)
        return state.withLock { $0.images[persisted.image]?.status } ?? persisted
    }

    /// WatchReplication (reader): the first ``ReplicationWatch/next()`` is the full current state;
    /// then one full status per change (coalesced for slow readers); `nil` after a COMPLETED/FAILED one.
    public func watch(image: String, caller: Principal) throws(LabGalleryError) -> ReplicationWatch {
        let persisted = try service.replicationStatus(image: image, caller: caller)
        let key = persisted.image
        let mailbox = WatchMailbox()
        let (id, wake): (Int?, CheckedContinuation<Void, Never>?) = state.withLock { s in
            if s.watchersClosed { return (nil, mailbox.finish(shutdown: true)) }
            if let entry = s.images[key] {
                let id = s.nextWatcherID
                s.nextWatcherID += 1
                s.imageWatchers[key, default: [:]][id] = mailbox
                return (id, mailbox.post(entry.status))
            }
            // Not tracked: no replication rows (COMPLETED at once), or deleted a moment ago.
            if persisted.aggregatedState == .replicating && s.started {
                return (nil, mailbox.finish(shutdown: false, error: .notFound(key)))
            }
            return (nil, mailbox.post(persisted))
        }
        wake?.resume()
        return ReplicationWatch(mailbox: mailbox, endsWhenTerminal: true) { [weak self] in
            guard let id else { return }
            _ = self?.state.withLock { s in s.imageWatchers[key]?.removeValue(forKey: id) }
        }
    }

    /// WatchGalleryReplication (reader): the current status of every image of the gallery, then
    /// every change (images added later included), until the caller stops reading.
    public func watchGallery(gallery: String, caller: Principal) throws(LabGalleryError) -> ReplicationWatch {
        try require(.reader, for: caller)
        let g = try GalleryName(parsing: gallery, field: "gallery")
        let persisted: [ReplicationStatus] = try service.read { tx in
            _ = try service.requireGallery(g, tx)
            return try tx.images(in: g, after: nil, limit: nil).map { stored in
                let n = try ImageName(parsing: stored.image.name, field: "name")
                return ReplicationStatus(image: n.description, regions: try tx.replications(of: n))
            }
        }
        let mailbox = WatchMailbox()
        let key = g.description
        let (id, wake): (Int?, [CheckedContinuation<Void, Never>]) = state.withLock { s in
            if s.watchersClosed { return (nil, [mailbox.finish(shutdown: true)].compactMap { $0 }) }
            let id = s.nextWatcherID
            s.nextWatcherID += 1
            s.galleryWatchers[key, default: [:]][id] = mailbox
            let wake = persisted.compactMap { p in mailbox.post(s.images[p.image]?.status ?? p) }
            return (id, wake)
        }
        for w in wake { w.resume() }
        return ReplicationWatch(mailbox: mailbox, endsWhenTerminal: false) { [weak self] in
            guard let id else { return }
            _ = self?.state.withLock { s in s.galleryWatchers[key]?.removeValue(forKey: id) }
        }
    }

    /// RetryReplication (admin): re-queues FAILED regions (all of them when `regions` is empty) from
    /// scratch (attempts reset). INVALID_ARGUMENT (`regions`) for a region that is not a replication
    /// target of the image; FAILED_PRECONDITION for a named region that has not failed.
    public func retry(image: String, regions: [String], caller: Principal) throws(LabGalleryError) -> ReplicationStatus {
        try require(.admin, for: caller)
        let n = try ImageName(parsing: image, field: "image")
        let rows: [ReplicationRow] = try service.write { tx in
            let stored = try service.requireImage(n, tx)
            var rows = try tx.replicationRows(of: n)
            let targets = rows.map(\.record.region)
            for r in regions where !targets.contains(r) {
                let why = r == stored.image.region ? "it is the image's home region" : "it is not another region of the gallery's geography"
                throw LabGalleryError.invalid("regions", "\(n) does not replicate to \"\(r)\" (\(why)); its target regions are \(targets.joined(separator: ", "))")
            }
            for r in regions {
                let row = rows.first { $0.record.region == r }!
                guard row.record.state == .failed else {
                    throw LabGalleryError.failedPrecondition(message: "replication of \(n) to \(r) is \(row.record.state.rawValue), not FAILED; only failed regions can be retried")
                }
            }
            for i in rows.indices where rows[i].record.state == .failed && (regions.isEmpty || regions.contains(rows[i].record.region)) {
                rows[i].record = RegionReplication(region: rows[i].record.region, state: .pending, bytesCopied: 0,
                                                   bytesTotal: rows[i].record.bytesTotal, error: nil, attempts: 0)
                if let p = rows[i].partialPath { FileOps.removeQuietly(layout.url(p)) }
                rows[i].partialPath = nil
                _ = try tx.updateReplication(rows[i])
            }
            return rows
        }
        var wake: [CheckedContinuation<Void, Never>] = []
        let starts = state.withLock { s -> [(JobKey, JobControl)] in
            guard s.images[n.description] != nil else { return [] }
            for row in rows { setRecord(row.record, of: n, &s) }
            for row in rows where row.record.state == .pending && row.record.attempts == 0 {
                let k = JobKey(image: n, region: row.record.region)
                if s.running[k] == nil && !s.ready.contains(k) { s.ready.append(k) }
            }
            wake = publish(n.description, &s, force: true)
            return schedule(&s)
        }
        for w in wake { w.resume() }
        launch(starts)
        return ReplicationStatus(image: n.description, regions: rows.map(\.record))
    }

    // MARK: - Scheduling

    private func schedule(_ s: inout State) -> [(JobKey, JobControl)] {
        var starts: [(JobKey, JobControl)] = []
        while !s.stopped, s.running.count < configuration.concurrency, !s.ready.isEmpty {
            let k = s.ready.removeFirst()
            guard s.running[k] == nil, s.images[k.image.description] != nil else { continue }
            let c = JobControl()
            s.running[k] = c
            starts.append((k, c))
        }
        return starts
    }

    private func launch(_ starts: [(JobKey, JobControl)]) {
        for (key, control) in starts {
            threads.enter()
            // A dedicated thread per running job: blocking reads, writes, fsyncs and pacing sleeps.
            let thread = Thread { [self] in
                run(key, control: control)
                let next = state.withLock { s -> [(JobKey, JobControl)] in
                    s.running[key] = nil
                    return schedule(&s)
                }
                launch(next)
                threads.leave()
            }
            thread.name = "replication \(key.image.id)→\(key.region)"
            thread.start()
        }
    }

    private func requeue(_ key: JobKey, after delay: Duration) {
        let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            let starts = state.withLock { s -> [(JobKey, JobControl)] in
                guard !s.stopped, let e = s.images[key.image.description],
                      e.regions.first(where: { $0.region == key.region })?.state == .pending,
                      s.running[key] == nil, !s.ready.contains(key) else { return [] }
                s.ready.append(key)
                return schedule(&s)
            }
            launch(starts)
        }
    }

    // MARK: - Publishing

    private func setRecord(_ record: RegionReplication, of image: ImageName, _ s: inout State) {
        guard var e = s.images[image.description] else { return }
        if let i = e.regions.firstIndex(where: { $0.region == record.region }) { e.regions[i] = record } else {
            e.regions.append(record)
            e.regions.sort { $0.region < $1.region }
        }
        s.images[image.description] = e
    }

    /// Posts the image's status to its watchers (inside the lock, so they see changes in order);
    /// returns the continuations to resume outside it. Progress-only updates are rate-limited.
    private func publish(_ key: String, _ s: inout State, force: Bool) -> [CheckedContinuation<Void, Never>] {
        guard var e = s.images[key] else { return [] }
        let now = ContinuousClock.now
        if !force, let last = e.lastPublished, now - last < configuration.progressInterval { return [] }
        e.lastPublished = now
        s.images[key] = e
        let status = e.status
        var wake: [CheckedContinuation<Void, Never>] = []
        for m in (s.imageWatchers[key]?.values).map(Array.init) ?? [] { if let w = m.post(status) { wake.append(w) } }
        for m in (s.galleryWatchers[e.name.gallery.description]?.values).map(Array.init) ?? [] {
            if let w = m.post(status) { wake.append(w) }
        }
        return wake
    }

    private func update(_ record: RegionReplication, of image: ImageName, force: Bool) {
        let wake = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            setRecord(record, of: image, &s)
            return publish(image.description, &s, force: force)
        }
        for w in wake { w.resume() }
    }

    // MARK: - One job run (on its own thread)

    private struct CopyFailure: Error {
        var reason: String
        /// The partial copy cannot be trusted (checksum mismatch): start the next attempt from zero.
        var discard: Bool
    }

    private enum Outcome { case stopped, deleted, done(String) }

    private func persist(_ row: ReplicationRow) -> Bool {
        (try? service.storage.write { tx in try tx.updateReplication(row) }) ?? false
    }

    private func run(_ key: JobKey, control: JobControl) {
        guard let (found, source) = try? service.storage.read({ tx in
            (try tx.replicationRows(of: key.image).first { $0.record.region == key.region }, try tx.image(key.image))
        }), var row = found, let source else { return }
        guard row.record.state == .pending || row.record.state == .replicating else { return }
        let link = configuration.link(to: key.region)
        // A REPLICATING row was interrupted by a crash or shutdown: the same attempt continues.
        if row.record.state == .pending { row.record.attempts += 1 }
        row.record.state = .replicating
        row.record.bytesTotal = source.image.sizeBytes
        if row.partialPath == nil {
            row.partialPath = layout.newReplicaPartialPath(region: key.region, image: key.image)
            row.record.bytesCopied = 0
        }
        guard persist(row) else { return discard(row) }
        update(row.record, of: key.image, force: true)
        let attempt = row.record.attempts

        do {
            // Interrupted after the rename (see `copy`): the replica under its final name was
            // verified before the rename, so it only needs to be recorded as COMPLETED.
            let renamed = row.blobPath.flatMap { access(layout.url($0).path, F_OK) == 0 ? Outcome.done($0) : nil }
            switch try renamed ?? copy(&row, source: source, link: link, control: control, attempt: attempt) {
            case .stopped:
                return
            case .deleted:
                return discard(row)
            case .done(let blob):
                row.partialPath = nil
                row.blobPath = blob
                row.record.state = .completed
                row.record.bytesCopied = row.record.bytesTotal
                row.record.error = nil
                guard persist(row) else { return discard(row) }
                update(row.record, of: key.image, force: true)
            }
        } catch let failure as CopyFailure {
            row.blobPath = nil  // a failed attempt leaves no replica under its final name
            if failure.discard, let p = row.partialPath {
                FileOps.removeQuietly(layout.url(p))
                row.partialPath = nil
                row.record.bytesCopied = 0
            }
            if attempt >= configuration.maxAttempts {
                if let p = row.partialPath { FileOps.removeQuietly(layout.url(p)) }
                row.partialPath = nil
                row.record.bytesCopied = 0
                row.record.state = .failed
                row.record.error = "\(failure.reason); gave up after \(attempt) attempt(s) — fix the cause, then call RetryReplication for \(key.image) (region \(key.region))"
                guard persist(row) else { return discard(row) }
                update(row.record, of: key.image, force: true)
            } else {
                let delay = configuration.backoff(afterAttempt: attempt)
                row.record.state = .pending
                row.record.error = "attempt \(attempt) of \(configuration.maxAttempts) failed: \(failure.reason); retrying in \(delay)"
                guard persist(row) else { return discard(row) }
                update(row.record, of: key.image, force: true)
                requeue(key, after: delay)
            }
        } catch {
            // copy only throws CopyFailure.
        }
    }

    /// The image was deleted under the job: remove whatever it wrote.
    private func discard(_ row: ReplicationRow) {
        for f in row.files { FileOps.removeQuietly(layout.url(f)) }
    }

    /// Sleeps up to `duration`, in slices, returning early (false) once the job is asked to stop.
    private func pause(_ duration: Duration, _ control: JobControl) -> Bool {
        let end = ContinuousClock.now + duration
        while ContinuousClock.now < end {
            if control.value != JobControl.run { return false }
            let left = end - ContinuousClock.now
            let slice = min(left, .milliseconds(50))
            let us = slice.components.seconds * 1_000_000 + slice.components.attoseconds / 1_000_000_000_000
            if us > 0 { usleep(UInt32(us)) }
        }
        return control.value == JobControl.run
    }

    private func stopOutcome(_ control: JobControl) -> Outcome {
        control.value == JobControl.deleted ? .deleted : .stopped
    }

    private func copy(_ row: inout ReplicationRow, source: StoredImage, link: RegionLink, control: JobControl,
                      attempt: Int) throws -> Outcome {
        let region = row.record.region
        let total = source.image.sizeBytes
        if link.latencyMilliseconds > 0, !pause(.milliseconds(link.latencyMilliseconds), control) { return stopOutcome(control) }
        if link.unreachable {
            throw CopyFailure(reason: "region \(region) is unreachable (injected fault in the replication config); check the link to \(region)", discard: false)
        }
        guard let partial = row.partialPath else { return .stopped }
        let partialURL = layout.url(partial)
        do { try FileOps.createDirectory(partialURL.deletingLastPathComponent()) } catch {
            throw CopyFailure(reason: "cannot create the replica directory in \(region): \(error.message)", discard: false)
        }
        let fd = open(partialURL.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CopyFailure(reason: "cannot open \(partial): \(String(cString: strerror(errno)))", discard: false) }
        var fdOpen = true
        defer { if fdOpen { close(fd) } }
        let src = open(layout.url(source.blobPath).path, O_RDONLY | O_CLOEXEC)
        guard src >= 0 else {
            throw CopyFailure(reason: "cannot read the image in its home region \(source.image.region): \(String(cString: strerror(errno)))", discard: false)
        }
        defer { close(src) }

        // SHA-256 of the replica's bytes runs on its own thread, overlapping the reads and writes.
        let hash = HashPipeline(slotSize: configuration.chunkSize)

        // Check the partial file: keep only the durable prefix the row vouches for, and re-hash it.
        var offset = row.record.bytesCopied
        var st = stat()
        if fstat(fd, &st) != 0 || Int64(st.st_size) < offset { offset = 0 }
        guard ftruncate(fd, off_t(offset)) == 0 else {
            throw CopyFailure(reason: "cannot truncate \(partial): \(String(cString: strerror(errno)))", discard: true)
        }
        var hashed: Int64 = 0
        while hashed < offset {
            let piece = hash.fill { slot in
                FileOps.readSome(fd, into: slot, at: hashed, limit: offset - hashed)
            }
            guard !piece.isEmpty else { throw CopyFailure(reason: "cannot re-read the partial replica \(partial)", discard: true) }
            hashed += Int64(piece.count)
        }
        if row.record.bytesCopied != offset {
            row.record.bytesCopied = offset
            guard persist(row) else { return .deleted }
        }

        let start = ContinuousClock.now
        var sent: Int64 = 0
        var writeback = FileOps.Writeback(from: offset)
        var corrupted = false
        var kernelCopy = true  // until copy_file_range says it cannot copy between these files
        let persister = ProgressPersister(fd: fd, row: row, every: configuration.persistEvery) { [self] in persist($0) }
        defer { _ = persister.stop() }
        while offset < total {
            if control.value != JobControl.run { return stopOutcome(control) }
            let corrupt = attempt <= link.corruptFirstAttempts && !corrupted
            // Copy a chunk inside the kernel when it can, then read the replica's bytes back (from
            // the page cache) for the hash: what is verified is what was written.
            let piece: UnsafeRawBufferPointer
            do throws(LabGalleryError) {
                piece = try hash.fill { (slot) throws(LabGalleryError) in
                    let want = Int(min(Int64(slot.count), total - offset))
                    let n: Int
                    if kernelCopy, let copied = try FileOps.copyRange(from: src, at: offset, to: fd, at: offset, count: want) {
                        n = copied
                        guard n == 0 || FileOps.readSome(fd, into: slot, at: offset, limit: Int64(n)) == n else {
                            throw .internal(message: "re-reading \(n) bytes of the replica at offset \(offset) failed")
                        }
                    } else {
                        kernelCopy = false
                        n = FileOps.readSome(src, into: slot, at: offset, limit: Int64(want))
                        try FileOps.writeAll(fd, UnsafeRawBufferPointer(rebasing: slot[0..<n]), at: offset, path: partial)
                    }
                    if corrupt, n > 0 {
                        // Injected corruption: one flipped byte, which only the final checksum check can catch.
                        slot[0] ^= 0xFF
                        try FileOps.writeAll(fd, UnsafeRawBufferPointer(rebasing: slot[0..<1]), at: offset, path: partial)
                    }
                    return n
                }
            } catch {
                throw CopyFailure(reason: "copy to \(region) failed: \(error.message)", discard: false)
            }
            corrupted = corrupted || corrupt
            let n = piece.count
            guard n > 0 else {
                throw CopyFailure(reason: "the image in \(source.image.region) is shorter than its recorded size (\(offset) of \(total) bytes); it may be damaged", discard: false)
            }
            if attempt <= link.failFirstAttempts, offset + Int64(n) >= total / 2 {
                throw CopyFailure(reason: "connection to \(region) reset after \(offset) of \(total) bytes (injected fault)", discard: false)
            }
            offset += Int64(n)
            sent += Int64(n)
            writeback.advance(fd, to: offset)
            copiedBytes.add(Int64(n), ordering: .relaxed)
            row.record.bytesCopied = offset
            switch persister.advance(to: offset) {
            case .running: break
            case .deleted: return .deleted
            case .failed(let reason): throw CopyFailure(reason: "fsync in \(region) failed: \(reason)", discard: false)
            }
            update(row.record, of: row.image, force: false)

            if let bw = link.bandwidthBytesPerSecond, bw > 0 {
                let due = Duration.nanoseconds(sent * 1_000_000_000 / bw)
                let elapsed = ContinuousClock.now - start
                if due > elapsed, !pause(due - elapsed, control) { return stopOutcome(control) }
            }
        }

        if case .deleted = persister.stop() { return .deleted }
        guard fsync(fd) == 0 else { throw CopyFailure(reason: "fsync in \(region) failed: \(String(cString: strerror(errno)))", discard: false) }
        close(fd)
        fdOpen = false
        let digest = hash.finish()
        guard digest == source.image.sha256 else {
            throw CopyFailure(reason: "checksum mismatch: the replica in \(region) hashes to \(digest) but the image's SHA-256 is \(source.image.sha256); the copy was discarded", discard: true)
        }
        if control.value != JobControl.run { return stopOutcome(control) }
        // Record the final name before the rename: after a crash in between, the row names both
        // files and `run` finds the verified replica under its final name instead of copying again.
        let blob = row.blobPath ?? layout.newReplicaBlobPath(region: region, image: row.image)
        row.blobPath = blob
        guard persist(row) else { return .deleted }
        let finalURL = layout.url(blob)
        do throws(LabGalleryError) {
            try FileOps.createDirectory(finalURL.deletingLastPathComponent())
            guard rename(partialURL.path, finalURL.path) == 0 else { throw FileOps.error("rename to \(finalURL.path)") }
            try FileOps.fsyncDirectory(finalURL.deletingLastPathComponent())
        } catch {
            FileOps.removeQuietly(finalURL)
            throw CopyFailure(reason: "cannot store the replica in \(region): \(error.message)", discard: true)
        }
        return .done(blob)
    }
}

/// Makes a running copy's progress durable from its own thread: fdatasync the partial file, then
/// record the offset that had been written before the sync, as soon as ``ReplicationConfiguration/persistEvery``
/// more bytes are there. The copy never waits for a sync, so persisting every few MiB costs no
/// throughput, and the row never claims bytes that are not on disk.
///
/// `@unchecked Sendable`: every mutable field is guarded by `condition`.
private final class ProgressPersister: @unchecked Sendable {
    enum State { case running, deleted, failed(String) }

    private let condition = NSCondition()
    private let every: Int64
    private var written: Int64
    private var durable: Int64
    private var state = State.running
    private var stopping = false
    private var exited = false

    init(fd: Int32, row: ReplicationRow, every: Int64, persist: @escaping @Sendable (ReplicationRow) -> Bool) {
        self.every = every
        written = row.record.bytesCopied
        durable = row.record.bytesCopied
        let thread = Thread { [self] in run(fd: fd, row: row, persist: persist) }
        thread.name = "replication progress"
        thread.start()
    }

    /// Publishes the copy's offset (data written, not yet durable); returns the persister's state.
    /// Wakes the persister only once a sync is due, not on every chunk.
    func advance(to offset: Int64) -> State {
        condition.lock()
        defer { condition.unlock() }
        written = offset
        if written - durable >= every { condition.signal() }
        return state
    }

    /// Stops persisting and waits for a sync in progress (idempotent); returns the final state.
    func stop() -> State {
        condition.lock()
        defer { condition.unlock() }
        stopping = true
        condition.broadcast()
        while !exited { condition.wait() }
        return state
    }

    private func run(fd: Int32, row: ReplicationRow, persist: @Sendable (ReplicationRow) -> Bool) {
        var row = row
        condition.lock()
        while true {
            while !stopping && written - durable < every { condition.wait() }
            if stopping { break }
            let target = written
            condition.unlock()
            // Data first, then the offset.
            let synced = fdatasync(fd) == 0
            let reason = synced ? "" : String(cString: strerror(errno))
            if synced { row.record.bytesCopied = target }
            let recorded = synced && persist(row)
            condition.lock()
            if !synced { state = .failed(reason); break }
            if !recorded { state = .deleted; break }
            durable = target
        }
        exited = true
        condition.broadcast()
        condition.unlock()
    }
}
