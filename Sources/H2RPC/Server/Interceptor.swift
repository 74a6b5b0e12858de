/// Runs around every server call: authentication, logging, metrics.
///
/// Throw an `RPCError` instead of calling `next` to reject a call; call `next` to run the
/// handler (and the interceptors after this one). Values for the handler are passed with
/// `@TaskLocal`s bound around `next`.
///
/// `intercept` runs when the handler is about to start: for a unary or server-streaming call,
/// once the request is complete. To reject a call from its headers alone, before any request
/// message is held, conform to ``ServerHeadInterceptor`` too.
public protocol ServerInterceptor: Sendable {
    /// Intercepts one call.
    func intercept(context: ServerContext, next: () async throws -> Void) async throws
}

/// An interceptor that also checks each call's head (method, metadata, peer, deadline) as soon
/// as its headers arrive, before the request is complete and before the handler starts:
/// authentication belongs here, so an unauthenticated client cannot make the server hold its
/// request messages.
///
/// The server runs every head interceptor's ``checkHead(context:)`` in order (outermost first)
/// when the headers arrive; the handler does not start before all of them returned, and request
/// messages that arrive meanwhile are held (within ``ServerCallLimits``). The first that throws
/// ends the call at once with that error (an `RPCError`'s status; Trailers-Only), and the rest
/// of the request is discarded unread. Then, when the handler is to start, every interceptor's
/// ``ServerInterceptor/intercept(context:next:)`` runs as usual: pass what `checkHead` learned
/// (e.g. the authenticated principal) through ``ServerContext/setAttachment(_:)`` and bind it
/// there as a task-local.
///
/// A server without head interceptors starts calls exactly as before: no extra task.
public protocol ServerHeadInterceptor: ServerInterceptor {
    /// Checks the call from its head; throw to reject it.
    func checkHead(context: ServerContext) async throws
}
