import H2RPC

/// The one error every `LabGalleryClient` method throws: the gRPC status code, the server's
/// message, and the trailing metadata that came with it.
///
/// Local failures use the same type with the code that fits (an unreadable upload file is
/// `invalidArgument`, a cancelled task `cancelled`, an unreachable server `unavailable`).
public struct LabGalleryClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The gRPC status codes (0–16): H2RPC's own, so a code never needs translating.
    public typealias Code = Status.Code

    /// The status code.
    public var code: Code
    /// The message (from the server, or describing the local failure).
    public var message: String
    /// Trailing metadata sent with the status, as key → values (binary values base64).
    public var metadata: [String: [String]]

    /// Creates an error.
    public init(_ code: Code, _ message: String, metadata: [String: [String]] = [:]) {
        self.code = code
        self.message = message
        self.metadata = metadata
    }

    /// `CODE: message`.
    public var description: String { "\(code): \(message)" }

    /// Maps anything a call can throw to the one error type.
    init(_ error: any Error) {
        switch error {
        case let e as LabGalleryClientError:
            self = e
        case let e as RPCError:
            var metadata: [String: [String]] = [:]
            for entry in e.metadata { metadata[entry.key, default: []].append(entry.value.description) }
            self.init(e.code, e.message, metadata: metadata)
        case is CancellationError:
            self.init(.cancelled, "the task was cancelled")
        default:
            self.init(.unknown, "\(error)")
        }
    }
}
