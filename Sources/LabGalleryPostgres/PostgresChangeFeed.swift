import Foundation
import LabGalleryCore
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// ``ReplicationChangeFeed`` across instances through PostgreSQL's LISTEN/NOTIFY on channel
/// ``channel``, payload `origin + "\t" + image`.
///
/// One thread of its own owns one connection: it LISTENs, sends what ``publish(_:)`` queued (one
/// `pg_notify` per change, so `publish` never blocks a job thread on I/O), and hands every
/// notification to the subscribers. When the connection breaks it reconnects (every second) and
/// LISTENs again; changes published or notified meanwhile are lost, which the contract allows:
/// engines re-read watched images on a timer. PostgreSQL delivers a notification only after its
/// transaction commits, and drops duplicates within one transaction.
public final class PostgresChangeFeed: ReplicationChangeFeed {
    /// The NOTIFY channel.
    public static let channel = "labgallery_replication"
    /// PostgreSQL's payload limit is 8000 bytes; an image name is far shorter.
    static let maxPayload = 7999

    private struct State {
        var handlers: [Int: @Sendable (ReplicationChange) -> Void] = [:]
        var nextHandler = 0
        var outbox: [String] = []
        var stopped = false
    }
    private let state = Mutex(State())
    private let target: PostgresTarget
    private let logger: Logger
    /// A pipe that wakes the feed thread from poll(2) when there is something to send or it
    /// must stop: [read end, write end], both non-blocking.
    private let wake: [Int32]
    private let done = DispatchSemaphore(value: 0)

    /// Starts the feed's thread on `target`; it connects (and reconnects) on its own.
    public init(target: PostgresTarget, logger: Logger = Logger(label: "labgallery.postgres.feed")) {
        self.target = target
        self.logger = logger
        var ends: [Int32] = [-1, -1]
        if pipe(&ends) == 0 {
            for fd in ends { _ = fcntl(fd, F_SETFL, O_NONBLOCK) }
            for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        } else {
            ends = [-1, -1]  // no descriptors left: the feed then wakes on its one-second timer only
        }
        wake = ends
        let thread = Thread { [self] in run() }
        thread.name = "postgres change feed"
        thread.start()
    }

    deinit { for fd in wake where fd >= 0 { Glibc.close(fd) } }

    public func publish(_ change: ReplicationChange) {
        let payload = change.origin + "\t" + change.image
        guard payload.utf8.count <= Self.maxPayload else { return }
        let first = state.withLock { s -> Bool in
            guard !s.stopped else { return false }
            s.outbox.append(payload)
            return s.outbox.count == 1
        }
        if first { signal() }
    }

    public func subscribe(_ handler: @escaping @Sendable (ReplicationChange) -> Void) -> ReplicationFeedSubscription {
        let id = state.withLock { s in
            defer { s.nextHandler += 1 }
            s.handlers[s.nextHandler] = handler
            return s.nextHandler
        }
        return ReplicationFeedSubscription { [weak self] in
            self?.state.withLock { _ = $0.handlers.removeValue(forKey: id) }
        }
    }

    /// Stops the thread and closes its connection (blocks until it has).
    public func close() {
        let first = state.withLock { s -> Bool in
            defer { s.stopped = true }
            return !s.stopped
        }
        guard first else { return }
        signal()
        done.wait()
    }

    private func signal() {
        var one: UInt8 = 1
        _ = write(wake[1], &one, 1)
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    private func run() {
        defer { done.signal() }
        var connection: PostgresConnection?
        var lastFailure: String?
        while !stopped {
            if connection == nil {
                do {
                    let c = try PostgresConnection(target)
                    try c.run("LISTEN \(Self.channel)")
                    connection = c
                    if lastFailure != nil { logger.notice("replication change feed reconnected to \(target)") }
                    lastFailure = nil
                } catch {
                    if lastFailure != error.description {
                        logger.warning(
                            "replication change feed cannot reach the database: \(error.description); retrying every second"
                        )
                    }
                    lastFailure = error.description
                    waitForWake(socket: -1, milliseconds: 1000)
                    continue
                }
            }
            guard let c = connection else { continue }
            do {
                let outbox = state.withLock { s in
                    defer { s.outbox.removeAll() }
                    return s.outbox
                }
                for payload in outbox {
                    try c.query("SELECT pg_notify($1, $2)", [.string(Self.channel), .string(payload)])
                }
                deliver(try c.notifications())
                waitForWake(socket: c.socket, milliseconds: 1000)
                deliver(try c.notifications())
            } catch {
                logger.warning("replication change feed lost its connection: \(error.description); reconnecting")
                lastFailure = error.description
                connection = nil
            }
        }
    }

    private func deliver(_ payloads: [String]) {
        guard !payloads.isEmpty else { return }
        let handlers = state.withLock { Array($0.handlers.values) }
        for payload in payloads {
            guard let tab = payload.firstIndex(of: "\t") else { continue }
            let change = ReplicationChange(
                image: String(payload[payload.index(after: tab)...]), origin: String(payload[..<tab]))
            for handler in handlers { handler(change) }
        }
    }

    /// Blocks until the connection's socket is readable, ``signal()`` is called, or `milliseconds` pass.
    private func waitForWake(socket: Int32, milliseconds: Int32) {
        var fds = [pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0)]
        if socket >= 0 { fds.append(pollfd(fd: socket, events: Int16(POLLIN), revents: 0)) }
        _ = poll(&fds, nfds_t(fds.count), milliseconds)
        var drained = [UInt8](repeating: 0, count: 64)
        while wake[0] >= 0 && read(wake[0], &drained, drained.count) > 0 {}
    }
}
