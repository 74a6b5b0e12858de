import H2RPC
import LabGalleryCore
import Logging

/// Logs one line per call: method, caller, status, duration.
/// Runs inside ``AuthenticationInterceptor`` so it knows the caller (that interceptor logs the
/// calls it rejects). Successes at debug level, failures at info
/// (the client got an actionable status), INTERNAL/UNKNOWN at error.
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
            let rpc = (error as? RPCError) ?? (error as? LabGalleryError)?.rpcError
            metadata["status"] = "\(rpc?.code.description ?? "UNKNOWN")"
            metadata["ms"] = "\(Self.milliseconds(since: start))"
            metadata["error"] = "\(rpc?.message ?? "\(error)")"
            switch rpc?.code {
            case .internal?, .unknown?, nil: logger.error("call failed", metadata: metadata)
            default: logger.info("call failed", metadata: metadata)
            }
            throw error
        }
    }

    private static func milliseconds(since start: ContinuousClock.Instant) -> Int64 {
        let d = ContinuousClock.now - start
        return d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
}
