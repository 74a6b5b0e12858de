/// Continuations collected under a lock, resumed after it is released: resuming a waiter inside a
/// lock would run its task's code (or block on the executor) while others wait for the lock.
/// Every path that wakes watchers goes through this type and ``WatchHub``.
struct Wakeups: Sendable {
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// Keeps `waiter` (if any) for ``resume()``.
    mutating func add(_ waiter: CheckedContinuation<Void, Never>?) {
        if let waiter { waiters.append(waiter) }
    }

    /// Adds the waiters of `other`.
    mutating func append(_ other: Wakeups) { waiters += other.waiters }

    /// Number of waiters collected.
    var count: Int { waiters.count }

    /// Resumes every waiter collected. Call it outside any lock.
    func resume() { for w in waiters { w.resume() } }
}

/// Who watches what: image watches and gallery watches, each a ``WatchMailbox``. A value kept
/// under its owner's lock (with the statuses it publishes, so watchers see changes in order);
/// every method returns the ``Wakeups`` its owner resumes after unlocking.
///
/// Fan-out: a status of an image goes to the image's watchers and to its gallery's watchers.
/// Coalescing happens in each mailbox (latest status per image; a terminal one is kept).
struct WatchHub: Sendable {
    /// A registered watch.
    struct Registration: Hashable, Sendable {
        enum Scope: Hashable, Sendable { case image, gallery }
        var scope: Scope
        var key: String
        var id: Int
    }

    private var images: [String: [Int: WatchMailbox]] = [:]
    private var galleries: [String: [Int: WatchMailbox]] = [:]
    private var nextID = 0
    /// Set by ``closeAll()``: new watches end at once with shutdown.
    private(set) var closed = false

    /// Watches open now.
    var count: Int { (images.values.map(\.count) + galleries.values.map(\.count)).reduce(0, +) }

    /// Images watched directly (image watches).
    var watchedImages: Set<String> { Set(images.keys) }
    /// Galleries watched (gallery watches).
    var watchedGalleries: Set<String> { Set(galleries.keys) }

    /// Whether the image has watchers, directly or through its gallery.
    func isWatched(image: String, gallery: String) -> Bool { images[image] != nil || galleries[gallery] != nil }

    /// Registers `mailbox` as a watcher of the image or gallery `key`.
    mutating func add(_ mailbox: WatchMailbox, scope: Registration.Scope, key: String) -> Registration {
        let id = nextID
        nextID += 1
        switch scope {
        case .image: images[key, default: [:]][id] = mailbox
        case .gallery: galleries[key, default: [:]][id] = mailbox
        }
        return Registration(scope: scope, key: key, id: id)
    }

    /// Unregisters a watch (idempotent).
    mutating func remove(_ r: Registration) {
        switch r.scope {
        case .image:
            images[r.key]?.removeValue(forKey: r.id)
            if images[r.key]?.isEmpty == true { images[r.key] = nil }
        case .gallery:
            galleries[r.key]?.removeValue(forKey: r.id)
            if galleries[r.key]?.isEmpty == true { galleries[r.key] = nil }
        }
    }

    /// Posts `status` to the watchers of its image and of `gallery`.
    func publish(_ status: ReplicationStatus, gallery: String) -> Wakeups {
        var wake = Wakeups()
        for m in (images[status.image] ?? [:]).values { wake.add(m.post(status)) }
        for m in (galleries[gallery] ?? [:]).values { wake.add(m.post(status)) }
        return wake
    }

    /// Posts `status` to the watchers of `gallery` only (an image's last status, `deleted` set).
    func publish(toGallery gallery: String, _ status: ReplicationStatus) -> Wakeups {
        var wake = Wakeups()
        for m in (galleries[gallery] ?? [:]).values { wake.add(m.post(status)) }
        return wake
    }

    /// Ends the watches of an image (`scope` `.image`) or gallery with `error`, after the statuses
    /// they have not read, and unregisters them.
    mutating func finish(_ scope: Registration.Scope, key: String, error: LabGalleryError) -> Wakeups {
        var wake = Wakeups()
        let watchers: [Int: WatchMailbox]
        switch scope {
        case .image: watchers = images.removeValue(forKey: key) ?? [:]
        case .gallery: watchers = galleries.removeValue(forKey: key) ?? [:]
        }
        for m in watchers.values { wake.add(m.finish(shutdown: false, error: error)) }
        return wake
    }

    /// Ends every watch with shutdown (at once) and refuses new ones.
    mutating func closeAll() -> Wakeups {
        closed = true
        var wake = Wakeups()
        for m in images.values.flatMap(\.values) + galleries.values.flatMap(\.values) {
            wake.add(m.finish(shutdown: true))
        }
        images = [:]
        galleries = [:]
        return wake
    }
}
