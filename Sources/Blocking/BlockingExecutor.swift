import Foundation
import Synchronization

/// A bounded pool of threads made for blocking work: database transactions, file I/O, fsync,
/// hashing and waits. Swift's cooperative pool has one thread per core (two here); a blocking
/// call there stalls every deadline timer, health check and watch stream of the process.
///
/// It is a `TaskExecutor`: ``run(_:)`` runs synchronous work on one of its threads inside the
/// calling task, so the work sees the task's cancellation (`Task.isCancelled`, including a call's
/// deadline, which cancels the handler) and no `Sendable` hand-off is needed. Threads start on
/// demand up to ``maxThreads`` and end after a while idle, so an unused pool costs nothing.
public final class BlockingExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `queue`, `threads` and `idle` are only touched under `condition`'s lock.

    /// The process-wide default pool (``defaultThreads`` threads), used unless a pool is configured.
    public static let shared = BlockingExecutor(maxThreads: defaultThreads, name: "blocking")

    /// The default size: 4 per core, at least 8 (enough for concurrent uploads, copies and
    /// database transactions to overlap their I/O waits without unbounded threads).
    public static var defaultThreads: Int { max(8, 4 * ProcessInfo.processInfo.activeProcessorCount) }

    /// Most threads that run at once.
    public let maxThreads: Int
    private let name: String
    private let idleTimeout: TimeInterval
    private let condition = NSCondition()
    private var queue: [UnownedJob] = []
    private var head = 0
    private var threads = 0
    private var idle = 0

    /// Creates a pool of at most `maxThreads` threads named `name`; a thread idle for
    /// `idleTimeout` seconds ends.
    public init(maxThreads: Int, name: String = "blocking", idleTimeout: TimeInterval = 10) {
        precondition(maxThreads >= 1, "a blocking pool needs at least one thread")
        self.maxThreads = maxThreads
        self.name = name
        self.idleTimeout = idleTimeout
    }

    /// Runs `body` on one of the pool's threads, in the calling task (cancellation is visible
    /// to `body` through `Task.isCancelled`). Throws `CancellationError` without running `body`
    /// when the task is cancelled before a thread takes it.
    public func run<T, E: Error>(_ body: () throws(E) -> T) async throws -> T {
        try await withTaskExecutorPreference(self) { () async throws -> T in
            try Task.checkCancellation()
            return try body()
        }
    }

    /// Enqueues a job (TaskExecutor). Starts a thread when none is idle and the pool is not full.
    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        queue.append(unowned)
        let spawn = idle == 0 && threads < maxThreads
        if spawn { threads += 1 } else { condition.signal() }
        condition.unlock()
        if spawn {
            let thread = Thread { [self] in work() }
            thread.name = "\(name) \(threads)"
            thread.start()
        }
    }

    private func work() {
        condition.lock()
        while true {
            if head < queue.count {
                let job = queue[head]
                head += 1
                if head == queue.count {
                    queue.removeAll(keepingCapacity: true)
                    head = 0
                }
                condition.unlock()
                job.runSynchronously(on: asUnownedTaskExecutor())
                condition.lock()
                continue
            }
            idle += 1
            let woke = condition.wait(until: Date(timeIntervalSinceNow: idleTimeout))
            idle -= 1
            if !woke && head == queue.count { break }
        }
        threads -= 1
        condition.unlock()
    }
}
