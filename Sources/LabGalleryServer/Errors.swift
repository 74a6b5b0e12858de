import H2RPC
import LabGalleryCore

// The core's error codes are gRPC's numbers, so the mapping is by raw value; its messages already
// name the proto field (or the rule and the fix) and go out verbatim as `grpc-message`.
// The conformance lives here because this module is the only one that knows both layers.
extension LabGalleryError: RPCErrorConvertible {
    /// The gRPC status this domain error ends a call with.
    public var rpcError: RPCError {
        RPCError(Status.Code(wireValue: code.rawValue), message)
    }
}
