/// Capped exponential backoff as a value: the delay before attempt `n + 1` after `n` failed
/// attempts is `initial × 2^(n−1)`, never more than `maximum`.
///
/// A value (not a timer): the scheduler asks it for a delay and arms its own timer, so the rule
/// is tested without waiting. Iterating it yields the delays after attempt 1, 2, 3, …
public struct Backoff: Sendable, Equatable, Sequence {
    /// Delay after the first failed attempt.
    public var initial: Duration
    /// Cap of every delay.
    public var maximum: Duration

    /// Creates a backoff doubling from `initial` up to `maximum`.
    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay before attempt `attempt + 1` after `attempt` failed attempts (1-based; values
    /// below 1 count as 1).
    public func delay(afterAttempt attempt: Int) -> Duration {
        var d = initial
        for _ in 1..<Swift.max(1, attempt) {
            d = d * 2
            if d >= maximum { return maximum }
        }
        return Swift.min(d, maximum)
    }

    /// The delays after attempt 1, 2, 3, … (endless; capped at ``maximum``).
    public struct Iterator: IteratorProtocol {
        fileprivate let backoff: Backoff
        fileprivate var attempt = 0
        /// The next delay.
        public mutating func next() -> Duration? {
            attempt += 1
            return backoff.delay(afterAttempt: attempt)
        }
    }

    /// Iterates the delays from the first attempt on.
    public func makeIterator() -> Iterator { Iterator(backoff: self) }
}
