/// Runs around every server call: authentication, logging, metrics.
///
/// Throw an `RPCError` instead of calling `next` to reject a call; call `next` to run the
/// handler (and the interceptors after this one). Values for the handler are passed with
/// `@TaskLocal`s bound around `next`.
public protocol ServerInterceptor: Sendable {
    /// Intercepts one call.
    func intercept(context: ServerContext, next: () async throws -> Void) async throws
}
