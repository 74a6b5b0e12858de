import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Makes a running copy's progress durable from its own thread: fdatasync the partial file, then
/// record the offset that had been written before the sync, as soon as ``ReplicationConfiguration/persistEvery``
/// more bytes are there. The copy never waits for a sync, so persisting every few MiB costs no
/// throughput, and the row never claims bytes that are not on disk.
///
/// `@unchecked Sendable`: every mutable field is guarded by `condition`.
final class ProgressPersister: @unchecked Sendable {
    /// Whether the copy may go on.
    enum State: Equatable, Sendable {
        /// Persisting as it should.
        case running
        /// The row is gone (its image was deleted): stop and discard.
        case deleted
        /// Fleet mode: the fenced write found the lease taken over: stop, touch nothing.
        case leaseLost
        /// Syncing or recording failed, for this reason: the attempt fails.
        case failed(String)
    }

    private let condition = NSCondition()
    private let every: Int64
    private var written: Int64
    private var durable: Int64
    private var state = State.running
    private var stopping = false
    private var exited = false

    /// Starts the persister's thread. `offset` is the durable offset the row already records;
    /// `persist(offset)` records a new durable offset: `nil` when it did, else why the copy must stop.
    init(fd: Int32, offset: Int64, every: Int64, persist: @escaping @Sendable (Int64) -> State?) {
        self.every = every
        written = offset
        durable = offset
        let thread = Thread { [self] in run(fd: fd, persist: persist) }
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

    private func run(fd: Int32, persist: @Sendable (Int64) -> State?) {
        condition.lock()
        while true {
            while !stopping && written - durable < every { condition.wait() }
            if stopping { break }
            let target = written
            condition.unlock()
            // Data first, then the offset.
            let synced = fdatasync(fd) == 0
            let reason = synced ? "" : String(cString: strerror(errno))
            let stop = synced ? persist(target) : .failed("fsync of the partial replica failed: \(reason)")
            condition.lock()
            if let stop {
                state = stop
                break
            }
            durable = target
        }
        exited = true
        condition.broadcast()
        condition.unlock()
    }
}
