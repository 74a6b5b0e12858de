import H2RPC

/// The one error every `LabGalleryClient` method throws: the gRPC status code, the server's
/// message, and the trailing metadata that came with it.
///
/// Local failures use the same type with the code that fits (an unreadable upload file is
/// `invalidArgument`, a cancelled task `cancelled`, an unreachable server `unavailable`).
public struct LabGalleryClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The gRPC status codes (0–16), named as in grpc's `statuscodes.md`.
    public enum Code: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// `OK` (never carried by an error; listed for completeness).
        case ok = 0
        /// `CANCELLED`.
        case cancelled = 1
        /// `UNKNOWN`.
        case unknown = 2
        /// `INVALID_ARGUMENT`: the message names the field.
        case invalidArgument = 3
        /// `DEADLINE_EXCEEDED`.
        case deadlineExceeded = 4
        /// `NOT_FOUND`.
        case notFound = 5
        /// `ALREADY_EXISTS`.
        case alreadyExists = 6
        /// `PERMISSION_DENIED`.
        case permissionDenied = 7
        /// `RESOURCE_EXHAUSTED`.
        case resourceExhausted = 8
        /// `FAILED_PRECONDITION`: a domain rule; the message says what to do.
        case failedPrecondition = 9
        /// `ABORTED`.
        case aborted = 10
        /// `OUT_OF_RANGE`.
        case outOfRange = 11
        /// `UNIMPLEMENTED`.
        case unimplemented = 12
        /// `INTERNAL`.
        case `internal` = 13
        /// `UNAVAILABLE`: the server could not be reached (reads are retried on it).
        case unavailable = 14
        /// `DATA_LOSS`.
        case dataLoss = 15
        /// `UNAUTHENTICATED`: no or a bad bearer token.
        case unauthenticated = 16

        /// The canonical upper-case name, e.g. `FAILED_PRECONDITION`.
        public var description: String { Status.Code(wireValue: rawValue).description }
    }

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
            self.init(Code(rawValue: e.code.rawValue) ?? .unknown, e.message, metadata: metadata)
        case is CancellationError:
            self.init(.cancelled, "the task was cancelled")
        default:
            self.init(.unknown, "\(error)")
        }
    }
}
