/// A gRPC status: a code and a message a person can act on.
public struct Status: Sendable, Hashable, CustomStringConvertible {
    /// The gRPC status codes (0–16), as defined by grpc's `statuscodes.md`.
    public enum Code: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        case ok = 0
        case cancelled = 1
        case unknown = 2
        case invalidArgument = 3
        case deadlineExceeded = 4
        case notFound = 5
        case alreadyExists = 6
        case permissionDenied = 7
        case resourceExhausted = 8
        case failedPrecondition = 9
        case aborted = 10
        case outOfRange = 11
        case unimplemented = 12
        case `internal` = 13
        case unavailable = 14
        case dataLoss = 15
        case unauthenticated = 16

        /// The canonical upper-case name, e.g. `DEADLINE_EXCEEDED`.
        public var description: String {
            switch self {
            case .ok: return "OK"
            case .cancelled: return "CANCELLED"
            case .unknown: return "UNKNOWN"
            case .invalidArgument: return "INVALID_ARGUMENT"
            case .deadlineExceeded: return "DEADLINE_EXCEEDED"
            case .notFound: return "NOT_FOUND"
            case .alreadyExists: return "ALREADY_EXISTS"
            case .permissionDenied: return "PERMISSION_DENIED"
            case .resourceExhausted: return "RESOURCE_EXHAUSTED"
            case .failedPrecondition: return "FAILED_PRECONDITION"
            case .aborted: return "ABORTED"
            case .outOfRange: return "OUT_OF_RANGE"
            case .unimplemented: return "UNIMPLEMENTED"
            case .internal: return "INTERNAL"
            case .unavailable: return "UNAVAILABLE"
            case .dataLoss: return "DATA_LOSS"
            case .unauthenticated: return "UNAUTHENTICATED"
            }
        }

        /// Maps a wire value to a code; values outside 0–16 are `UNKNOWN`, as the spec requires.
        public init(wireValue: Int) {
            self = Code(rawValue: wireValue) ?? .unknown
        }
    }

    /// The status code.
    public var code: Code
    /// The status message (sent percent-encoded as `grpc-message`).
    public var message: String

    /// Creates a status.
    public init(code: Code, message: String = "") {
        self.code = code
        self.message = message
    }

    /// The OK status.
    public static let ok = Status(code: .ok)

    /// `CODE: message`, or `CODE` alone.
    public var description: String {
        message.isEmpty ? code.description : "\(code): \(message)"
    }
}

/// An error carrying a gRPC status code, message and (trailing) metadata.
///
/// Handlers throw it to end a call with a precise status; clients receive it when a call
/// ends with a status other than OK. Any other error thrown by a handler becomes `UNKNOWN`.
public struct RPCError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The status code (never `.ok`).
    public var code: Status.Code
    /// A message a person can act on.
    public var message: String
    /// Metadata sent with the status (server) or received with it (client).
    public var metadata: Metadata
    /// Client side: true when the transport knows no server processed the call — the connection
    /// was never established, or the stream was refused before the server saw it (HTTP/2
    /// REFUSED_STREAM, or a GOAWAY that excluded it) — so trying it again elsewhere, even a
    /// write, cannot apply it twice. False otherwise: the request may have reached a server.
    public var unprocessed = false

    /// Creates an error.
    public init(_ code: Status.Code, _ message: String, metadata: Metadata = [:]) {
        self.code = code
        self.message = message
        self.metadata = metadata
    }

    /// The error as a status.
    public var status: Status { Status(code: code, message: message) }

    /// `CODE: message`.
    public var description: String { "\(code): \(message)" }
}

extension RPCError {
    /// Maps any error thrown inside a call (or by a transport) to the status it ends with.
    public static func from(_ error: any Error) -> RPCError {
        if let rpc = error as? RPCError { return rpc }
        if let convertible = error as? any RPCErrorConvertible { return convertible.rpcError }
        if error is CancellationError { return RPCError(.cancelled, "the call was cancelled") }
        return RPCError(.unknown, "handler failed: \(error)")
    }
}

/// An error type that knows which gRPC status it stands for.
public protocol RPCErrorConvertible: Error {
    /// The status, message and metadata to send for this error.
    var rpcError: RPCError { get }
}
