import H2RPC
import LabGalleryCore
import Logging

/// The access log: one line at info level for every call, when it ends, whatever ended it.
///
/// `call` with metadata `method`, `peer` (`ipv4:…`/`ipv6:[…]:…`), `principal` (the token's
/// principal, `-` when the call was not authenticated), `role`, `status` (the code's name),
/// `duration_ms`, `bytes_in` and `bytes_out` (message payload bytes), and for a status other than
/// OK the status message the client got as `error` (an INTERNAL error's carries the incident id
/// that ``CallLogInterceptor`` logged the detail under). The method path and the principal came
/// from outside and the message may echo the client's input: their control characters are
/// escaped and they are capped (`SafeText.sanitized`, which leaves backslashes to the log
/// handler, so nothing is escaped twice), whatever log handler runs.
public struct AccessLog: ServerCallObserver {
    private let logger: Logger

    /// An access log writing to `logger`.
    public init(logger: Logger) { self.logger = logger }

    /// Logs the call's line.
    public func callEnded(_ summary: ServerCallSummary) {
        guard logger.logLevel <= .info else { return }
        logger.info("call", metadata: Self.metadata(summary))
    }

    /// The metadata of a call's line.
    static func metadata(_ summary: ServerCallSummary) -> Logger.Metadata {
        let principal = summary.context?.attachment(AuthenticationInterceptor.Authenticated.self)?.principal
        var metadata: Logger.Metadata = [
            "method": "\(SafeText.sanitized(summary.path, limit: SafeText.inputLimit))",
            "peer": "\(summary.peer)",
            "principal": "\(principal.map { SafeText.sanitized($0.name, limit: SafeText.inputLimit) } ?? "-")",
            "status": "\(summary.status.code.description)",
            "duration_ms": "\(milliseconds(summary.duration))",
            "bytes_in": "\(summary.requestBytes)",
            "bytes_out": "\(summary.responseBytes)",
        ]
        if let principal { metadata["role"] = "\(principal.role.rawValue)" }
        if summary.status.code != .ok { metadata["error"] = "\(SafeText.sanitized(summary.status.message))" }
        return metadata
    }

    /// A duration in milliseconds, to the microsecond (`0.042`).
    static func milliseconds(_ d: Duration) -> String {
        let micros = d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000
        let whole = micros / 1000
        let fraction = String(micros % 1000)
        return "\(whole)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}
