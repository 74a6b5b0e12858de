import GeneratedProtos
import H2RPC
import Synchronization

/// The standard gRPC health service (`grpc.health.v1.Health`): Check and Watch.
///
/// The empty service name stands for the whole server. Set statuses with `setStatus`;
/// watchers receive the current status at once, then every change (coalesced to the
/// latest for a slow watcher).
public final class HealthService: Grpc_Health_V1_Health.ServiceProtocol, Sendable {
    /// A service's serving status.
    public typealias ServingStatus = Grpc_Health_V1_HealthCheckResponse.ServingStatus

    private struct State {
        var statuses: [String: ServingStatus] = ["": .serving]
        var watchers: [Int: (service: String, continuation: AsyncStream<ServingStatus>.Continuation)] = [:]
        var nextID = 0
        /// `shutdown()` ran: a watch started later gets NOT_SERVING and ends.
        var shutDown = false
    }
    private let state = Mutex(State())

    /// Creates the service with the server itself (`""`) SERVING.
    public init() {}

    /// Sets the status of `service` (`""` = the whole server) and notifies watchers.
    public func setStatus(_ status: ServingStatus, for service: String = "") {
        let watchers = state.withLock { s -> [AsyncStream<ServingStatus>.Continuation] in
            s.statuses[service] = status
            return s.watchers.values.filter { $0.service == service }.map(\.continuation)
        }
        for w in watchers { w.yield(status) }
    }

    /// Marks every service NOT_SERVING (for shutdown) and ends every watch; a watch started
    /// afterwards (while calls drain) gets NOT_SERVING and ends at once, so no watch holds the
    /// server's shutdown up.
    public func shutdown() {
        let watchers = state.withLock { s -> [AsyncStream<ServingStatus>.Continuation] in
            s.shutDown = true
            for key in s.statuses.keys { s.statuses[key] = .notServing }
            return s.watchers.values.map(\.continuation)
        }
        for w in watchers {
            w.yield(.notServing)
            w.finish()
        }
    }

    /// The status of `request.service` ("" for the server); NOT_FOUND for an unknown service.
    public func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws
        -> Grpc_Health_V1_HealthCheckResponse
    {
        guard let status = state.withLock({ $0.statuses[request.service] }) else {
            throw RPCError(.notFound, "unknown service '\(request.service)'")
        }
        return Grpc_Health_V1_HealthCheckResponse(status: status)
    }

    /// The status of `request.service` now, then each change, until the call ends.
    public func watch(
        request: Grpc_Health_V1_HealthCheckRequest, response: ResponseWriter<Grpc_Health_V1_HealthCheckResponse>,
        context: ServerContext
    ) async throws {
        // Newest-only buffering: a slow watcher sees the latest status, never an unbounded backlog.
        let (stream, continuation) = AsyncStream<ServingStatus>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = state.withLock { s -> Int in
            s.nextID += 1
            continuation.yield(s.statuses[request.service] ?? .serviceUnknown)
            if s.shutDown {
                continuation.finish()
            } else {
                s.watchers[s.nextID] = (request.service, continuation)
            }
            return s.nextID
        }
        defer { _ = state.withLock { $0.watchers.removeValue(forKey: id) } }
        var last: ServingStatus? = nil
        for await status in stream {
            try Task.checkCancellation()
            if status == last { continue }
            last = status
            try await response.write(Grpc_Health_V1_HealthCheckResponse(status: status))
        }
    }
}
