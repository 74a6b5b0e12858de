import H2RPC
import LabGalleryCore
import Logging

/// Shapes the status a failed call answers with, and logs what the client must not see.
/// Runs inside ``AuthenticationInterceptor`` so it knows the caller. (Every call's outcome is
/// logged by ``AccessLog``, once, when it ends.)
///
/// The status message the client gets is escaped and capped by `SafeText` (it may echo the
/// client's input). An INTERNAL or UNKNOWN error's detail (file paths, SQL) is logged at error
/// level with an incident id, and the client gets only a generic message carrying that id
/// (which the access log line shows too).
public struct CallLogInterceptor: ServerInterceptor {
    private let logger: Logger

    /// Creates the interceptor writing to `logger`.
    public init(logger: Logger) { self.logger = logger }

    /// Runs the call; a failure's status is made safe (and an internal one logged).
    public func intercept(context: ServerContext, next: () async throws -> Void) async throws {
        do {
            try await next()
        } catch {
            let rpc = RPCError.from(error)
            switch rpc.code {
            case .internal, .unknown:
                let incident = Self.incidentID()
                var metadata: Logger.Metadata = [
                    "method": "\(SafeText.escaped(context.descriptor.path))",
                    "peer": "\(context.peer)",
                    "status": "\(rpc.code.description)",
                    "error": "\(SafeText.sanitized(rpc.message))",
                    "incident": "\(incident)",
                ]
                if let caller = Caller.principal { metadata["principal"] = "\(caller.name)" }
                logger.error("call failed", metadata: metadata)
                throw RPCError(rpc.code, Self.internalMessage(incident: incident))
            default:
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
}
