import H2RPC
import LabGalleryCore
import Logging

/// Logs one line per call: method, caller, status, duration.
/// Runs inside ``AuthenticationInterceptor`` so it knows the caller (that interceptor logs the
/// calls it rejects). Successes at debug level, failures at info
/// (the client got an actionable status), INTERNAL/UNKNOWN at error.
///
/// Every value that came from the peer (the method path, the error message echoing its input)
/// is escaped and capped by `SafeText` before it is logged, and so is the status message the
/// client gets. An INTERNAL error's detail (file
/// paths, SQL) is logged with an incident id, and the client gets only a generic message
/// carrying that id.
public struct CallLogInterceptor: ServerInterceptor {
    private let logger: Logger

    /// Creates the interceptor writing to `logger`.
    public init(logger: Logger) { self.logger = logger }

    /// Runs the call and logs its outcome.
    public func intercept(context: ServerContext, next: () async throws -> Void) async throws {
        let start = ContinuousClock.now
        var metadata: Logger.Metadata = [
            "method": "\(context.descriptor.path)",
            "peer": "\(context.peer)",
        ]
        if let caller = Caller.principal { metadata["principal"] = "\(caller.name)" }
        do {
            try await next()
            metadata["status"] = "OK"
            metadata["ms"] = "\(Self.milliseconds(since: start))"
            logger.debug("call", metadata: metadata)
        } catch {
            let rpc = RPCError.from(error)
            metadata["method"] = "\(SafeText.escaped(context.descriptor.path))"
            metadata["status"] = "\(rpc.code.description)"
            metadata["ms"] = "\(Self.milliseconds(since: start))"
            metadata["error"] = "\(SafeText.sanitized(rpc.message))"
            switch rpc.code {
            case .internal, .unknown:
                let incident = Self.incidentID()
                metadata["incident"] = "\(incident)"
                logger.error("call failed", metadata: metadata)
                throw RPCError(rpc.code, Self.internalMessage(incident: incident))
            default:
                logger.info("call failed", metadata: metadata)
                // Whatever the service put in the message (health echoes the service name it was
                // asked for), the client gets it escaped and capped too.
                var safe = rpc
                safe.message = SafeText.sanitized(rpc.message)
                throw safe
            }
        }
    }

    /// What a client sees of an INTERNAL error: no path, no SQL, the incident id to quote to
    /// the operator (whose log line carries the same id and the detail).
    static func internalMessage(incident: String) -> String {
        "internal error (incident \(incident)); the server's log has the details under this incident id"
    }

    private static func incidentID() -> String {
        let n = UInt64.random(in: 0...UInt64.max)
        let hex = String(n, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    private static func milliseconds(since start: ContinuousClock.Instant) -> Int64 {
        let d = ContinuousClock.now - start
        return d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
}
