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
///   ``ReplicationConfiguration/maxAttempts`` attempts (``Backoff`` in between; while waiting the
///   job is PENDING with the last error) — the transitions are ``JobStateMachine``'s. RetryReplication
///   starts over. A failed database write is a failed attempt like any other (its reason recorded),
///   never a reason to delete what was copied.
/// - A region that already holds a blob with the image's bytes completes at once, sharing it.
/// - A job writes `regions/<r>/partial/…part` through ``ReplicaCopier``; a ``ProgressPersister``
///   fsyncs it and persists its offset every ``ReplicationConfiguration/persistEvery`` bytes (data
///   first, then the row, so the persisted offset never exceeds the durable bytes). After a crash
///   the job truncates the partial file to the persisted offset, re-hashes that prefix and
///   continues. At the end the replica is fsynced, its SHA-256 compared with the image's (a
///   mismatch fails the attempt and discards the copy), renamed into the region's blob store as a
///   blob and the row marked COMPLETED; a COMPLETED row is never copied again.
/// - At most ``ReplicationConfiguration/concurrency`` jobs run, on a fixed pool of as many threads
///   (``JobThreads``): blocking file I/O and WAN pacing stay off the Swift concurrency pool.
/// - Scheduling has one rule (``JobScheduler``), applied whenever a job ends, a backoff elapses or
///   a retry is asked: a job whose row is PENDING and that is neither running nor waiting is queued.
///
/// The engine sees persistence only through a ``ReplicationStore``; the use cases reach it through
/// ``LabGalleryService`` (which checks roles and names), never the other way round.
public final class ReplicationEngine: Sendable {
    /// Engine settings.
    public let configuration: ReplicationConfiguration
    /// Where the engine reads and records its rows.
    public let store: any ReplicationStore
    private let hooks: ReplicationHooks?

    private struct Entry {
        var name: ImageName
        var regions: [RegionReplication]
        var lastPublished: ContinuousClock.Instant?
        var status: ReplicationStatus { ReplicationStatus(image: name.description, regions: regions) }
    }

    private struct State {
        var images: [String: Entry] = [:]
        var watches = WatchHub()
        /// Bumped on every image deletion: a watch that read the database before a deletion retries.
        var deletions = 0
        var jobs: JobScheduler
        /// Attempt outcomes the database refused to record (published already): the job's next
        /// run records them first, so FAILED after the last attempt holds even through a database
        /// outage, and the attempt count never goes back.
        var unrecorded: [JobKey: ReplicationRow] = [:]
        var started = false
    }

    private let state: Mutex<State>
    private let jobsRunning = DispatchGroup()
    private let threads: JobThreads
    private let copiedBytes = Atomic<Int64>(0)
    private let machine: JobStateMachine
    private let copier: ReplicaCopier

    /// Creates an engine over `store` (idle until ``start()``). With `hooks`, ``start()`` listens
    /// to image creation and deletion there and the use cases route status, watches and retries here.
    public init(store: any ReplicationStore, hooks: ReplicationHooks?, configuration: ReplicationConfiguration = .init()) {
        self.store = store; self.hooks = hooks; self.configuration = configuration
        state = Mutex(State(jobs: JobScheduler(concurrency: configuration.concurrency)))
        threads = JobThreads(maxThreads: configuration.concurrency, name: "replication job")
        machine = JobStateMachine(maxAttempts: configuration.maxAttempts, backoff: configuration.backoff)
        copier = ReplicaCopier(chunkSize: configuration.chunkSize, persistEvery: configuration.persistEvery)
    }

    /// Creates an engine for the images of `service` (it keeps the service's store and hooks, not the service).
    public convenience init(service: LabGalleryService, configuration: ReplicationConfiguration = .init()) {
        self.init(store: service.replicationStore, hooks: service.replicationHooks, configuration: configuration)
    }

    /// Bytes written to replica files by this engine since it was created (resumed prefixes excluded).
    public var bytesCopied: Int64 { copiedBytes.load(ordering: .relaxed) }

    /// Jobs running now.
    public var runningJobs: Int { state.withLock { $0.jobs.running.count } }

    /// Watch streams open now (image and gallery watches).
    public var openWatches: Int { state.withLock { $0.watches.count } }

    private var layout: DataLayout { store.layout }

    /// Runs `body` under the lock, then resumes the watchers it collected, outside the lock.
    private func locked<T>(_ body: (inout State, inout Wakeups) -> T) -> T {
        var wake = Wakeups()
        let result = state.withLock { s in body(&s, &wake) }
        wake.resume()
        return result
    }

    // MARK: - Lifecycle

    /// Loads every replication row, queues the unfinished jobs (REPLICATING ones resume from their
    /// persisted offset) and starts listening to image creation and deletion. Blocks (database):
    /// call it at start-up, off the cooperative pool.
    public func start() throws(LabGalleryError) {
        let rows = try store.allRows()
        hooks?.attach(self)
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
        locked { s, wake in wake = s.watches.closeAll() }
    }

    /// Stops: closes watchers, asks running jobs to stop (their rows keep the last persisted offset,
    /// so they resume on the next start) and waits until every job has returned.
    public func stop() async {
        hooks?.detach(self)
        closeWatchers()
        state.withLock { s in s.jobs.stop() }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            jobsRunning.notify(queue: .global()) { c.resume() }
        }
        threads.stop()
    }

    // MARK: - Events from the use cases

    /// Tracks the new image from the rows its storing transaction committed (no database read, so
    /// it is watchable and its jobs queued before UploadImage/SaveLabTemplateImage returns).
    func imageStored(_ image: ImageName, rows: [ReplicationRow]) {
        let starts = locked { s, wake -> [(JobKey, JobControl)] in
            guard !s.jobs.stopped else { return [] }
            s.images[image.description] = Entry(name: image, regions: rows.map(\.record).sorted { $0.region < $1.region })
            for r in rows { enqueueIfDue(JobKey(image: image, region: r.record.region), &s) }
            wake = publish(image.description, &s, force: true)
            return schedule(&s)
        }
        launch(starts)
    }

    /// Stops the image's jobs (they discard their partial files), ends its watch streams with
    /// NOT_FOUND and tells its gallery's watchers (a status with `deleted` set).
    func imageDeleted(_ image: ImageName) {
        let key = image.description
        locked { s, wake in
            s.deletions += 1
            let last = s.images.removeValue(forKey: key)
            s.jobs.remove(image: image, signal: .deleted)
            s.unrecorded = s.unrecorded.filter { $0.key.image != image }
            wake = s.watches.finish(.image, key: key, error: .notFound(resource: key, message: "\(key) was deleted while being watched"))
            let gone = ReplicationStatus(image: key, regions: last?.regions ?? [], deleted: true)
            let more = s.watches.publish(toGallery: image.gallery.description, gone)
            wake.append(more)
        }
    }

    /// Ends the gallery's watch streams with NOT_FOUND (after the statuses they have not read).
    func galleryDeleted(_ gallery: GalleryName) {
        let key = gallery.description
        locked { s, wake in
            wake = s.watches.finish(.gallery, key: key, error: .notFound(resource: key, message: "\(key) was deleted while being watched"))
        }
    }

    // MARK: - Status, watching, retry (called by LabGalleryService, which checks role and names)

    /// The live status of a tracked image (fresher than the persisted progress), or `nil`.
    func liveStatus(_ image: String) -> ReplicationStatus? {
        state.withLock { $0.images[image]?.status }
    }

    /// An image watch: the first ``ReplicationWatch/next()`` is the full current state; then one
    /// full status per change (coalesced for slow readers); `nil` after a COMPLETED/FAILED one;
    /// NOT_FOUND when the image is deleted. `persisted` reads the image's status (NOT_FOUND if gone).
    func watch(_ image: ImageName,
               persisted: () async throws(LabGalleryError) -> ReplicationStatus) async throws(LabGalleryError) -> ReplicationWatch {
        let mailbox = WatchMailbox()
        let key = image.description
        while true {
            let deletions = state.withLock { $0.deletions }
            let status = try await persisted()
            let registration: WatchHub.Registration?? = locked { s, wake in
                if s.watches.closed { wake.add(mailbox.finish(shutdown: true)); return .some(nil) }
                if s.images[key] == nil {
                    // Deleted since the read: read again (and get NOT_FOUND). Otherwise the image was
                    // stored a moment ago (its hook has not run yet) or has no jobs: track it as read.
                    if s.deletions != deletions { return nil }
                    s.images[key] = Entry(name: image, regions: status.regions)
                }
                let r = s.watches.add(mailbox, scope: .image, key: key)
                wake.add(mailbox.post(s.images[key]!.status))
                return .some(r)
            }
            guard case .some(let registered) = registration else { continue }
            return ReplicationWatch(mailbox: mailbox, endsWhenTerminal: true) { [weak self] in
                guard let registered else { return }
                self?.state.withLock { s in s.watches.remove(registered) }
            }
        }
    }

    /// A gallery watch: the current status of every image of the gallery, then every change (images
    /// added later included, deleted ones with `deleted` set), until the caller stops reading;
    /// NOT_FOUND when the gallery is deleted. `persisted` reads the gallery's image statuses.
    func watchGallery(_ gallery: GalleryName,
                      persisted: () async throws(LabGalleryError) -> [ReplicationStatus]) async throws(LabGalleryError) -> ReplicationWatch {
        let mailbox = WatchMailbox()
        let key = gallery.description
        while true {
            let deletions = state.withLock { $0.deletions }
            let statuses = try await persisted()
            let registration: WatchHub.Registration?? = locked { s, wake in
                if s.watches.closed { wake.add(mailbox.finish(shutdown: true)); return .some(nil) }
                if s.deletions != deletions { return nil }
                let r = s.watches.add(mailbox, scope: .gallery, key: key)
                for p in statuses { wake.add(mailbox.post(s.images[p.image]?.status ?? p)) }
                return .some(r)
            }
            guard case .some(let registered) = registration else { continue }
            return ReplicationWatch(mailbox: mailbox, endsWhenTerminal: false) { [weak self] in
                guard let registered else { return }
                self?.state.withLock { s in s.watches.remove(registered) }
            }
        }
    }

    /// RetryReplication recorded `rows` (FAILED ones back to PENDING): queue them and tell watchers.
    func retried(_ image: ImageName, rows: [ReplicationRow]) {
        let starts = locked { s, wake -> [(JobKey, JobControl)] in
            guard s.images[image.description] != nil else { return [] }
            for row in rows { setRecord(row.record, of: image, &s) }
            for row in rows where row.record.state == .pending {
                let k = JobKey(image: image, region: row.record.region)
                _ = s.jobs.endBackoff(k)
                enqueueIfDue(k, &s)
            }
            wake = publish(image.description, &s, force: true)
            return schedule(&s)
        }
        launch(starts)
    }

    // MARK: - Scheduling

    /// The one scheduling rule: a tracked job whose row is PENDING (or REPLICATING after a restart),
    /// or whose last outcome is not recorded yet, is queued unless it runs, is queued or waits.
    private func enqueueIfDue(_ key: JobKey, _ s: inout State) {
        let record = s.images[key.image.description]?.regions.first { $0.region == key.region }
        let due = record.map { JobStateMachine.isUnfinished($0.state) || s.unrecorded[key] != nil } ?? false
        s.jobs.enqueue(key, due: due)
    }

    private func schedule(_ s: inout State) -> [(JobKey, JobControl)] {
        let images = s.images
        return s.jobs.start { images[$0.image.description] != nil }
    }

    private func launch(_ starts: [(JobKey, JobControl)]) {
        for (key, control) in starts {
            jobsRunning.enter()
            threads.submit { [self] in
                let backoff = run(key, control: control)
                let next = state.withLock { s -> [(JobKey, JobControl)] in
                    let tracked = s.images[key.image.description] != nil
                    if s.jobs.finished(key, backoff: backoff != nil && tracked), let backoff {
                        wake(key, after: backoff)
                    } else {
                        // A retry or a new row may have made the job due while it was running.
                        enqueueIfDue(key, &s)
                    }
                    return schedule(&s)
                }
                launch(next)
                jobsRunning.leave()
            }
        }
    }

    /// After `delay`, ends the job's backoff and queues it if it is still due.
    private func wake(_ key: JobKey, after delay: Duration) {
        let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            let starts = state.withLock { s -> [(JobKey, JobControl)] in
                guard s.jobs.endBackoff(key) else { return [] }
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
    /// returns the watchers to wake outside it. Progress-only updates are rate-limited.
    private func publish(_ key: String, _ s: inout State, force: Bool) -> Wakeups {
        guard var e = s.images[key] else { return Wakeups() }
        let now = ContinuousClock.now
        if !force, let last = e.lastPublished, now - last < configuration.progressInterval { return Wakeups() }
        e.lastPublished = now
        s.images[key] = e
        return s.watches.publish(e.status, gallery: e.name.gallery.description)
    }

    private func update(_ record: RegionReplication, of image: ImageName, force: Bool) {
        locked { s, wake in
            setRecord(record, of: image, &s)
            wake = publish(image.description, &s, force: force)
        }
    }

    // MARK: - One job run (on a pool thread)

    /// Writes the row: ``JobError/rowGone`` when the image was deleted meanwhile,
    /// ``JobError/recordFailed(reason:)`` when the write fails.
    private func persist(_ row: ReplicationRow) throws(JobError) {
        guard try recording({ () throws(LabGalleryError) in try store.update(row) }) else { throw .rowGone }
    }

    /// Runs a database step of a job; its failure is ``JobError/recordFailed(reason:)``.
    private func recording<T>(_ body: () throws(LabGalleryError) -> T) throws(JobError) -> T {
        do { return try body() } catch { throw .recordFailed(reason: error.message) }
    }

    /// One attempt of a job. Returns the backoff after which to try again, or `nil` when the job
    /// is over for now (completed, failed for good, stopped, deleted).
    private func run(_ key: JobKey, control: JobControl) -> Duration? {
        let found: (row: ReplicationRow, source: StoredImage)?
        do { found = try store.job(key.image, region: key.region) } catch {
            // Nothing changed yet: show why and try again later (the attempt is not counted).
            return readFailed(key, reason: "reading the job from the database failed (\(error.message))")
        }
        guard let found else { return nil }
        var row = found.row
        let source = found.source
        if let outcome = state.withLock({ $0.unrecorded[key] }) {
            // The last attempt's outcome first: recorded, it decides whether to go on.
            do throws(JobError) { try persist(outcome) } catch {
                if error == .rowGone {
                    discard(outcome)
                    return nil
                }
                return configuration.backoff(afterAttempt: max(outcome.record.attempts, 1))
            }
            state.withLock { _ = $0.unrecorded.removeValue(forKey: key) }
            row = outcome
            update(row.record, of: key.image, force: true)
        }
        guard JobStateMachine.isUnfinished(row.record.state) else {
            update(row.record, of: key.image, force: true)
            return nil
        }
        let attempt = machine.begin(&row, sizeBytes: source.image.sizeBytes)
        switch attemptOutcome(&row, source: source, attempt: attempt, control: control) {
        case .completed, .stopped:
            return nil
        case .deleted:
            discard(row)
            return nil
        case .failed(let error):
            return failed(&row, error, attempt: attempt)
        }
    }

    /// Runs the attempt to its outcome: shares bytes the region holds, or copies, verifies, names
    /// and records the replica.
    private func attemptOutcome(_ row: inout ReplicationRow, source: StoredImage, attempt: Int, control: JobControl) -> JobOutcome {
        let region = row.record.region
        do throws(JobError) {
            // The region may already hold these bytes (another image, a lab template): share them.
            if row.blobPath == nil, try complete(&row, sharingIn: region, sha256: source.image.sha256) {
                update(row.record, of: row.image, force: true)
                return .completed
            }
            if row.partialPath == nil {
                row.partialPath = layout.newReplicaPartialPath(region: region, image: row.image)
                row.record.bytesCopied = 0
            }
            try persist(row)
            update(row.record, of: row.image, force: true)
            // Interrupted between recording the blob's name and the commit: the replica under its
            // final name was verified before the rename, so it only needs recording.
            let blob: String
            if let renamed = row.blobPath, access(layout.url(renamed).path, F_OK) == 0 {
                blob = renamed
            } else {
                switch try copy(&row, source: source, attempt: attempt, control: control) {
                case .stopped(let signal): return signal == .deleted ? .deleted : .stopped
                case .verified: break
                }
                if !control.shouldRun { return control.value == .deleted ? .deleted : .stopped }
                blob = try storeReplica(&row, size: source.image.sizeBytes, sha256: source.image.sha256)
            }
            let partial = row.partialPath
            machine.complete(&row, blob: blob)
            guard try recording({ () throws(LabGalleryError) in try store.complete(row, blob: blob) }) else { throw .rowGone }
            if let partial { FileOps.removeQuietly(layout.url(partial)) }
            update(row.record, of: row.image, force: true)
            return .completed
        } catch {
            return error == .rowGone ? .deleted : .failed(error)
        }
    }

    /// Copies the replica into the row's partial file (see ``ReplicaCopier``).
    private func copy(_ row: inout ReplicationRow, source: StoredImage, attempt: Int, control: JobControl) throws(JobError) -> ReplicaCopier.Result {
        guard let partial = row.partialPath else { return .stopped(.shutdown) }
        let request = ReplicaCopier.Request(
            source: layout.url(source.blobPath), sourceRegion: source.image.region, size: source.image.sizeBytes,
            sha256: source.image.sha256, partial: layout.url(partial), partialName: partial, region: row.record.region,
            durableOffset: row.record.bytesCopied, attempt: attempt)
        let snapshot = row
        var current = row
        let store = store
        let progress = ReplicaCopier.Progress(
            recordStart: { [self] (offset) throws(JobError) in
                current.record.bytesCopied = offset
                try persist(current)
            },
            recordDurable: { offset in
                var r = snapshot
                r.record.bytesCopied = offset
                do throws(LabGalleryError) { return try store.update(r) ? nil : .deleted } catch {
                    return .failed("recording the copy in the database failed (\(error.message))")
                }
            },
            copied: { [self] offset, n in
                copiedBytes.add(n, ordering: .relaxed)
                current.record.bytesCopied = offset
                update(current.record, of: current.image, force: false)
            })
        defer { row.record.bytesCopied = current.record.bytesCopied }
        return try copier.copy(request, link: configuration.link(to: row.record.region).replicaLink(region: row.record.region),
                               control: control, progress: progress)
    }

    /// The verified replica becomes a blob of the region: its row (`writing`) and name are recorded
    /// before the rename, so after a crash in between a run finds the verified replica under its
    /// final name instead of copying again. Bytes the region gained meanwhile are shared instead.
    /// Returns the blob's path.
    private func storeReplica(_ row: inout ReplicationRow, size: Int64, sha256: String) throws(JobError) -> String {
        let region = row.record.region
        guard let named = try recording({ () throws(LabGalleryError) in try store.nameReplica(row, sha256: sha256, size: size) }) else {
            throw .rowGone
        }
        if named.shared { return named.path }
        row.blobPath = named.path
        guard let partial = row.partialPath else { return named.path }
        do throws(LabGalleryError) {
            try FileOps.renameDurably(layout.url(partial), to: layout.url(named.path))
        } catch {
            throw .copyFailed(reason: "cannot store the replica in \(region): \(error.message)", discard: false)
        }
        return named.path
    }

    /// Marks the row COMPLETED sharing a live blob of `region` with these bytes, if there is one.
    private func complete(_ row: inout ReplicationRow, sharingIn region: String, sha256: String) throws(JobError) -> Bool {
        let shared = try recording { () throws(LabGalleryError) in try store.completeSharing(row, sha256: sha256) }
        guard let shared else { throw .rowGone }
        guard let done = shared else { return false }
        if let p = row.partialPath { FileOps.removeQuietly(layout.url(p)) }
        row = done
        return true
    }

    /// A failed attempt (see ``JobStateMachine/fail(_:_:attempt:)``), recorded; when the database
    /// refuses the record too, watchers learn the outcome now (a FAILED one ends their watch) and
    /// the job runs again after a backoff to record it first.
    private func failed(_ row: inout ReplicationRow, _ error: JobError, attempt: Int) -> Duration? {
        let key = JobKey(image: row.image, region: row.record.region)
        let (next, remove) = machine.fail(&row, error, attempt: attempt)
        for p in remove { FileOps.removeQuietly(layout.url(p)) }
        do throws(JobError) { try persist(row) } catch {
            if error == .rowGone {
                discard(row)
                return nil
            }
            let outcome = row
            state.withLock { $0.unrecorded[key] = outcome }
            var shown = row.record
            shown.error = (shown.error ?? "") + " (not yet recorded: \(error.reason))"
            update(shown, of: key.image, force: true)
            return configuration.backoff(afterAttempt: max(attempt, 1))
        }
        update(row.record, of: key.image, force: true)
        switch next {
        case .retry(let delay): return delay
        case .gaveUp: return nil
        }
    }

    /// A job that cannot even read its row (no attempt made): show the reason, try again after
    /// the first backoff.
    private func readFailed(_ key: JobKey, reason: String) -> Duration? {
        locked { s, wake in
            guard var e = s.images[key.image.description], let i = e.regions.firstIndex(where: { $0.region == key.region }) else { return }
            e.regions[i].error = reason
            s.images[key.image.description] = e
            wake = publish(key.image.description, &s, force: true)
        }
        return configuration.backoff(afterAttempt: 1)
    }

    /// The image was deleted under the job: remove its partial file. Blobs go with their last
    /// reference (``LabGalleryService/release(_:_:)``), except a replica renamed into place after
    /// the deletion had already removed its blob row: nothing else knows that file.
    private func discard(_ row: ReplicationRow) {
        if let p = row.partialPath { FileOps.removeQuietly(layout.url(p)) }
        guard let blob = row.blobPath else { return }
        let state: BlobRecord.State?
        do { state = try store.blobState(blob) } catch { return }
        if state == nil || state == .doomed { FileOps.removeDurably(layout.url(blob)) }
    }
}
