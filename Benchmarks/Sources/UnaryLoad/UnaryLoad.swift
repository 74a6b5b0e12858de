/// A closed-loop unary load, shared by the client benchmarks so that every client is driven
/// and measured the same way: `connections` × `concurrency` workers, each making one call
/// after another until the deadline.
public enum UnaryLoad {
    /// Calls completed in the measured window, the window's length, and their latencies.
    public struct Result: Sendable {
        public var calls: Int
        public var seconds: Double
        /// Per-call latencies in nanoseconds, sorted.
        public var latencies: [Int64]

        /// The latency at quantile `q` (0...1), in milliseconds.
        public func percentile(_ q: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            return Double(latencies[min(latencies.count - 1, Int(q * Double(latencies.count)))]) / 1e6
        }

        /// One line for run.sh: `unary calls=… seconds=… calls_per_sec=… p50_ms=… p99_ms=…`.
        public var line: String {
            let rate = Int(Double(calls) / seconds)
            let p50 = (percentile(0.5) * 1000).rounded() / 1000
            let p99 = (percentile(0.99) * 1000).rounded() / 1000
            return "unary calls=\(calls) seconds=\(seconds) calls_per_sec=\(rate) p50_ms=\(p50) p99_ms=\(p99)"
        }
    }

    /// Runs `call(connection)` from `concurrency` workers per connection for `warmup` then
    /// `duration` seconds. Only calls that start after the warm-up and end before the deadline
    /// count, so a slow start (connection setup, JIT-like first-call costs) does not skew it.
    public static func run(
        connections: Int, concurrency: Int, warmup: Double, duration: Double,
        call: @escaping @Sendable (_ connection: Int) async throws -> Void
    ) async throws -> Result {
        let clock = ContinuousClock()
        let measureFrom = clock.now + .milliseconds(Int(warmup * 1000))
        let deadline = measureFrom + .milliseconds(Int(duration * 1000))
        let latencies = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for connection in 0..<connections {
                for _ in 0..<concurrency {
                    group.addTask {
                        var mine: [Int64] = []
                        mine.reserveCapacity(1 << 16)
                        while true {
                            let start = clock.now
                            if start >= deadline { break }
                            try await call(connection)
                            let end = clock.now
                            if start >= measureFrom && end <= deadline {
                                let d = (end - start).components
                                mine.append(d.seconds * 1_000_000_000 + d.attoseconds / 1_000_000_000)
                            }
                        }
                        return mine
                    }
                }
            }
            var all: [Int64] = []
            for try await part in group { all += part }
            return all
        }
        return Result(calls: latencies.count, seconds: duration, latencies: latencies.sorted())
    }
}
