import Foundation

/// Which jobs run, wait or are queued: a value kept under the engine's lock (with the statuses
/// that decide whether a job is due), so one rule applies atomically whenever a job ends, a
/// backoff elapses or a retry is asked: a due job that is neither running, queued nor waiting out
/// a backoff is queued, and queued jobs start while fewer than ``concurrency`` run.
struct JobScheduler: Sendable {
    /// At most this many jobs run at once.
    let concurrency: Int
    private(set) var ready: [JobKey] = []
    private(set) var running: [JobKey: JobControl] = [:]
    /// Jobs waiting out a backoff (a timer ends it with ``endBackoff(_:)``).
    private(set) var waiting: Set<JobKey> = []
    /// Set by ``stop()``: nothing is queued or started any more.
    private(set) var stopped = false

    init(concurrency: Int) { self.concurrency = max(1, concurrency) }

    /// Queues `key` if it is `due` and neither running, queued nor waiting.
    mutating func enqueue(_ key: JobKey, due: Bool) {
        guard due, !stopped, running[key] == nil, !waiting.contains(key), !ready.contains(key) else { return }
        ready.append(key)
    }

    /// Starts queued jobs (those `isLive` still accepts) while fewer than ``concurrency`` run.
    mutating func start(isLive: (JobKey) -> Bool) -> [(JobKey, JobControl)] {
        var starts: [(JobKey, JobControl)] = []
        while !stopped, running.count < concurrency, !ready.isEmpty {
            let k = ready.removeFirst()
            guard running[k] == nil, isLive(k) else { continue }
            let c = JobControl()
            running[k] = c
            starts.append((k, c))
        }
        return starts
    }

    /// Fleet mode: this instance claimed `key`'s lease; it runs with `control` unless it already runs
    /// here or the scheduler stopped (`false`: the caller releases the lease).
    mutating func claimed(_ key: JobKey, control: JobControl) -> Bool {
        guard !stopped, running[key] == nil, running.count < concurrency else { return false }
        ready.removeAll { $0 == key }
        running[key] = control
        return true
    }

    /// A job's run ended; with a `backoff` it waits (returns `true`: the caller arms the timer).
    mutating func finished(_ key: JobKey, backoff: Bool) -> Bool {
        running[key] = nil
        guard backoff, !stopped else { return false }
        waiting.insert(key)
        return true
    }

    /// Ends a job's backoff; `false` if it was not waiting (retried or deleted meanwhile).
    mutating func endBackoff(_ key: JobKey) -> Bool { waiting.remove(key) != nil }

    /// Forgets the image's queued and waiting jobs and signals its running ones.
    mutating func remove(image: ImageName, signal: JobSignal) {
        ready.removeAll { $0.image == image }
        waiting = waiting.filter { $0.image != image }
        for (k, c) in running where k.image == image { c.send(signal) }
    }

    /// Stops scheduling and tells every running job to stop.
    mutating func stop() {
        stopped = true
        ready = []
        for c in running.values { c.send(.shutdown) }
    }
}

/// A fixed pool of threads for job runs (as NIO's `NIOThreadPool`): at most `maxThreads`, started
/// on demand and kept for the engine's lifetime, instead of a new thread per job. Blocking file
/// I/O, fsync and WAN pacing run here, never on Swift's cooperative pool.
///
/// `@unchecked Sendable`: every mutable field is guarded by `condition`.
final class JobThreads: @unchecked Sendable {
    private let condition = NSCondition()
    private let maxThreads: Int
    private let name: String
    private var queue: [@Sendable () -> Void] = []
    private var threads = 0
    private var idle = 0
    private var stopping = false

    init(maxThreads: Int, name: String) {
        self.maxThreads = max(1, maxThreads)
        self.name = name
    }

    /// Runs `work` on a pool thread (a new one when every thread is busy and the pool is not full).
    func submit(_ work: @escaping @Sendable () -> Void) {
        condition.lock()
        defer { condition.unlock() }
        queue.append(work)
        if queue.count > idle, threads < maxThreads {
            threads += 1
            let thread = Thread { [self] in loop() }
            thread.name = name
            thread.start()
        } else {
            condition.signal()
        }
    }

    /// Lets the threads end once the work submitted is done (does not wait).
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        condition.lock()
        while true {
            while queue.isEmpty && !stopping {
                idle += 1
                condition.wait()
                idle -= 1
            }
            if queue.isEmpty {
                threads -= 1
                condition.unlock()
                return
            }
            let work = queue.removeFirst()
            condition.unlock()
            work()
            condition.lock()
        }
    }
}
