import H2RPC
import LabGalleryCore

/// The authenticated principal of the call being handled.
///
/// ``AuthenticationInterceptor`` binds it around the handler; services read it with
/// ``current()``. A task-local (not a parameter) because generated handler signatures are fixed.
public enum Caller {
    /// The principal bound for the current task, or `nil` outside an authenticated call.
    @TaskLocal public static var principal: Principal?

    /// The bound principal; UNAUTHENTICATED if none (a service registered without the interceptor).
    public static func current() throws -> Principal {
        guard let principal else {
            throw RPCError(.unauthenticated, "no authenticated caller; send `authorization: Bearer <token>` metadata")
        }
        return principal
    }
}
