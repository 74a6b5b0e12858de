import Foundation

/// A closed-loop load of a fixed number of calls: `concurrency` async tasks, each making its
/// share of the calls one after another through the same session (pool).
enum Load {
    /// The measured calls, their wall time, latencies and serialization retries.
    struct Result: Sendable {
        var calls: Int
        var seconds: Double
        /// Per-call latencies in nanoseconds, sorted.
        var latencies: [Int64]
        var retries: Int

        /// The latency at quantile `q` (0...1), in milliseconds.
        func percentile(_ q: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            return Double(latencies[min(latencies.count - 1, Int(q * Double(latencies.count)))]) / 1e6
        }

        /// One line for pg_drivers.sh.
        func line(driver: DriverName, workload: Workload, connections: Int, concurrency: Int) -> String {
            func ms(_ q: Double) -> String { String(format: "%.3f", percentile(q)) }
            return "pg driver=\(driver.rawValue) workload=\(workload.rawValue) connections=\(connections) "
                + "concurrency=\(concurrency) calls=\(calls) seconds=\(String(format: "%.2f", seconds)) "
                + "per_sec=\(Int(Double(calls) / seconds)) p50_ms=\(ms(0.5)) p99_ms=\(ms(0.99)) "
                + "p999_ms=\(ms(0.999)) retries=\(retries)"
        }
    }

    /// Runs `warmup` unmeasured calls, then `transactions` measured ones. Caller `w` attaches
    /// accounts of its own (ids ≡ w mod concurrency), so callers do not wait on each other's
    /// row locks: the figures are the driver's and the server's, not lock queueing.
    static func run(
        workload: Workload, session: any Session, concurrency: Int, warmup: Int, transactions: Int
    ) async throws -> Result {
        _ = try await phase(workload, session, concurrency, warmup)
        let clock = ContinuousClock()
        let start = clock.now
        let (latencies, retries) = try await phase(workload, session, concurrency, transactions)
        let elapsed = (clock.now - start).components
        return Result(
            calls: latencies.count,
            seconds: Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18,
            latencies: latencies.sorted(), retries: retries)
    }

    private static func phase(
        _ workload: Workload, _ session: any Session, _ concurrency: Int, _ calls: Int
    ) async throws -> ([Int64], Int) {
        try await withThrowingTaskGroup(of: ([Int64], Int).self) { group in
            for caller in 0..<concurrency {
                let share = calls / concurrency + (caller < calls % concurrency ? 1 : 0)
                group.addTask {
                    let clock = ContinuousClock()
                    var latencies: [Int64] = []
                    latencies.reserveCapacity(share)
                    var retries = 0
                    let perCaller = Schema.accounts / Int64(concurrency)
                    for k in 0..<Int64(share) {
                        let start = clock.now
                        switch workload {
                        case .attach:
                            retries += try await session.attach(
                                account: (k % perCaller) * Int64(concurrency) + Int64(caller) + 1,
                                gallery: Int64.random(in: 1...Schema.galleries))
                        case .select1:
                            try await session.selectOne()
                        }
                        let d = (clock.now - start).components
                        latencies.append(d.seconds * 1_000_000_000 + d.attoseconds / 1_000_000_000)
                    }
                    return (latencies, retries)
                }
            }
            var all: [Int64] = []
            var retries = 0
            for try await (part, r) in group {
                all += part
                retries += r
            }
            return (all, retries)
        }
    }
}
