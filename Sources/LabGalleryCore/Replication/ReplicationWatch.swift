import Foundation
import Synchronization

/// Why a watch stream ended without reaching its natural end.
public enum ReplicationWatchError: Error, Sendable, Equatable {
    /// The server is shutting down; the client should reconnect and watch again.
    case shutdown
}

/// A watcher's mailbox: the latest ``ReplicationStatus`` per image, not a queue of every change.
///
/// Publishing never waits for the watcher: it overwrites the pending status of that image (so a slow
/// watcher sees progress coalesced and memory stays bounded by the number of images watched), except
/// that a pending status whose aggregated state is terminal (COMPLETED/FAILED) is never overwritten:
/// the newer one queues behind it (at most ``maxPendingPerImage`` per image; beyond that, only after
/// repeated retries no watcher read, the oldest is dropped).
final class WatchMailbox: Sendable {
    static let maxPendingPerImage = 8

    private enum End {
        case shutdown
        case error(LabGalleryError)
    }

    private struct State {
        var pending: [String: [ReplicationStatus]] = [:]
        var order: [String] = []
        var end: End?
        var cancelled = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    /// Stores `status` (coalescing) and returns the waiter to resume, if one was waiting.
    /// Call the returned continuation's `resume()` outside any lock.
    func post(_ status: ReplicationStatus) -> CheckedContinuation<Void, Never>? {
        state.withLock { s in
            guard s.end == nil else { return nil }
            if var list = s.pending[status.image], let last = list.last {
                if last.isFinal {
                    list.append(status)
                    if list.count > Self.maxPendingPerImage { list.removeFirst() }
                } else {
                    list[list.count - 1] = status
                }
                s.pending[status.image] = list
            } else {
                s.pending[status.image] = [status]
                s.order.append(status.image)
            }
            let w = s.waiter
            s.waiter = nil
            return w
        }
    }

    /// Ends the stream: shutdown at once; an error after the pending statuses.
    func finish(shutdown: Bool, error: LabGalleryError? = nil) -> CheckedContinuation<Void, Never>? {
        state.withLock { s in
            if s.end == nil { s.end = shutdown ? .shutdown : .error(error ?? .internal(message: "watch ended")) }
            let w = s.waiter
            s.waiter = nil
            return w
        }
    }

    /// Number of statuses waiting (for tests: bounded however slow the reader is).
    var pendingCount: Int { state.withLock { $0.pending.values.reduce(0) { $0 + $1.count } } }

    /// The next status; throws ``ReplicationWatchError/shutdown``, the end error, or `CancellationError`.
    func next() async throws -> ReplicationStatus {
        while true {
            let ready: Result<ReplicationStatus, any Error>? = state.withLock { s in
                if s.cancelled { return .failure(CancellationError()) }
                if case .shutdown? = s.end { return .failure(ReplicationWatchError.shutdown) }
                if let key = s.order.first, var list = s.pending[key] {
                    let item = list.removeFirst()
                    if list.isEmpty {
                        s.pending[key] = nil
                        s.order.removeFirst()
                    } else {
                        s.pending[key] = list
                    }
                    return .success(item)
                }
                if case .error(let e)? = s.end { return .failure(e) }
                return nil
            }
            if let ready { return try ready.get() }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let now = state.withLock { s -> Bool in
                        if s.cancelled || s.end != nil || !s.order.isEmpty { return true }
                        s.waiter = c
                        return false
                    }
                    if now { c.resume() }
                }
            } onCancel: {
                let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
                    s.cancelled = true
                    let w = s.waiter
                    s.waiter = nil
                    return w
                }
                w?.resume()
            }
        }
    }
}

/// One watch stream (WatchReplication or WatchGalleryReplication), from ``ReplicationEngine``.
///
/// Iterate with ``next()``; call ``close()`` when done (the service does it when the call ends).
public final class ReplicationWatch: Sendable {
    private let mailbox: WatchMailbox
    private let endsWhenTerminal: Bool
    private let onClose: @Sendable () -> Void
    private let delivered = Atomic<Bool>(false)

    init(mailbox: WatchMailbox, endsWhenTerminal: Bool, onClose: @escaping @Sendable () -> Void) {
        self.mailbox = mailbox
        self.endsWhenTerminal = endsWhenTerminal
        self.onClose = onClose
    }

    deinit { onClose() }

    /// The next full status, or `nil` when the stream ends normally (an image watch after it delivered
    /// a COMPLETED or FAILED aggregated state). Throws ``ReplicationWatchError/shutdown`` on server
    /// shutdown, `LabGalleryError.notFound` if the watched image is deleted, `CancellationError` when
    /// the calling task is cancelled.
    public func next() async throws -> ReplicationStatus? {
        if delivered.load(ordering: .acquiring) { return nil }
        let status = try await mailbox.next()
        if endsWhenTerminal, status.aggregatedState == .completed || status.aggregatedState == .failed {
            delivered.store(true, ordering: .releasing)
        }
        return status
    }

    /// Statuses waiting to be read (bounded by the number of images watched).
    public var pendingCount: Int { mailbox.pendingCount }

    /// Unsubscribes (idempotent; also done on deinit).
    public func close() { onClose() }
}
