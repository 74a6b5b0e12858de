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
///   A failed database write is a failed attempt like any other (its reason recorded), never a
///   reason to delete what was copied.
/// - A region that already holds a blob with the image's bytes completes at once, sharing it.
/// - A job writes `regions/<r>/partial/…part`; a background thread fsyncs it and persists its offset every
///   ``ReplicationConfiguration/persistEvery`` bytes (data first, then the row, so the persisted
///   offset never exceeds the durable bytes). After a crash the job truncates the partial file to the
///   persisted offset, re-hashes that prefix and continues. At the end the replica is fsynced, its
///   SHA-256 compared with the image's (a mismatch fails the attempt and discards the copy), renamed
///   into the region's blob store as a blob and the row marked COMPLETED; a COMPLETED row is never
///   copied again.
/// - At most ``ReplicationConfiguration/concurrency`` jobs run, each on its own thread (blocking file
///   I/O and WAN pacing stay off the Swift concurrency pool, so RPC handling is never starved).
/// - Scheduling has one rule, applied whenever a job ends, a backoff elapses or a retry is asked:
///   a job whose row is PENDING and that is neither running nor waiting is queued.
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
        /// Bumped on every image deletion: a watch that read the database before a deletion retries.
        var deletions = 0
        var ready: [JobKey] = []
        var running: [JobKey: JobControl] = [:]
        /// Jobs waiting out a backoff (a timer re-queues them).
        var waiting: Set<JobKey> = []
        /// Attempt outcomes the database refused to record (published already): the job's next
        /// run records them first, so FAILED after the last attempt holds even through a database
        /// outage, and the attempt count never goes back.
        var unrecorded: [JobKey: ReplicationRow] = [:]
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

    /// Watch streams open now (image and gallery watches).
    public var openWatches: Int {
        state.withLock { s in (s.imageWatchers.values.map(\.count) + s.galleryWatchers.values.map(\.count)).reduce(0, +) }
    }

    private var layout: DataLayout { service.layout }

    // MARK: - Lifecycle

    /// Loads every replication row, queues the unfinished jobs (REPLICATING ones resume from their
    /// persisted offset) and starts listening to image creation and deletion. Blocks (database):
    /// call it at start-up, off the cooperative pool.
    public func start() throws(LabGalleryError) {
        let rows = try service.read { tx in try tx.allReplicationRows() }
        service.replicationHooks.setObserver(self)
        let starts = state.withLock { s -> [(JobKey, JobControl)] in
            guard !s.started else { return [] }
            s.started = true
            for row in rows {
                s.images[row.image.description, default: Entry(name: row.image, regions: [])].regions.append(row.record)
            }
            for row in rows { enqueueIfDue(JobKey(image: row.image, region: row.record.region), &s) }
            return schedule(&s)
        }
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

    /// Tracks the new image from the rows its storing transaction committed (no database read, so
    /// it is watchable and its jobs queued before UploadImage/SaveLabTemplateImage returns).
    public func imageStored(_ image: ImageName, rows: [ReplicationRow]) {
        var wake: [CheckedContinuation<Void, Never>] = []
        let starts = state.withLock { s -> [(JobKey, JobControl)] in
            guard !s.stopped else { return [] }
            s.images[image.description] = Entry(name: image, regions: rows.map(\.record).sorted { $0.region < $1.region })
            for r in rows { enqueueIfDue(JobKey(image: image, region: r.record.region), &s) }
            wake = publish(image.description, &s, force: true)
            return schedule(&s)
        }
        for w in wake { w.resume() }
        launch(starts)
    }

    /// Stops the image's jobs (they discard their partial files), ends its watch streams with
    /// NOT_FOUND and tells its gallery's watchers (a status with `deleted` set).
    public func imageDeleted(_ image: ImageName) {
        let key = image.description
        let wake = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.deletions += 1
            let last = s.images.removeValue(forKey: key)
            s.ready.removeAll { $0.image == image }
            s.waiting = s.waiting.filter { $0.image != image }
            s.unrecorded = s.unrecorded.filter { $0.key.image != image }
            for (k, c) in s.running where k.image == image { c.flag.store(JobControl.deleted, ordering: .releasing) }
            let watchers = s.imageWatchers.removeValue(forKey: key) ?? [:]
            var wake = watchers.values.compactMap {
                $0.finish(shutdown: false, error: .notFound(resource: key, message: "\(key) was deleted while being watched"))
            }
            let gone = ReplicationStatus(image: key, regions: last?.regions ?? [], deleted: true)
            for m in (s.galleryWatchers[image.gallery.description]?.values).map(Array.init) ?? [] {
                if let w = m.post(gone) { wake.append(w) }
            }
            return wake
        }
        for w in wake { w.resume() }
    }

    /// Ends the gallery's watch streams with NOT_FOUND (after the statuses they have not read).
    public func galleryDeleted(_ gallery: GalleryName) {
        let key = gallery.description
        let wake = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            let watchers = s.galleryWatchers.removeValue(forKey: key) ?? [:]
            return watchers.values.compactMap {
                $0.finish(shutdown: false, error: .notFound(resource: key, message: "\(key) was deleted while being watched"))
            }
        }
        for w in wake { w.resume() }
    }

    // MARK: - Status, watching, retry

    /// GetReplicationStatus (reader): the live status (fresher than the persisted progress).
    public func status(image: String, caller: Principal) async throws(LabGalleryError) -> ReplicationStatus {
        let persisted = try await service.replicationStatus(image: image, caller: caller)
        return state.withLock { $0.images[persisted.image]?.status } ?? persisted
    }

    /// WatchReplication (reader): the first ``ReplicationWatch/next()`` is the full current state;
    /// then one full status per change (coalesced for slow readers); `nil` after a COMPLETED/FAILED
    /// one; NOT_FOUND when the image is deleted.
    public func watch(image: String, caller: Principal) async throws(LabGalleryError) -> ReplicationWatch {
        let mailbox = WatchMailbox()
        while true {
            let deletions = state.withLock { $0.deletions }
            let persisted = try await service.replicationStatus(image: image, caller: caller)
            let key = persisted.image
            let outcome: (id: Int, wake: CheckedContinuation<Void, Never>?)?? = state.withLock { s in
                if s.watchersClosed { return .some((-1, mailbox.finish(shutdown: true))) }
                if s.images[key] == nil {
                    // Deleted since the read: read again (and get NOT_FOUND). Otherwise the image was
                    // stored a moment ago (its hook has not run yet) or has no jobs: track it as read.
                    if s.deletions != deletions { return .none }
                    s.images[key] = Entry(name: try! ImageName(parsing: key, field: "image"), regions: persisted.regions)
                }
                let id = s.nextWatcherID
                s.nextWatcherID += 1
                s.imageWatchers[key, default: [:]][id] = mailbox
                return .some((id, mailbox.post(s.images[key]!.status)))
            }
            guard case .some(let registered) = outcome, let registered else { continue }
            registered.wake?.resume()
            let id = registered.id
            return ReplicationWatch(mailbox: mailbox, endsWhenTerminal: true) { [weak self] in
                guard id >= 0 else { return }
                _ = self?.state.withLock { s in s.imageWatchers[key]?.removeValue(forKey: id) }
            }
        }
    }

    /// WatchGalleryReplication (reader): the current status of every image of the gallery, then
    /// every change (images added later included, deleted ones with `deleted` set), until the
    /// caller stops reading; NOT_FOUND when the gallery is deleted.
    public func watchGallery(gallery: String, caller: Principal) async throws(LabGalleryError) -> ReplicationWatch {
        try require(.reader, for: caller)
        let g = try GalleryName(parsing: gallery, field: "gallery")
        let mailbox = WatchMailbox()
        let key = g.description
        while true {
            let deletions = state.withLock { $0.deletions }
            let persisted: [ReplicationStatus] = try await service.blocking { () throws(LabGalleryError) in
                try service.read { tx in
                    _ = try service.requireGallery(g, tx)
                    return try tx.images(in: g, after: nil, limit: nil).map { stored in
                        let n = try ImageName(parsing: stored.image.name, field: "name")
                        return ReplicationStatus(image: n.description, regions: try tx.replications(of: n))
                    }
                }
            }
            let registered: (id: Int, wake: [CheckedContinuation<Void, Never>])? = state.withLock { s in
                if s.watchersClosed { return (-1, [mailbox.finish(shutdown: true)].compactMap { $0 }) }
                if s.deletions != deletions { return nil }
                let id = s.nextWatcherID
                s.nextWatcherID += 1
                s.galleryWatchers[key, default: [:]][id] = mailbox
                return (id, persisted.compactMap { p in mailbox.post(s.images[p.image]?.status ?? p) })
            }
            guard let registered else { continue }
            for w in registered.wake { w.resume() }
            let id = registered.id
            return ReplicationWatch(mailbox: mailbox, endsWhenTerminal: false) { [weak self] in
                guard id >= 0 else { return }
                _ = self?.state.withLock { s in s.galleryWatchers[key]?.removeValue(forKey: id) }
            }
        }
    }

    /// RetryReplication (admin): re-queues FAILED regions (all of them when `regions` is empty) from
    /// scratch (attempts reset). INVALID_ARGUMENT (`regions`) for a region that is not a replication
    /// target of the image; FAILED_PRECONDITION for a named region that has not failed.
    public func retry(image: String, regions: [String], caller: Principal) async throws(LabGalleryError) -> ReplicationStatus {
        try require(.admin, for: caller)
        let n = try ImageName(parsing: image, field: "image")
        let rows: [ReplicationRow] = try await service.blocking { () throws(LabGalleryError) in
            var partials: [String] = []
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
                    if let p = rows[i].partialPath { partials.append(p) }
                    rows[i].partialPath = nil
                    _ = try tx.updateReplication(rows[i])
                }
                return rows
            }
            for p in partials { FileOps.removeQuietly(layout.url(p)) }
            return rows
        }
        var wake: [CheckedContinuation<Void, Never>] = []
        let starts = state.withLock { s -> [(JobKey, JobControl)] in
            guard s.images[n.description] != nil else { return [] }
            for row in rows { setRecord(row.record, of: n, &s) }
            for row in rows where row.record.state == .pending {
                let k = JobKey(image: n, region: row.record.region)
                s.waiting.remove(k)
                enqueueIfDue(k, &s)
            }
            wake = publish(n.description, &s, force: true)
            return schedule(&s)
        }
        for w in wake { w.resume() }
        launch(starts)
        return ReplicationStatus(image: n.description, regions: rows.map(\.record))
    }

    // MARK: - Scheduling

    /// The one scheduling rule: a tracked job whose row is PENDING (or REPLICATING after a restart)
    /// and that is not running, queued or waiting out a backoff is queued.
    private func enqueueIfDue(_ key: JobKey, _ s: inout State) {
        guard !s.stopped, let entry = s.images[key.image.description],
              let record = entry.regions.first(where: { $0.region == key.region }),
              record.state == .pending || record.state == .replicating || s.unrecorded[key] != nil,
              s.running[key] == nil, !s.waiting.contains(key), !s.ready.contains(key) else { return }
        s.ready.append(key)
    }

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
                let backoff = run(key, control: control)
                let next = state.withLock { s -> [(JobKey, JobControl)] in
                    s.running[key] = nil
                    if let backoff, !s.stopped, s.images[key.image.description] != nil {
                        s.waiting.insert(key)
                        wake(key, after: backoff)
                    } else {
                        // A retry or a new row may have made the job due while it was running.
                        enqueueIfDue(key, &s)
                    }
                    return schedule(&s)
                }
                launch(next)
                threads.leave()
            }
            thread.name = "replication \(key.image.id)→\(key.region)"
            thread.start()
        }
    }

    /// After `delay`, ends the job's backoff and queues it if it is still due.
    private func wake(_ key: JobKey, after delay: Duration) {
        let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            let starts = state.withLock { s -> [(JobKey, JobControl)] in
                guard s.waiting.remove(key) != nil else { return [] }
                enqueueIfDue(key, &s)
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

    /// The row was deleted with its image (the job stops and removes its partial file).
    private struct RowGone: Error {}

    /// Writes the row; throws ``RowGone`` when the image was deleted meanwhile and a
    /// ``CopyFailure`` (with the database's reason) when the write fails.
    private func persist(_ row: ReplicationRow) throws {
        guard try recording({ () throws(LabGalleryError) in try service.write { tx in try tx.updateReplication(row) } }) else {
            throw RowGone()
        }
    }

    /// Runs a database step of a job; its failure is a failed attempt saying so.
    private func recording<T>(_ body: () throws(LabGalleryError) -> T) throws(CopyFailure) -> T {
        do { return try body() } catch {
            throw CopyFailure(reason: "recording the copy in the database failed (\(error.message))", discard: false)
        }
    }

    /// One attempt of a job. Returns the backoff after which to try again, or `nil` when the job
    /// is over for now (completed, failed for good, stopped, deleted).
    private func run(_ key: JobKey, control: JobControl) -> Duration? {
        let found: (ReplicationRow?, StoredImage?)
        do {
            found = try service.read { tx in
                (try tx.replicationRows(of: key.image).first { $0.record.region == key.region }, try tx.image(key.image))
            }
        } catch {
            // Nothing changed yet: show why and try again later (the attempt is not counted).
            return readFailed(key, reason: "reading the job from the database failed (\(error.message))")
        }
        guard var row = found.0, let source = found.1 else { return nil }
        if let outcome = state.withLock({ $0.unrecorded[key] }) {
            // The last attempt's outcome first: recorded, it decides whether to go on.
            do { try persist(outcome) } catch is RowGone {
                discard(outcome)
                return nil
            } catch {
                return configuration.backoff(afterAttempt: max(outcome.record.attempts, 1))
            }
            state.withLock { _ = $0.unrecorded.removeValue(forKey: key) }
            row = outcome
            update(row.record, of: key.image, force: true)
        }
        guard row.record.state == .pending || row.record.state == .replicating else {
            update(row.record, of: key.image, force: true)
            return nil
        }
        let link = configuration.link(to: key.region)
        // A REPLICATING row was interrupted by a crash or shutdown: the same attempt continues.
        if row.record.state == .pending { row.record.attempts += 1 }
        row.record.state = .replicating
        row.record.bytesTotal = source.image.sizeBytes
        let attempt = row.record.attempts

        do {
            // The region may already hold these bytes (another image, a lab template): share them.
            if row.blobPath == nil, try complete(&row, sharingIn: key.region, sha256: source.image.sha256) {
                update(row.record, of: key.image, force: true)
                return nil
            }
            if row.partialPath == nil {
                row.partialPath = layout.newReplicaPartialPath(region: key.region, image: key.image)
                row.record.bytesCopied = 0
            }
            try persist(row)
            update(row.record, of: key.image, force: true)
            // Interrupted between recording the blob's name and the commit (see `copy`): the replica
            // under its final name was verified before the rename, so it only needs recording.
            let renamed = row.blobPath.flatMap { access(layout.url($0).path, F_OK) == 0 ? Outcome.done($0) : nil }
            switch try renamed ?? copy(&row, source: source, link: link, control: control, attempt: attempt) {
            case .stopped:
                return nil
            case .deleted:
                discard(row)
                return nil
            case .done(let blob):
                let partial = row.partialPath
                row.partialPath = nil
                row.blobPath = blob
                row.record.state = .completed
                row.record.bytesCopied = row.record.bytesTotal
                row.record.error = nil
                let recorded = try recording { () throws(LabGalleryError) in
                    try service.write { tx in
                        try tx.setBlobState(.live, path: blob)
                        return try tx.updateReplication(row)
                    }
                }
                guard recorded else { throw RowGone() }
                if let partial { FileOps.removeQuietly(layout.url(partial)) }
                update(row.record, of: key.image, force: true)
                return nil
            }
        } catch is RowGone {
            discard(row)
            return nil
        } catch let failure as CopyFailure {
            return failed(&row, failure, attempt: attempt)
        } catch {
            return failed(&row, CopyFailure(reason: "\(error)", discard: false), attempt: attempt)
        }
    }

    /// Marks the row COMPLETED sharing a live blob of `region` with these bytes, if there is one.
    private func complete(_ row: inout ReplicationRow, sharingIn region: String, sha256: String) throws -> Bool {
        var done = row
        let shared: Bool? = try recording { () throws(LabGalleryError) in
            try service.write { tx in
                guard let blob = try service.liveBlobPath(region: region, sha256: sha256, tx) else { return false }
                done.blobPath = blob
                done.record.state = .completed
                done.record.bytesCopied = done.record.bytesTotal
                done.record.error = nil
                done.partialPath = nil
                return try tx.updateReplication(done) ? true : nil
            }
        }
        guard let shared else { throw RowGone() }
        guard shared else { return false }
        if let p = row.partialPath { FileOps.removeQuietly(layout.url(p)) }
        row = done
        return true
    }

    /// A failed attempt: PENDING with the reason and a backoff, or FAILED after the last attempt.
    /// A verified replica (a blob already renamed into place) is kept for the next attempt.
    private func failed(_ row: inout ReplicationRow, _ failure: CopyFailure, attempt: Int) -> Duration? {
        let key = JobKey(image: row.image, region: row.record.region)
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
        } else {
            row.record.state = .pending
            row.record.error = "attempt \(attempt) of \(configuration.maxAttempts) failed: \(failure.reason); retrying in \(configuration.backoff(afterAttempt: attempt))"
        }
        do { try persist(row) } catch is RowGone {
            discard(row)
            return nil
        } catch {
            // The database refuses writes too: watchers learn the outcome now (a FAILED one ends
            // their watch); the job runs again after a backoff and records it first.
            let outcome = row
            state.withLock { $0.unrecorded[key] = outcome }
            var shown = row.record
            shown.error = (shown.error ?? "") + " (not yet recorded: \((error as? CopyFailure)?.reason ?? "\(error)"))"
            update(shown, of: key.image, force: true)
            return configuration.backoff(afterAttempt: max(attempt, 1))
        }
        update(row.record, of: key.image, force: true)
        return row.record.state == .pending ? configuration.backoff(afterAttempt: attempt) : nil
    }

    /// A job that cannot even read its row (no attempt made): show the reason, try again after
    /// the first backoff.
    private func readFailed(_ key: JobKey, reason: String) -> Duration? {
        let wake = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            guard var e = s.images[key.image.description], let i = e.regions.firstIndex(where: { $0.region == key.region }) else { return [] }
            e.regions[i].error = reason
            s.images[key.image.description] = e
            return publish(key.image.description, &s, force: true)
        }
        for w in wake { w.resume() }
        return configuration.backoff(afterAttempt: 1)
    }

    /// The image was deleted under the job: remove its partial file. Blobs go with their last
    /// reference (``LabGalleryService/release(_:_:)``), except a replica renamed into place after
    /// the deletion had already removed its blob row: nothing else knows that file.
    private func discard(_ row: ReplicationRow) {
        if let p = row.partialPath { FileOps.removeQuietly(layout.url(p)) }
        guard let blob = row.blobPath else { return }
        let state: BlobRecord.State?
        do { state = try service.read { tx in try tx.blob(blob)?.state } } catch { return }
        if state == nil || state == .doomed { FileOps.removeDurably(layout.url(blob)) }
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
            try persist(row)
        }

        let start = ContinuousClock.now
        var sent: Int64 = 0
        var writeback = FileOps.Writeback(from: offset)
        var corrupted = false
        var kernelCopy = true  // until copy_file_range says it cannot copy between these files
        let persister = ProgressPersister(fd: fd, row: row, every: configuration.persistEvery) { [self] row in
            do { try persist(row); return nil } catch is RowGone { return .deleted } catch {
                return .failed((error as? CopyFailure)?.reason ?? "\(error)")
            }
        }
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
            case .failed(let reason): throw CopyFailure(reason: reason, discard: false)
            }
            update(row.record, of: row.image, force: false)

            if let bw = link.bandwidthBytesPerSecond, bw > 0 {
                let due = Duration.nanoseconds(sent * 1_000_000_000 / bw)
                let elapsed = ContinuousClock.now - start
                if due > elapsed, !pause(due - elapsed, control) { return stopOutcome(control) }
            }
        }

        switch persister.stop() {
        case .running: break
        case .deleted: return .deleted
        case .failed(let reason): throw CopyFailure(reason: reason, discard: false)
        }
        guard fsync(fd) == 0 else { throw CopyFailure(reason: "fsync in \(region) failed: \(String(cString: strerror(errno)))", discard: false) }
        close(fd)
        fdOpen = false
        let digest = hash.finish()
        guard digest == source.image.sha256 else {
            throw CopyFailure(reason: "checksum mismatch: the replica in \(region) hashes to \(digest) but the image's SHA-256 is \(source.image.sha256); the copy was discarded", discard: true)
        }
        if control.value != JobControl.run { return stopOutcome(control) }
        // The replica becomes a blob of the region: its row (`writing`) and name are recorded before
        // the rename, so after a crash in between `run` finds the verified replica under its final
        // name instead of copying again. Bytes the region gained meanwhile are shared instead.
        let sha = source.image.sha256
        let named: (path: String, shared: Bool)? = try recording { () throws(LabGalleryError) in
            try service.write { tx in
                if let existing = try service.liveBlobPath(region: region, sha256: sha, tx) { return (existing, true) }
                let path = row.blobPath ?? layout.newBlobPath(region: region, sha256: sha)
                if try tx.blob(path) == nil {
                    try tx.insertBlob(BlobRecord(path: path, region: region, sha256: sha, sizeBytes: total, state: .writing))
                }
                var named = row
                named.blobPath = path
                return try tx.updateReplication(named) ? (path, false) : nil
            }
        }
        guard let named else { throw RowGone() }
        let blob = named.path
        if named.shared { return .done(blob) }
        row.blobPath = blob
        do throws(LabGalleryError) {
            try FileOps.renameDurably(partialURL, to: layout.url(blob))
        } catch {
            throw CopyFailure(reason: "cannot store the replica in \(region): \(error.message)", discard: false)
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

    /// `persist` records a row: `nil` when it did, else why the copy must stop.
    init(fd: Int32, row: ReplicationRow, every: Int64, persist: @escaping @Sendable (ReplicationRow) -> State?) {
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

    private func run(fd: Int32, row: ReplicationRow, persist: @Sendable (ReplicationRow) -> State?) {
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
            let stop = synced ? persist(row) : .failed("fsync of the partial replica failed: \(reason)")
            condition.lock()
            if let stop { state = stop; break }
            durable = target
        }
        exited = true
        condition.broadcast()
        condition.unlock()
    }
}
