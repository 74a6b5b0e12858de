import Synchronization

/// The server's limits on calls whose handler has not started, and on request message sizes.
///
/// A unary or server-streaming call's handler starts only when its request is complete (the
/// client half-closed). Until then the call holds its request message. These limits bound what
/// a client that never completes its request can pin:
///
/// - ``requestTimeout``: a call whose request is not complete this long after its headers ends
///   with DEADLINE_EXCEEDED (so does a call whose head checks take that long). The client's
///   `grpc-timeout` is armed from the headers too, and ends the call at its deadline whatever
///   phase it is in.
/// - ``maxHeldRequestBytes``: when the request messages held by calls waiting to start exceed
///   this, the oldest waiting calls end with RESOURCE_EXHAUSTED until they fit (a complete
///   request starts at once, so only requests held back by their client are old).
/// - ``maxRequestMessageSize`` and ``maxRequestMessageSizeByMethod``: the largest request
///   message per method; larger ends the call with RESOURCE_EXHAUSTED naming the limit, before
///   the message is decoded. The transport's own limit (e.g. `H2Configuration.maxReceiveMessageSize`)
///   applies first, to every method.
public struct ServerCallLimits: Sendable {
    /// How long after its headers a single-request call's request must be complete; nil: no limit.
    /// Default 30 s.
    public var requestTimeout: Duration?
    /// The most request bytes that calls waiting to start may hold, per transport thread
    /// (event loop). Default 64 MiB.
    public var maxHeldRequestBytes: Int
    /// The largest request message of any method, in bytes; nil: the transport's limit only.
    public var maxRequestMessageSize: Int?
    /// Per-method overrides of ``maxRequestMessageSize``, keyed by path
    /// (`/package.Service/Method`). A path no registered method has is ignored.
    public var maxRequestMessageSizeByMethod: [String: Int]

    /// The default request timeout: 30 s.
    public static let defaultRequestTimeout: Duration = .seconds(30)
    /// The default budget of held request bytes: 64 MiB.
    public static let defaultMaxHeldRequestBytes = 64 * 1024 * 1024

    /// Creates limits; the defaults are the server's.
    public init(
        requestTimeout: Duration? = ServerCallLimits.defaultRequestTimeout,
        maxHeldRequestBytes: Int = ServerCallLimits.defaultMaxHeldRequestBytes,
        maxRequestMessageSize: Int? = nil, maxRequestMessageSizeByMethod: [String: Int] = [:]
    ) {
        self.requestTimeout = requestTimeout
        self.maxHeldRequestBytes = maxHeldRequestBytes
        self.maxRequestMessageSize = maxRequestMessageSize
        self.maxRequestMessageSizeByMethod = maxRequestMessageSizeByMethod
    }

    /// The request message limit of the method at `path` (nil: the transport's).
    public func maxRequestMessageSize(for path: String) -> Int? {
        maxRequestMessageSizeByMethod[path] ?? maxRequestMessageSize
    }
}

/// The calls of one dispatcher whose handler has not started: since when, and what they hold.
///
/// A call enters when it is accepted without starting at once and leaves when its handler starts
/// or it ends: two uncontended lock round trips per call. The bytes it holds are counted with
/// atomics (the call's own count, and the total), so a unary call's request costs no lock; only
/// a total past the budget takes the lock, to end the oldest holders. A sweep every fraction of
/// the request timeout expires the late ones.
final class PendingCalls: Sendable {
    private struct Entry {
        let call: ServerCall
        let since: ContinuousClock.Instant
    }
    private let entries = Mutex<[ObjectIdentifier: Entry]>([:])
    private let held = Atomic<Int>(0)
    let maxHeldBytes: Int

    init(maxHeldBytes: Int) { self.maxHeldBytes = maxHeldBytes }

    func add(_ call: ServerCall) {
        let entry = Entry(call: call, since: .now)
        entries.withLock { $0[ObjectIdentifier(call)] = entry }
    }

    /// `call` leaves (its handler started, or it ended): its bytes are released.
    func remove(_ call: ServerCall) {
        let removed = entries.withLock { $0.removeValue(forKey: ObjectIdentifier(call)) != nil }
        if removed { release(call) }
    }

    /// Uncounts what `call` held, once: its count becomes negative for good.
    private func release(_ call: ServerCall) {
        let bytes = call.heldBytes.exchange(Int.min / 2, ordering: .acquiringAndReleasing)
        if bytes > 0 { held.subtract(bytes, ordering: .relaxed) }
    }

    /// `call` holds `bytes` more; returns the calls to end to stay within the budget (oldest
    /// first; possibly `call` itself).
    func hold(_ call: ServerCall, bytes: Int) -> [ServerCall] {
        // A call that left already (its count is negative) holds nothing for the budget.
        guard call.heldBytes.add(bytes, ordering: .acquiringAndReleasing).oldValue >= 0 else { return [] }
        guard held.add(bytes, ordering: .relaxed).newValue > maxHeldBytes else { return [] }
        // Rare (the budget exceeded): the holders by age, oldest out first.
        let evicted = entries.withLock { entries -> [ServerCall] in
            let holders = entries.values.filter { $0.call.heldBytes.load(ordering: .relaxed) > 0 }
                .sorted { $0.since < $1.since }
            var over = held.load(ordering: .relaxed) - maxHeldBytes
            var evicted: [ServerCall] = []
            for h in holders where over > 0 {
                entries.removeValue(forKey: ObjectIdentifier(h.call))
                over -= max(0, h.call.heldBytes.load(ordering: .relaxed))
                evicted.append(h.call)
            }
            return evicted
        }
        for call in evicted { release(call) }
        return evicted
    }

    /// The calls waiting since before `cutoff` (they leave the registry).
    func expired(before cutoff: ContinuousClock.Instant) -> [ServerCall] {
        let late = entries.withLock { entries -> [ServerCall] in
            guard !entries.isEmpty else { return [] }
            var late: [ServerCall] = []
            for (key, e) in entries where e.since < cutoff {
                entries.removeValue(forKey: key)
                late.append(e.call)
            }
            return late
        }
        for call in late { release(call) }
        return late
    }

    /// Calls waiting and the bytes they hold (tests, diagnostics).
    var counts: (calls: Int, bytes: Int) {
        (entries.withLock { $0.count }, held.load(ordering: .relaxed))
    }
}
