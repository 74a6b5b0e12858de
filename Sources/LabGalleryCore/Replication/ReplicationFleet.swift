import Foundation
import Synchronization

/// Fleet mode: several instances share one database and the region storage, and replication jobs
/// are leased (see ``ReplicationEngine``). `nil` in ``ReplicationConfiguration/fleet``: one instance.
public struct ReplicationFleetSettings: Sendable, Equatable {
    /// This instance's id, recorded as `lease_owner` (default: a random one per start).
    public var instanceID: String
    /// How long a claim or renewal holds a job (database clock).
    public var leaseDuration: Duration
    /// How often the holder renews its leases (default a third of the lease).
    public var renewInterval: Duration
    /// How often an instance looks for runnable jobs (also at once when it stores or retries an image).
    public var claimInterval: Duration
    /// The holder stops writing this long before its lease could expire (measured from the last
    /// successful renewal's send time on a monotonic clock; default a sixth of the lease).
    public var safetyMargin: Duration
    /// How often watched images are re-read from the database in case a change notification was lost.
    public var refreshInterval: Duration
    /// At most one progress notification per image this often (state changes always at once).
    public var publishInterval: Duration

    /// Fleet settings; the intervals default to fractions of `leaseDuration`.
    public init(
        instanceID: String = ReplicationFleetSettings.randomInstanceID(), leaseDuration: Duration = .seconds(30),
        renewInterval: Duration? = nil, claimInterval: Duration = .seconds(1), safetyMargin: Duration? = nil,
        refreshInterval: Duration = .seconds(5), publishInterval: Duration = .milliseconds(200)
    ) {
        self.instanceID = instanceID
        self.leaseDuration = leaseDuration
        self.renewInterval = renewInterval ?? leaseDuration / 3
        self.claimInterval = claimInterval
        self.safetyMargin = safetyMargin ?? leaseDuration / 6
        self.refreshInterval = refreshInterval
        self.publishInterval = publishInterval
    }

    /// `<host>-<8 hex>`: readable in `lease_owner`, unique per start.
    public static func randomInstanceID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "instance"
        return "\(host)-\(String(UInt32.random(in: .min ... .max), radix: 16))"
    }

    /// INVALID_ARGUMENT unless renewals and the margin fit in the lease.
    public func validate() throws(LabGalleryError) {
        guard !instanceID.isEmpty, instanceID.count <= 200 else {
            throw .invalid("instance_id", "the instance id must be 1 to 200 characters")
        }
        guard leaseDuration >= .milliseconds(300) else {
            throw .invalid("replication_lease", "the replication lease must be at least 0.3 s")
        }
        guard renewInterval > .zero, renewInterval + safetyMargin < leaseDuration else {
            throw .invalid(
                "replication_lease",
                "the renew interval (\(renewInterval)) plus the safety margin (\(safetyMargin)) must be shorter than the lease (\(leaseDuration))"
            )
        }
    }
}

/// "Image X's replication rows changed": what an engine tells the other instances after a commit.
public struct ReplicationChange: Sendable, Hashable {
    /// The image's resource name (`galleries/G/images/I`): the whole payload a feed must carry.
    public var image: String
    /// The publishing instance (``ReplicationFleetSettings/instanceID``), so it can skip its own changes.
    public var origin: String
    /// Memberwise initializer.
    public init(image: String, origin: String) {
        self.image = image
        self.origin = origin
    }
}

/// How replication changes travel between instances (PostgreSQL: LISTEN/NOTIFY, payload
/// `origin + "\t" + image`; one process: ``InProcessChangeFeed``).
///
/// Contract: delivery is **at most once** and unordered between images (a notification may be lost,
/// e.g. while a connection reconnects), so subscribers re-read the rows on a slow timer too
/// (``ReplicationFleetSettings/refreshInterval``); a notification is only a hint to re-read, never the
/// data. The engine publishes only after the change committed, and coalesces progress (at most one
/// per image per ``ReplicationFleetSettings/publishInterval``; state changes always).
public protocol ReplicationChangeFeed: Sendable {
    /// Sends `change` to every subscriber (the publisher's own included). Must not block on I/O:
    /// it is called from job threads.
    func publish(_ change: ReplicationChange)
    /// Calls `handler` for every change published from now on, by any instance, until the
    /// subscription is cancelled. `handler` must return quickly.
    func subscribe(_ handler: @escaping @Sendable (ReplicationChange) -> Void) -> ReplicationFeedSubscription
}

/// A subscription to a ``ReplicationChangeFeed``.
public final class ReplicationFeedSubscription: Sendable {
    private let onCancel: Mutex<(@Sendable () -> Void)?>
    /// A subscription that runs `cancel` once, when cancelled.
    public init(cancel: @escaping @Sendable () -> Void) { onCancel = Mutex(cancel) }
    /// Stops the deliveries (idempotent).
    public func cancel() {
        let cancel = onCancel.withLock { c in
            defer { c = nil }
            return c
        }
        cancel?()
    }
}

/// A ``ReplicationChangeFeed`` shared by the engines of one process: a single instance, and the tests
/// that run several engines over one database.
public final class InProcessChangeFeed: ReplicationChangeFeed {
    private struct State {
        var handlers: [Int: @Sendable (ReplicationChange) -> Void] = [:]
        var next = 0
    }
    private let state = Mutex(State())

    /// An empty bus.
    public init() {}

    public func publish(_ change: ReplicationChange) {
        for h in state.withLock({ Array($0.handlers.values) }) { h(change) }
    }

    public func subscribe(_ handler: @escaping @Sendable (ReplicationChange) -> Void) -> ReplicationFeedSubscription {
        let id = state.withLock { s in
            let id = s.next
            s.next += 1
            s.handlers[id] = handler
            return id
        }
        return ReplicationFeedSubscription { [weak self] in
            self?.state.withLock { _ = $0.handlers.removeValue(forKey: id) }
        }
    }
}

/// Coalesces an engine's change notifications: state changes go out at once, progress at most once
/// per image per interval (a deferred one carries the latest, since subscribers re-read the rows).
final class ChangeCoalescer: Sendable {
    private struct State {
        var lastSent: [String: ContinuousClock.Instant] = [:]
        var deferred: Set<String> = []
        var stopped = false
    }
    private let state = Mutex(State())
    private let feed: any ReplicationChangeFeed
    private let origin: String
    private let interval: Duration

    init(feed: any ReplicationChangeFeed, origin: String, interval: Duration) {
        self.feed = feed
        self.origin = origin
        self.interval = interval
    }

    /// The image's rows changed (committed). `now`: a state change, sent at once.
    func changed(_ image: String, now: Bool) {
        let clock = ContinuousClock.now
        let wait: Duration? = state.withLock { s in
            guard !s.stopped else { return nil }
            if !now, let last = s.lastSent[image], clock - last < interval {
                guard s.deferred.insert(image).inserted else { return nil }
                return interval - (clock - last)
            }
            s.lastSent[image] = clock
            return .zero
        }
        guard let wait else { return }
        if wait == .zero {
            feed.publish(ReplicationChange(image: image, origin: origin))
            return
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + wait.seconds) { [self] in
            let send = state.withLock { s -> Bool in
                s.deferred.remove(image)
                guard !s.stopped else { return false }
                s.lastSent[image] = ContinuousClock.now
                return true
            }
            if send { feed.publish(ReplicationChange(image: image, origin: origin)) }
        }
    }

    /// An image is gone: forget its timing.
    func forget(_ image: String) { state.withLock { _ = $0.lastSent.removeValue(forKey: image) } }

    /// Sends nothing more (a killed instance, or a stopped one).
    func stop() { state.withLock { $0.stopped = true } }
}
