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
/// - Fleet mode (``ReplicationConfiguration/fleet``): several instances share the database and the
///   region storage. A job starts only when this instance claims its lease; the holder renews it and
///   stops writing when it cannot prove it still holds it; every row write is fenced by the claim's
///   epoch; other instances take over expired leases and resume from the durable offset. Changes
///   travel to the other instances' watchers through a ``ReplicationChangeFeed`` (see
///   ``FleetRuntime``). Without it (one instance), jobs are scheduled from memory as described above.
///
/// The engine sees persistence only through a ``ReplicationStore``; the use cases reach it through
/// ``LabGalleryService`` (which checks roles and names), never the other way round.
public final class ReplicationEngine: Sendable {
    /// Engine settings.
    public let configuration: ReplicationConfiguration
    /// Where the engine reads and records its rows.
    public let store: any ReplicationStore
    private let hooks: ReplicationHooks?

    struct Entry {
        var name: ImageName
        var regions: [RegionReplication]
        var lastPublished: ContinuousClock.Instant?
        var status: ReplicationStatus { ReplicationStatus(image: name.description, regions: regions) }
    }

    struct State {
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

        /// Images with watchers here: image watches, and tracked images of watched galleries.
        func watchedImages() -> Set<String> {
            let galleries = watches.watchedGalleries
            return watches.watchedImages.union(
                images.values.filter { galleries.contains($0.name.gallery.description) }.map(\.name.description))
        }

        /// Whether the image has watchers here (directly or through its gallery).
        func isWatched(image: String, gallery: String) -> Bool { watches.isWatched(image: image, gallery: gallery) }
    }

    let state: Mutex<State>
    private let jobsRunning = DispatchGroup()
    private let threads: JobThreads
    let copiedBytes = Atomic<Int64>(0)
    let machine: JobStateMachine
    let copier: ReplicaCopier
    /// Fleet mode's leases, threads and change feed; `nil` for one instance.
    let fleet: FleetRuntime?

    /// Creates an engine over `store` (idle until ``start()``). With `hooks`, ``start()`` listens
    /// to image creation and deletion there and the use cases route status, watches and retries here.
    /// `changeFeed` (fleet mode): where changes are published to, and heard from, other instances.
    public init(
        store: any ReplicationStore, hooks: ReplicationHooks?, configuration: ReplicationConfiguration = .init(),
        changeFeed: (any ReplicationChangeFeed)? = nil
    ) {
        self.store = store
        self.hooks = hooks
        self.configuration = configuration
        state = Mutex(State(jobs: JobScheduler(concurrency: configuration.concurrency)))
        threads = JobThreads(maxThreads: configuration.concurrency, name: "replication job")
        machine = JobStateMachine(maxAttempts: configuration.maxAttempts, backoff: configuration.backoff)
        copier = ReplicaCopier(chunkSize: configuration.chunkSize, persistEvery: configuration.persistEvery)
        fleet = configuration.fleet.map { FleetRuntime(settings: $0, feed: changeFeed) }
    }

    /// Creates an engine for the images of `service` (it keeps the service's store and hooks, not the service).
    public convenience init(
        service: LabGalleryService, configuration: ReplicationConfiguration = .init(),
        changeFeed: (any ReplicationChangeFeed)? = nil
    ) {
        self.init(
            store: service.replicationStore, hooks: service.replicationHooks, configuration: configuration,
            changeFeed: changeFeed)
    }

    /// This instance's id in fleet mode (`lease_owner`), else `nil`.
    public var instanceID: String? { fleet?.settings.instanceID }

    /// Bytes written to replica files by this engine since it was created (resumed prefixes excluded).
    public var bytesCopied: Int64 { copiedBytes.load(ordering: .relaxed) }

    /// Jobs running now.
    public var runningJobs: Int { state.withLock { $0.jobs.running.count } }

    /// Watch streams open now (image and gallery watches).
    public var openWatches: Int { state.withLock { $0.watches.count } }

    var layout: DataLayout { store.layout }

    /// Runs `body` under the lock, then resumes the watchers it collected, outside the lock.
    func locked<T>(_ body: (inout State, inout Wakeups) -> T) -> T {
        var wake = Wakeups()
        let result = state.withLock { s in body(&s, &wake) }
        wake.resume()
        return result
    }

    // MARK: - Lifecycle

    /// Loads every replication row, queues the unfinished jobs (REPLICATING ones resume from their
    /// persisted offset) and starts listening to image creation and deletion. Blocks (database):
    /// call it at start-up, off the cooperative pool. Fleet mode queues nothing: its claimer claims
    /// the runnable jobs whose leases are free.
    public func start() throws(LabGalleryError) {
        let rows = try store.allRows()
        hooks?.attach(self)
        let (first, starts) = state.withLock { s -> (Bool, [(JobKey, JobControl)]) in
            guard !s.started else { return (false, []) }
            s.started = true
            for row in rows {
                s.images[row.image.description, default: Entry(name: row.image, regions: [])].regions.append(row.record)
            }
            guard fleet == nil else { return (true, []) }
            for row in rows { enqueueIfDue(JobKey(image: row.image, region: row.record.region), &s) }
            return (true, schedule(&s))
        }
        if first, let fleet { startFleet(fleet) }
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
        if let fleet {
            // Waits for a claim or renewal round in progress (database I/O): off the cooperative pool.
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async { [self] in
                    stopFleet(fleet)
                    c.resume()
                }
            }
        }
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
            s.images[image.description] = Entry(
                name: image, regions: rows.map(\.record).sorted { $0.region < $1.region })
            wake = publish(image.description, &s, force: true)
            guard fleet == nil else { return [] }
            for r in rows { enqueueIfDue(JobKey(image: image, region: r.record.region), &s) }
            return schedule(&s)
        }
        announce(image.description, now: true)
        claimSoon()
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
            wake = s.watches.finish(
                .image, key: key, error: .notFound(resource: key, message: "\(key) was deleted while being watched"))
            let gone = ReplicationStatus(image: key, regions: last?.regions ?? [], deleted: true)
            let more = s.watches.publish(toGallery: image.gallery.description, gone)
            wake.append(more)
        }
        announce(key, now: true)
        fleet?.coalescer?.forget(key)
    }

    /// Ends the gallery's watch streams with NOT_FOUND (after the statuses they have not read).
    func galleryDeleted(_ gallery: GalleryName) {
        let key = gallery.description
        locked { s, wake in
            wake = s.watches.finish(
                .gallery, key: key, error: .notFound(resource: key, message: "\(key) was deleted while being watched"))
        }
    }

    // MARK: - Scheduling

    /// The one scheduling rule: a tracked job whose row is PENDING (or REPLICATING after a restart),
    /// or whose last outcome is not recorded yet, is queued unless it runs, is queued or waits.
    func enqueueIfDue(_ key: JobKey, _ s: inout State) {
        let record = s.images[key.image.description]?.regions.first { $0.region == key.region }
        let due = record.map { JobStateMachine.isUnfinished($0.state) || s.unrecorded[key] != nil } ?? false
        s.jobs.enqueue(key, due: due)
    }

    func schedule(_ s: inout State) -> [(JobKey, JobControl)] {
        let images = s.images
        return s.jobs.start { images[$0.image.description] != nil }
    }

    func launch(_ starts: [(JobKey, JobControl)]) {
        for (key, control) in starts {
            jobsRunning.enter()
            threads.submit { [self] in
                let backoff = run(key, control: control)
                if let fleet {
                    // Any instance may run it next: after the backoff (the database keeps it), or at once.
                    if mayRelease(fleet), let job = leased(key, control) { try? store.release(job, notBefore: backoff) }
                    state.withLock { s in _ = s.jobs.finished(key, backoff: false) }
                    claimSoon()
                    jobsRunning.leave()
                    return
                }
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

    func setRecord(_ record: RegionReplication, of image: ImageName, _ s: inout State) {
        guard var e = s.images[image.description] else { return }
        if let i = e.regions.firstIndex(where: { $0.region == record.region }) {
            e.regions[i] = record
        } else {
            e.regions.append(record)
            e.regions.sort { $0.region < $1.region }
        }
        s.images[image.description] = e
    }

    /// Posts the image's status to its watchers (inside the lock, so they see changes in order);
    /// returns the watchers to wake outside it. Progress-only updates are rate-limited.
    func publish(_ key: String, _ s: inout State, force: Bool) -> Wakeups {
        guard var e = s.images[key] else { return Wakeups() }
        let now = ContinuousClock.now
        if !force, let last = e.lastPublished, now - last < configuration.progressInterval { return Wakeups() }
        e.lastPublished = now
        s.images[key] = e
        return s.watches.publish(e.status, gallery: e.name.gallery.description)
    }

    /// Records and publishes a job's new state or progress; in fleet mode tells the other instances
    /// too (progress coalesced; they re-read what is committed).
    func update(_ record: RegionReplication, of image: ImageName, force: Bool) {
        locked { s, wake in
            setRecord(record, of: image, &s)
            wake = publish(image.description, &s, force: force)
        }
        announce(image.description, now: force)
    }
}
