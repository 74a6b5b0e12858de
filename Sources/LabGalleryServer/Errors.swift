import H2RPC
import LabGalleryCore

// The one place where domain error codes become gRPC status codes. The core's messages already
// name the proto field (or the rule and the fix) and go out verbatim as `grpc-message`.
// The conformance lives here because this module is the only one that knows both layers.
extension LabGalleryError.Code {
    /// The gRPC status code of this kind of domain error.
    public var grpcStatus: Status.Code {
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
}

extension LabGalleryError: RPCErrorConvertible {
    /// The gRPC status this domain error ends a call with.
    public var rpcError: RPCError {
        // The messages quote inputs through `SafeText.quoted`; this caps and escapes the whole
        // message as a backstop, so no status message carries a control character or megabytes.
        RPCError(code.grpcStatus, SafeText.sanitized(message))
    }
}
