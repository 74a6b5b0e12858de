import Dispatch

/// A call's deadline: fires once, on a dispatch queue of its own, unless cancelled first.
///
/// Not a `Task.sleep`: its wake-up is a job on Swift's cooperative pool, and on a loaded machine
/// (two cores, the whole test suite, other processes) that pool's queue is seconds long, so a
/// 100 ms deadline fired seconds late, after a handler on an `H2LoopExecutor` that was not
/// starved had finished a 2 s nap. What fires here (recording the status, resetting the stream,
/// cancelling the handler's task) is synchronous and needs no pool thread.
final class DeadlineTimer: @unchecked Sendable {
    // @unchecked: `source` never changes after init, and a dispatch source is thread-safe.
    private static let queue = DispatchQueue(label: "h2rpc.deadlines", qos: .userInitiated)
    private let source: (any DispatchSourceTimer)?

    /// Runs `fire` at `deadline` (at once if it has passed). A deadline further away than
    /// `DeadlineTimer.never` is not armed: such a call waits as long as it needs.
    init(at deadline: ContinuousClock.Instant, _ fire: @escaping @Sendable () -> Void) {
        let delay = max(ContinuousClock.now.duration(to: deadline), .zero)
        guard delay < Self.never else {
            source = nil
            return
        }
        let (seconds, attoseconds) = delay.components
        let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
        let source = DispatchSource.makeTimerSource(queue: Self.queue)
        self.source = source
        source.setEventHandler { [source] in
            source.cancel()  // once
            fire()
        }
        source.schedule(deadline: .now() + .nanoseconds(nanoseconds), leeway: .milliseconds(1))
        source.resume()
    }

    /// Longer than this counts as no deadline (gRPC timeouts go up to 10^8 hours, which
    /// overflow dispatch's nanoseconds).
    static let never = Duration.seconds(100 * 365 * 24 * 3600)

    /// Stops it from firing, and lets go of what `fire` holds (no effect once it fired).
    func cancel() { source?.cancel() }
}
