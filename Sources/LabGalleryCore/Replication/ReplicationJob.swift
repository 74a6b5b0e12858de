import Dispatch
import Synchronization

/// One replication job: an image's copy to one target region.
struct JobKey: Hashable, Sendable {
    var image: ImageName
    var region: String
}

/// What a running job is told between chunks.
enum JobSignal: Int, Sendable {
    /// Go on.
    case run = 0
    /// The server is stopping: stop at the last durable offset (the job resumes on the next start).
    case shutdown = 1
    /// The image was deleted: stop and discard the partial copy.
    case deleted = 2
    /// Fleet mode: the job's lease was taken over, or this instance can no longer prove it holds it
    /// (no renewal for lease − margin): stop at once, touching neither the replica files nor the row.
    case leaseLost = 3
}

/// The stop request of a running job: set by the engine, read by the job between chunks.
///
/// In fleet mode it also carries the job's lease and the monotonic instant until which this
/// instance can prove it holds it (the last renewal's send time + lease − margin): past that
/// instant ``value`` is ``JobSignal/leaseLost`` even if nobody said so.
final class JobControl: Sendable {
    private let signal = Atomic<Int>(JobSignal.run.rawValue)
    /// The claim this run holds (fleet mode), `nil` for one instance.
    let lease: ReplicationLease?
    /// `DispatchTime` uptime nanoseconds (monotonic) the lease is proven until; 0: no lease.
    private let provenUntil = Atomic<UInt64>(0)

    /// A control for a run; with a lease, proven until `provenUntil` (monotonic uptime nanoseconds).
    init(lease: ReplicationLease? = nil, provenUntil: UInt64 = 0) {
        self.lease = lease
        self.provenUntil.store(provenUntil, ordering: .relaxed)
    }

    /// The current signal.
    var value: JobSignal {
        let v = JobSignal(rawValue: signal.load(ordering: .acquiring)) ?? .run
        guard v == .run, lease != nil else { return v }
        return DispatchTime.now().uptimeNanoseconds < provenUntil.load(ordering: .acquiring) ? .run : .leaseLost
    }

    /// A renewal sent at a monotonic instant succeeded: the lease is proven until `instant` (never moves back).
    func prove(until instant: UInt64) {
        var current = provenUntil.load(ordering: .relaxed)
        while current < instant {
            let (exchanged, original) = provenUntil.compareExchange(
                expected: current, desired: instant, ordering: .acquiringAndReleasing)
            if exchanged { return }
            current = original
        }
    }
    /// Whether the job should go on.
    var shouldRun: Bool { value == .run }
    /// Signals the job (the first stop request wins over `run` only).
    func send(_ s: JobSignal) { signal.store(s.rawValue, ordering: .releasing) }
}

/// Why an attempt of a job ended without a replica. One error type for every step of a job, so
/// the steps use typed throws and the state machine decides what each case means.
enum JobError: Error, Equatable, Sendable {
    /// The job's row is gone: its image was deleted meanwhile (stop, discard the partial copy).
    case rowGone
    /// Copying failed; `discard`: the partial copy cannot be trusted (start the next attempt from zero).
    case copyFailed(reason: String, discard: Bool)
    /// The database refused a write the job needed (disk full, database locked): a failed attempt
    /// with that reason, never a reason to delete what was copied.
    case recordFailed(reason: String)
    /// Fleet mode: a fenced write found the job claimed by another instance (or the lease
    /// unprovable): stop at once; the files are the new holder's.
    case leaseLost

    /// The reason shown to watchers and recorded in the row.
    var reason: String {
        switch self {
        case .rowGone: "the image was deleted"
        case .copyFailed(let r, _): r
        case .recordFailed(let r): "recording the copy in the database failed (\(r))"
        case .leaseLost: "this instance lost the job's lease (another instance took it over)"
        }
    }

    /// Whether the partial copy must be thrown away.
    var discardsPartial: Bool {
        if case .copyFailed(_, true) = self { return true }
        return false
    }
}

/// How one run of a job ended.
enum JobOutcome: Equatable, Sendable {
    /// The replica is stored and the row COMPLETED (copied, or shared with bytes the region had).
    case completed
    /// Asked to stop (shutdown): the row keeps its last durable offset.
    case stopped
    /// The row is gone (image deleted): the partial copy is discarded.
    case deleted
    /// The attempt failed: the row is PENDING with the reason (retry after the backoff) or FAILED.
    case failed(JobError)
}

/// The transitions of a job's row: PENDING → REPLICATING → COMPLETED, or back to PENDING with the
/// reason of a failed attempt (and a backoff), or FAILED after the last attempt. Pure: it changes
/// the row and says which files to remove; the engine does the I/O.
struct JobStateMachine: Sendable {
    /// Attempts before a job stays FAILED.
    var maxAttempts: Int
    /// Delay between attempts.
    var backoff: Backoff

    /// What to do after a failed attempt.
    enum Next: Equatable, Sendable {
        /// Run again after this delay (the row is PENDING).
        case retry(after: Duration)
        /// The job is over (FAILED) until RetryReplication.
        case gaveUp
    }

    /// Starts an attempt: a PENDING row counts a new attempt; a REPLICATING one (interrupted by a
    /// crash or shutdown) continues the same attempt. Returns the attempt's number.
    func begin(_ row: inout ReplicationRow, sizeBytes: Int64) -> Int {
        if row.record.state == .pending { row.record.attempts += 1 }
        row.record.state = .replicating
        row.record.bytesTotal = sizeBytes
        return row.record.attempts
    }

    /// Whether a row still needs copying (PENDING, or REPLICATING after a restart).
    static func isUnfinished(_ state: ReplicationState) -> Bool { state == .pending || state == .replicating }

    /// The row is COMPLETED with the replica at `blob`.
    func complete(_ row: inout ReplicationRow, blob: String) {
        row.partialPath = nil
        row.blobPath = blob
        row.record.state = .completed
        row.record.bytesCopied = row.record.bytesTotal
        row.record.error = nil
    }

    /// A failed attempt: PENDING with the reason and a backoff, or FAILED after the last attempt
    /// (the partial copy goes then, or at once when it cannot be trusted). Returns what comes next
    /// and the partial files to remove. A verified replica (``ReplicationRow/blobPath``) is kept.
    func fail(_ row: inout ReplicationRow, _ error: JobError, attempt: Int) -> (next: Next, remove: [String]) {
        var remove: [String] = []
        if error.discardsPartial, let p = row.partialPath {
            remove.append(p)
            row.partialPath = nil
            row.record.bytesCopied = 0
        }
        if attempt >= maxAttempts {
            if let p = row.partialPath { remove.append(p) }
            row.partialPath = nil
            row.record.bytesCopied = 0
            row.record.state = .failed
            row.record.error =
                "\(error.reason); gave up after \(attempt) attempt(s) — fix the cause, then call RetryReplication for \(row.image) (region \(row.record.region))"
            return (.gaveUp, remove)
        }
        row.record.state = .pending
        let delay = backoff.delay(afterAttempt: attempt)
        row.record.error = "attempt \(attempt) of \(maxAttempts) failed: \(error.reason); retrying in \(delay)"
        return (.retry(after: delay), remove)
    }

    /// RetryReplication: a FAILED row starts over (PENDING, no attempts, no progress); returns the
    /// partial file to remove.
    static func restart(_ row: inout ReplicationRow) -> String? {
        let partial = row.partialPath
        row.record = RegionReplication(
            region: row.record.region, state: .pending, bytesCopied: 0,
            bytesTotal: row.record.bytesTotal, error: nil, attempts: 0)
        row.partialPath = nil
        return partial
    }
}
