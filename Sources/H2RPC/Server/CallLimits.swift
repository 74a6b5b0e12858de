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

/// The calls of one dispatcher whose handler has not started: what they hold and since when.
///
/// A call enters when it is accepted without starting at once, leaves when its handler starts
/// or it ends. The hot path (a unary call whose request arrives whole) costs three uncontended
/// lock round trips; a sweep every fraction of the request timeout expires the late ones.
final class PendingCalls: Sendable {
    private struct Entry {
        let call: ServerCall
        let since: ContinuousClock.Instant
        var bytes = 0
    }
    private struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        var held = 0
    }
    private let state = Mutex(State())
    let maxHeldBytes: Int

    init(maxHeldBytes: Int) { self.maxHeldBytes = maxHeldBytes }

    func add(_ call: ServerCall) {
        let entry = Entry(call: call, since: .now)
        state.withLock { $0.entries[ObjectIdentifier(call)] = entry }
    }

    func remove(_ call: ServerCall) {
        state.withLock { s in
            if let e = s.entries.removeValue(forKey: ObjectIdentifier(call)) { s.held -= e.bytes }
        }
    }

    /// `call` holds `bytes` more; returns the calls to end to stay within the budget (oldest
    /// first; possibly `call` itself).
    func hold(_ call: ServerCall, bytes: Int) -> [ServerCall] {
        state.withLock { s -> [ServerCall] in
            guard var e = s.entries[ObjectIdentifier(call)] else { return [] }
            e.bytes += bytes
            s.entries[ObjectIdentifier(call)] = e
            s.held += bytes
            guard s.held > maxHeldBytes else { return [] }
            // Rare (a budget exceeded): sort the holders by age.
            var evicted: [ServerCall] = []
            let holders = s.entries.values.filter { $0.bytes > 0 }.sorted { $0.since < $1.since }
            for h in holders {
                guard s.held > maxHeldBytes else { break }
                s.entries.removeValue(forKey: ObjectIdentifier(h.call))
                s.held -= h.bytes
                evicted.append(h.call)
            }
            return evicted
        }
    }

    /// The calls waiting since before `cutoff` (they leave the registry).
    func expired(before cutoff: ContinuousClock.Instant) -> [ServerCall] {
        state.withLock { s -> [ServerCall] in
            guard !s.entries.isEmpty else { return [] }
            var late: [ServerCall] = []
            for (key, e) in s.entries where e.since < cutoff {
                s.entries.removeValue(forKey: key)
                s.held -= e.bytes
                late.append(e.call)
            }
            return late
        }
    }

    /// Calls waiting and the bytes they hold (tests, diagnostics).
    var counts: (calls: Int, bytes: Int) { state.withLock { ($0.entries.count, $0.held) } }
}
