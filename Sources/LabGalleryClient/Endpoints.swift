import Foundation
import H2RPC
import Synchronization

/// One server instance the client can call: `host:port`, `[v6-address]:port`, `host` (port
/// 50051) or `unix:/path`.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    /// The host name or address, or `unix:/path` for a Unix domain socket.
    public var host: String
    /// The port (unused for `unix:`).
    public var port: Int

    /// Creates an endpoint.
    public init(host: String, port: Int = 50051) {
        self.host = host
        self.port = port
    }

    /// Parses one endpoint (see ``LabGalleryClient/parseEndpoint(_:)``); throws `invalidArgument`
    /// naming it when malformed.
    public init(parsing text: String) throws(LabGalleryClientError) {
        let (host, port) = try LabGalleryClient.parseEndpoint(text)
        self.init(host: host, port: port)
    }

    /// Parses a comma-separated list (`a:1,b:2`; spaces around entries are ignored; one entry
    /// without a comma is a list of one; a comma always separates, so a `unix:` path cannot hold one). Throws `invalidArgument` naming the entry (its position
    /// and text) that is empty or malformed.
    public static func list(_ text: String) throws(LabGalleryClientError) -> [Endpoint] {
        let entries = text.split(separator: ",", omittingEmptySubsequences: false)
        var endpoints: [Endpoint] = []
        for (n, raw) in entries.enumerated() {
            let entry = raw.trimmingCharacters(in: .whitespaces)
            if entry.isEmpty {
                throw LabGalleryClientError(
                    .invalidArgument,
                    "endpoint list \"\(text)\": entry \(n + 1) is empty (write host:port,host:port)")
            }
            do {
                endpoints.append(try Endpoint(parsing: entry))
            } catch {
                guard entries.count > 1 else { throw error }
                throw LabGalleryClientError(
                    .invalidArgument, "endpoint list \"\(text)\": entry \(n + 1): \(error.message)")
            }
        }
        return endpoints
    }

    /// `host:port`, `[v6-address]:port` or `unix:/path`.
    public var description: String {
        if host.hasPrefix("unix:") { return host }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// The client's endpoints, each with its own connection, and which of them are known to be down.
///
/// Calls take endpoints in ``order()``: round-robin over the ones not known down (spreading the
/// load), then the ones down, soonest back first (tried when nothing else answers). A failed
/// endpoint is down for a back-off that doubles on each failure after it came back, up to a cap;
/// an answer resets it.
final class EndpointPool: Sendable {
    /// One endpoint and its connection.
    struct Member: Sendable {
        let endpoint: Endpoint
        let rpc: RPCClient
    }

    private struct Health {
        var downUntil: ContinuousClock.Instant? = nil
        var backoff: Duration? = nil
    }

    let members: [Member]
    private let initialBackoff: Duration
    private let maxBackoff: Duration
    private let state: Mutex<(cursor: Int, health: [Health])>

    init(_ members: [Member], initialBackoff: Duration, maxBackoff: Duration) {
        self.members = members
        self.initialBackoff = initialBackoff
        self.maxBackoff = max(initialBackoff, maxBackoff)
        state = Mutex((0, Array(repeating: Health(), count: members.count)))
    }

    /// The order in which one call tries the endpoints (each once): those not known down,
    /// starting at the next in turn; then those down, the soonest back first.
    func order() -> [Int] {
        let now = ContinuousClock.now
        return state.withLock { s in
            let start = s.cursor
            s.cursor = (s.cursor + 1) % members.count
            let rotated = (0..<members.count).map { (start + $0) % members.count }
            let up = rotated.filter { (s.health[$0].downUntil ?? now) <= now }
            let down = rotated.filter { (s.health[$0].downUntil ?? now) > now }
                .sorted { s.health[$0].downUntil! < s.health[$1].downUntil! }
            return up + down
        }
    }

    /// Endpoint `i` failed (could not be reached, or answered UNAVAILABLE): skip it for a while.
    /// Failures while it is already down do not lengthen the back-off.
    func failed(_ i: Int) {
        let now = ContinuousClock.now
        state.withLock { s in
            if let until = s.health[i].downUntil, until > now { return }
            let backoff = s.health[i].backoff.map { min($0 * 2, maxBackoff) } ?? initialBackoff
            s.health[i] = Health(downUntil: now + backoff, backoff: backoff)
        }
    }

    /// Endpoint `i` answered: it is up again.
    func answered(_ i: Int) {
        state.withLock { $0.health[i] = Health() }
    }

    /// Whether endpoint `i` is known down now (tests, diagnostics).
    func isDown(_ i: Int) -> Bool {
        let now = ContinuousClock.now
        return state.withLock { ($0.health[i].downUntil ?? now) > now }
    }

    /// Closes every connection.
    func close() { for m in members { m.rpc.close() } }
}
