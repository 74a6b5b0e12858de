import Dispatch
import Foundation
import Synchronization

/// Fleet mode (``ReplicationConfiguration/fleet`` set): jobs start only by claiming their lease in the
/// database, the holder renews while it copies and stops writing as soon as it cannot prove it still
/// holds the lease; watches follow changes made by any instance through a ``ReplicationChangeFeed``.
///
/// Safety: a renewal sent at monotonic instant `t` that succeeds sets the database expiry to the
/// database's `now + lease ≥ t + lease`; the holder writes a chunk only before `t + lease − margin`
/// (``JobControl``), and another instance claims only after the database expiry. So the old holder
/// has stopped before a new one can write, and the new claim's epoch fences every row write the old
/// holder might still attempt.
final class FleetRuntime: Sendable {
    let settings: ReplicationFleetSettings
    let coalescer: ChangeCoalescer?
    let feed: (any ReplicationChangeFeed)?

    struct State {
        var renewer: FleetThread?
        var claimer: FleetThread?
        var subscription: ReplicationFeedSubscription?
        /// Images another instance changed, to re-read.
        var changed: Set<String> = []
        var lastRefresh = ContinuousClock.now
        /// Set by ``ReplicationEngine/simulateCrash()``: nothing is written, released or published any more.
        var crashed = false
    }
    let state = Mutex(State())
    /// Test hook: renewals, claims and releases are skipped (an instance cut off from the database).
    let isolated = Atomic<Bool>(false)
    /// Test hook: called before each chunk a job writes, with the holder's epoch.
    let writeObserver = Mutex<(@Sendable (_ key: String, _ epoch: Int64, _ offset: Int64) -> Void)?>(nil)

    init(settings: ReplicationFleetSettings, feed: (any ReplicationChangeFeed)?) {
        self.settings = settings
        self.feed = feed
        coalescer = feed.map {
            ChangeCoalescer(feed: $0, origin: settings.instanceID, interval: settings.publishInterval)
        }
    }

    var crashed: Bool { state.withLock { $0.crashed } }

    /// Monotonic uptime nanoseconds now.
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Until when a lease claimed or renewed by a request sent at `sent` is proven.
    func provenUntil(sentAt sent: UInt64) -> UInt64 {
        let ns = (settings.leaseDuration - settings.safetyMargin).seconds * 1e9
        return sent + UInt64(max(0, ns))
    }
}

extension ReplicationEngine {
    /// The leased job of a run.
    func leased(_ key: JobKey, _ control: JobControl) -> LeasedJob? {
        control.lease.map { LeasedJob(image: key.image, region: key.region, lease: $0) }
    }

    /// Starts the renewer, the claimer and the feed subscription.
    func startFleet(_ fleet: FleetRuntime) {
        let s = fleet.settings
        let subscription = fleet.feed?.subscribe { change in
            guard change.origin != s.instanceID else { return }
            let claimer = fleet.state.withLock { st in
                st.changed.insert(change.image)
                return st.claimer
            }
            claimer?.poke()
        }
        let renewer = FleetThread(name: "replication leases", interval: s.renewInterval) { [weak self] in
            self?.renewLeases(fleet)
        }
        let claimer = FleetThread(name: "replication claims", interval: min(s.claimInterval, s.refreshInterval)) {
            [weak self] in
            self?.fleetRound(fleet)
        }
        fleet.state.withLock { st in
            st.subscription = subscription
            st.renewer = renewer
            st.claimer = claimer
        }
        renewer.start()
        claimer.start()
    }

    /// Stops the fleet's threads and subscription (waits for a round in progress).
    func stopFleet(_ fleet: FleetRuntime) {
        let (renewer, claimer, subscription) = fleet.state.withLock { st in
            defer {
                st.renewer = nil
                st.claimer = nil
                st.subscription = nil
            }
            return (st.renewer, st.claimer, st.subscription)
        }
        subscription?.cancel()
        renewer?.stop()
        claimer?.stop()
    }

    /// Asks the claimer to look for jobs now (an image was stored or retried here, a job ended).
    func claimSoon() {
        fleet?.state.withLock { $0.claimer }?.poke()
    }

    /// Tells the other instances the image's rows changed (committed). `now`: a state change.
    func announce(_ image: String, now: Bool) {
        guard let fleet, !fleet.crashed else { return }
        fleet.coalescer?.changed(image, now: now)
    }

    /// Renews the leases of the running jobs; a job whose lease is gone is told to stop at once.
    private func renewLeases(_ fleet: FleetRuntime) {
        guard !fleet.isolated.load(ordering: .acquiring), !fleet.crashed else { return }
        let running = state.withLock { s in s.jobs.running.compactMap { k, c in leased(k, c).map { ($0, c) } } }
        guard !running.isEmpty else { return }
        let sent = FleetRuntime.now()
        let held: [LeasedJob]
        do {
            held = try store.renew(
                running.map { $0.0 }, owner: fleet.settings.instanceID, lease: fleet.settings.leaseDuration)
        } catch {
            return  // Unproven: each job stops by itself when its proof runs out.
        }
        let kept = Set(held)
        let until = fleet.provenUntil(sentAt: sent)
        for (job, control) in running {
            if kept.contains(job) { control.prove(until: until) } else { control.send(.leaseLost) }
        }
    }

    /// One round of the claimer: re-read what other instances changed (and, every refresh interval,
    /// every watched image: a notification may have been lost), then claim runnable jobs while this
    /// instance has free slots.
    private func fleetRound(_ fleet: FleetRuntime) {
        guard !fleet.crashed else { return }
        let now = ContinuousClock.now
        let (changed, refreshAll) = fleet.state.withLock { st in
            let all = now - st.lastRefresh >= fleet.settings.refreshInterval
            if all { st.lastRefresh = now }
            defer { st.changed = [] }
            return (st.changed, all)
        }
        var images = changed
        if refreshAll { images.formUnion(state.withLock { $0.watchedImages() }) }
        for image in images.sorted() { refresh(image) }
        if refreshAll {
            for gallery in state.withLock({ $0.watches.watchedGalleries }).sorted() { refreshGallery(gallery) }
        }
        claimJobs(fleet)
    }

    /// Claims up to the free slots' worth of runnable jobs and runs them.
    private func claimJobs(_ fleet: FleetRuntime) {
        let free = state.withLock { s in s.jobs.stopped ? 0 : s.jobs.concurrency - s.jobs.running.count }
        guard free > 0, !fleet.isolated.load(ordering: .acquiring) else { return }
        let sent = FleetRuntime.now()
        let rows: [ReplicationRow]
        do {
            rows = try store.claim(owner: fleet.settings.instanceID, limit: free, lease: fleet.settings.leaseDuration)
        } catch {
            return  // The database is unavailable: the next round tries again.
        }
        guard !rows.isEmpty else { return }
        // Images this instance does not track yet: their rows, so watchers here see whole statuses.
        let untracked = Set(rows.map(\.image)).filter { i in state.withLock { $0.images[i.description] == nil } }
        var found: [ImageName: [ReplicationRow]] = [:]
        for image in untracked { found[image] = try? store.rows(of: image) }
        let until = fleet.provenUntil(sentAt: sent)
        var refused: [LeasedJob] = []
        let starts = state.withLock { s -> [(JobKey, JobControl)] in
            var starts: [(JobKey, JobControl)] = []
            for (image, imageRows) in found where s.images[image.description] == nil {
                s.images[image.description] = Entry(name: image, regions: imageRows.map(\.record))
            }
            for row in rows {
                let key = JobKey(image: row.image, region: row.record.region)
                let control = JobControl(lease: row.lease, provenUntil: until)
                if s.images[row.image.description] != nil, s.jobs.claimed(key, control: control) {
                    starts.append((key, control))
                } else if let job = leased(key, control) {
                    refused.append(job)
                }
            }
            return starts
        }
        for job in refused { try? store.release(job, notBefore: nil) }
        launch(starts)
    }

    /// Re-reads an image's rows (another instance changed them) and tells this instance's watchers;
    /// an image gone from the database ends its watches here as a local deletion would.
    func refresh(_ image: String) {
        guard let name = try? ImageName(parsing: image, field: "image") else { return }
        let watched = state.withLock { $0.isWatched(image: image, gallery: name.gallery.description) }
        guard watched else { return }
        let rows: [ReplicationRow]?
        do { rows = try store.rows(of: name) } catch { return }
        guard let rows else {
            if state.withLock({ $0.images[image] != nil }) { imageDeleted(name) }
            refreshGallery(name.gallery.description)
            return
        }
        locked { s, wake in
            if merge(name, rows.map(\.record), &s) { wake = publish(image, &s, force: true) }
        }
    }

    /// Ends this instance's watches of a gallery another instance deleted (NOT_FOUND, as locally).
    func refreshGallery(_ gallery: String) {
        guard let name = try? GalleryName(parsing: gallery, field: "gallery"),
            state.withLock({ $0.watches.watchedGalleries.contains(gallery) }),
            (try? store.galleryExists(name)) == false
        else { return }
        galleryDeleted(name)
    }

    /// Sets the image's records from the database, except the regions this instance is copying (its
    /// own record is fresher). Returns whether anything changed.
    func merge(_ image: ImageName, _ records: [RegionReplication], _ s: inout State) -> Bool {
        let key = image.description
        let old = s.images[key]
        var merged = records.map { r in
            s.jobs.running[JobKey(image: image, region: r.region)] != nil
                ? (old?.regions.first { $0.region == r.region } ?? r) : r
        }
        merged.sort { $0.region < $1.region }
        guard old?.regions != merged else { return false }
        var e = old ?? Entry(name: image, regions: [])
        e.regions = merged
        s.images[key] = e
        return true
    }

    // MARK: - Test hooks

    /// Simulates `kill -9` of this instance: its jobs stop at once without writing, releasing or
    /// publishing anything, renewals and claims stop; its leases stay in the database until they expire.
    /// Call ``stop()`` afterwards to reclaim the threads.
    func simulateCrash() {
        guard let fleet else { return }
        fleet.state.withLock { $0.crashed = true }
        fleet.coalescer?.stop()
        stopFleet(fleet)
        state.withLock { s in
            for c in s.jobs.running.values { c.send(.leaseLost) }
        }
        closeWatchers()
    }

    /// Test hook: stops (or resumes) renewing, claiming and releasing leases, as if this instance were
    /// cut off from the database: its jobs must stop writing on their own when their proof runs out.
    func isolate(_ cutOff: Bool) { fleet?.isolated.store(cutOff, ordering: .releasing) }

    /// Whether leases may be released (not after a simulated crash or while isolated).
    func mayRelease(_ fleet: FleetRuntime) -> Bool { !fleet.crashed && !fleet.isolated.load(ordering: .acquiring) }

    /// Test hook: `observer(job, epoch, offset)` runs before each chunk a job of this engine writes.
    func observeWrites(_ observer: @escaping @Sendable (_ key: String, _ epoch: Int64, _ offset: Int64) -> Void) {
        fleet?.writeObserver.withLock { $0 = observer }
    }
}

/// A thread that runs `body` every `interval`, or at once when poked, until stopped.
///
/// `@unchecked Sendable`: every mutable field is guarded by `condition`.
final class FleetThread: @unchecked Sendable {
    private let condition = NSCondition()
    private let interval: Duration
    private let body: @Sendable () -> Void
    private let name: String
    private var poked = false
    private var stopping = false
    private var exited = false

    init(name: String, interval: Duration, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.interval = interval
        self.body = body
    }

    func start() {
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.start()
    }

    /// Runs `body` as soon as the current round ends.
    func poke() {
        condition.lock()
        poked = true
        condition.signal()
        condition.unlock()
    }

    /// Ends the loop and waits for a round in progress (never call it from `body`).
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !exited { condition.wait() }
        condition.unlock()
    }

    private func loop() {
        condition.lock()
        while !stopping {
            if !poked { _ = condition.wait(until: Date(timeIntervalSinceNow: interval.seconds)) }
            if stopping { break }
            poked = false
            condition.unlock()
            body()
            condition.lock()
        }
        exited = true
        condition.broadcast()
        condition.unlock()
    }
}
