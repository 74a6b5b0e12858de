/// The one error type of the domain core.
///
/// Each case has its ``Code`` (the server maps codes to gRPC statuses), and each carries a message
/// written for a human operator: it names the field, resource or rule involved and,
/// where there is one, what to do about it. The server layer forwards ``message``
/// verbatim as `grpc-message`.
public enum LabGalleryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A resource does not exist (`NOT_FOUND`). `resource` is its name, e.g. `galleries/g1`.
    case notFound(resource: String, message: String)
    /// A resource with this name already exists (`ALREADY_EXISTS`).
    case alreadyExists(resource: String, message: String)
    /// A request field is malformed or missing (`INVALID_ARGUMENT`). `field` is the request field name.
    case invalidArgument(field: String, message: String)
    /// A domain rule forbids the operation in the current state (`FAILED_PRECONDITION`).
    case failedPrecondition(message: String)
    /// The caller (or the `lab-services` identity) lacks the role needed (`PERMISSION_DENIED`).
    case permissionDenied(message: String)
    /// The caller could not be identified (`UNAUTHENTICATED`).
    case unauthenticated(message: String)
    /// An unexpected failure: I/O, database, corruption (`INTERNAL`).
    case `internal`(message: String)
    /// The caller cancelled the call, or its deadline passed, while the work ran (`CANCELLED`):
    /// nothing was committed.
    case cancelled(message: String)
    /// Stored bytes the database vouches for are missing or damaged (`DATA_LOSS`).
    case dataLoss(message: String)
    /// A dependency is temporarily unable to serve, e.g. the database is locked or the disk is
    /// full (`UNAVAILABLE`); retrying later may succeed.
    case unavailable(message: String)

    /// The kinds of domain error, one per case. The domain's own codes: `LabGalleryServer` maps
    /// them to gRPC status codes (in one place, its `Errors.swift`).
    public enum Code: Sendable, Equatable, CaseIterable {
        /// A resource does not exist.
        case notFound
        /// A resource with this name already exists.
        case alreadyExists
        /// A request field is malformed or missing.
        case invalidArgument
        /// A domain rule forbids the operation in the current state.
        case failedPrecondition
        /// The caller lacks the role needed.
        case permissionDenied
        /// The caller could not be identified.
        case unauthenticated
        /// An unexpected failure.
        case `internal`
        /// The call was cancelled while the work ran.
        case cancelled
        /// Stored bytes are missing or damaged.
        case dataLoss
        /// A dependency is temporarily unable to serve.
        case unavailable
    }

    /// The kind of error.
    public var code: Code {
        switch self {
        case .notFound: .notFound
        case .alreadyExists: .alreadyExists
        case .invalidArgument: .invalidArgument
        case .failedPrecondition: .failedPrecondition
        case .permissionDenied: .permissionDenied
        case .unauthenticated: .unauthenticated
        case .internal: .internal
        case .cancelled: .cancelled
        case .dataLoss: .dataLoss
        case .unavailable: .unavailable
        }
    }

    /// The human-actionable message (suitable for `grpc-message`).
    public var message: String {
        switch self {
        case .notFound(_, let m), .alreadyExists(_, let m), .invalidArgument(_, let m),
            .failedPrecondition(let m), .permissionDenied(let m), .unauthenticated(let m),
            .internal(let m), .cancelled(let m), .dataLoss(let m), .unavailable(let m):
            m
        }
    }

    /// `"<CODE>: <message>"`, for logs.
    public var description: String { "\(code): \(message)" }

    // MARK: - Convenience constructors (internal)

    static func notFound(_ resource: String) -> LabGalleryError {
        .notFound(resource: resource, message: "\(resource) not found")
    }

    static func alreadyExists(_ resource: String) -> LabGalleryError {
        .alreadyExists(resource: resource, message: "\(resource) already exists; choose another id or delete it first")
    }

    /// The work stopped because the call was cancelled or its deadline passed.
    static let cancelled = LabGalleryError.cancelled(
        message: "the call was cancelled (by the client or its deadline) before it completed; nothing was stored")

    /// A file the database vouches for is missing: DATA_LOSS saying how to find out more.
    static func missingBlob(_ path: String) -> LabGalleryError {
        .dataLoss(
            message:
                "stored bytes are missing: \(path) does not exist although the database references it; run `labgallery-server fsck --data-dir <dir>` for a full report and restore the file from a backup"
        )
    }

    /// The one answer to a bearer token that is not a live token, unknown and revoked alike
    /// (naming the revoked token's id would tell a caller which ids exist).
    static let unknownOrRevokedToken = LabGalleryError.unauthenticated(
        message: "unknown token; create one with `labgallery-server token create`")

    static func invalid(_ field: String, _ message: String) -> LabGalleryError {
        .invalidArgument(field: field, message: "\(field): \(message)")
    }

    /// Wraps any non-domain error (GRDB, POSIX, …) as `.internal`; an error that knows its
    /// domain meaning (``LabGalleryErrorConvertible``, e.g. PostgreSQL's) keeps it.
    static func wrap(_ error: any Error, _ context: String) -> LabGalleryError {
        if let e = error as? LabGalleryError { return e }
        if let e = error as? any LabGalleryErrorConvertible { return e.labGalleryError }
        return .internal(message: "\(context): \(error)")
    }
}

/// An error from outside the core (a storage engine's) that knows which domain error it is, e.g.
/// a lost database connection is UNAVAILABLE: ``LabGalleryError/wrap(_:_:)`` keeps that meaning
/// instead of INTERNAL.
public protocol LabGalleryErrorConvertible: Error {
    /// The domain error (its message must hold no SQL text and no secret).
    var labGalleryError: LabGalleryError { get }
}
