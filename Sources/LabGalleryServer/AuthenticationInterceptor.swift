import Foundation
import GeneratedProtos
import H2RPC
import LabGalleryCore
import Logging

/// Requires `authorization: Bearer <token>` on every call except health and reflection,
/// resolves the token through the core, and binds the ``Caller`` for the handler.
///
/// The token is checked from the request's headers (``ServerHeadInterceptor``), before the
/// request is complete: a call without a valid token is answered UNAUTHENTICATED at once and
/// its request messages are never held. Role checks are not made here: each use case of the
/// core checks the role it needs.
public struct AuthenticationInterceptor: ServerHeadInterceptor {
    /// Services callable without a token: load balancers and orchestrators probe health
    /// anonymously, and reflection only describes the API (the schema is no secret; every call
    /// it lists still needs a token).
    public static let publicServices: Set<String> = [
        Grpc_Health_V1_Health.descriptorName, Grpc_Reflection_V1_ServerReflection.descriptorName,
        Grpc_Reflection_V1alpha_ServerReflection.descriptorName,
    ]

    private let core: LabGalleryService
    private let logger: Logger

    /// Creates the interceptor over the core that owns the tokens; rejections are logged to `logger`.
    public init(core: LabGalleryService, logger: Logger) {
        self.core = core
        self.logger = logger
    }

    /// What the head check found: the authenticated principal, for `intercept`.
    struct Authenticated: Sendable {
        let principal: Principal
    }

    /// Authenticates the call from its headers; the principal is attached to the context.
    public func checkHead(context: ServerContext) async throws {
        if Self.publicServices.contains(context.descriptor.service) { return }
        context.setAttachment(Authenticated(principal: try await authenticate(context)))
    }

    /// Runs the handler with ``Caller/principal`` bound to the principal `checkHead` found
    /// (authenticating here if the head was not checked).
    public func intercept(context: ServerContext, next: () async throws -> Void) async throws {
        if Self.publicServices.contains(context.descriptor.service) { return try await next() }
        let principal: Principal
        if let authenticated = context.attachment(Authenticated.self) {
            principal = authenticated.principal
        } else {
            principal = try await authenticate(context)
        }
        try await Caller.$principal.withValue(principal) { try await next() }
    }

    private func authenticate(_ context: ServerContext) async throws -> Principal {
        let principal: Principal
        do {
            principal = try await core.authenticate(token: try Self.bearerToken(in: context.metadata))
        } catch {
            // Never log the header itself: it may hold a valid token with a typo around it.
            // (The access log has the call's line at info; this one is for debugging.)
            logger.debug(
                "call rejected",
                metadata: [
                    "method": "\(context.descriptor.path)", "peer": "\(context.peer)",
                    "status": "UNAUTHENTICATED",
                ])
            throw error
        }
        return principal
    }

    /// The token of an `authorization: Bearer <token>` header (scheme case-insensitive),
    /// or UNAUTHENTICATED saying what to send.
    static func bearerToken(in metadata: Metadata) throws -> String {
        guard let header = metadata.first("authorization") else {
            throw RPCError(
                .unauthenticated,
                "missing authorization metadata; send `authorization: Bearer <token>` (the first admin token is in <data-dir>/admin.token; create others with `labgallery-server token create`)"
            )
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw RPCError(.unauthenticated, "malformed authorization metadata; expected `Bearer <token>`")
        }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }
}
