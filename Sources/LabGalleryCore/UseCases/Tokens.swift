import Foundation

extension LabGalleryService {
    /// Creates a token for `principal` with `role`. The plaintext is returned once; only its
    /// SHA-256 is stored. (Operator command, not an RPC: no caller check.)
    public func createToken(principal: String, role: Role) async throws(LabGalleryError) -> CreatedToken {
        try await blocking { () throws(LabGalleryError) in
            guard !principal.isEmpty, principal.count <= 128 else {
                throw LabGalleryError.invalid("principal", "must be 1–128 characters")
            }
            let plaintext = TokenSecret.generate()
            let info = TokenInfo(
                id: TokenSecret.newID(), principal: principal, role: role, createdAt: Date(), revoked: false)
            try write { tx in try tx.insertToken(info, secretHash: TokenSecret.hash(plaintext)) }
            return CreatedToken(info: info, plaintext: plaintext)
        }
    }

    /// All tokens (without secrets), oldest first.
    public func listTokens() async throws(LabGalleryError) -> [TokenInfo] {
        try await blocking { () throws(LabGalleryError) in
            try read { tx in try tx.tokens() }
        }
    }

    /// Revokes a token by id; NOT_FOUND if there is no such id. Idempotent on revoked tokens.
    public func revokeToken(id: String) async throws(LabGalleryError) {
        try await blocking { () throws(LabGalleryError) in
            let found = try write { tx in try tx.revokeToken(id: id) }
            guard found else {
                throw LabGalleryError.notFound(
                    resource: id, message: "token \(id) not found; see `labgallery-server token list`")
            }
        }
    }

    /// Resolves a bearer token to its principal; UNAUTHENTICATED if unknown, revoked or malformed.
    /// The token is looked up by its SHA-256, so timing does not depend on secret prefixes.
    public func authenticate(token: String) async throws(LabGalleryError) -> Principal {
        try await blocking { () throws(LabGalleryError) in
            guard token.hasPrefix(TokenSecret.prefix) else {
                throw LabGalleryError.unauthenticated(
                    message:
                        "missing or malformed token; send `authorization: Bearer lg_…` with a token from `labgallery-server token create`"
                )
            }
            let hash = TokenSecret.hash(token)
            guard let info = try read({ tx in try tx.token(secretHash: hash) }) else {
                throw LabGalleryError.unknownOrRevokedToken
            }
            // The same answer as an unknown token: a caller learns nothing about which ids exist.
            guard !info.revoked else { throw LabGalleryError.unknownOrRevokedToken }
            return Principal(name: info.principal, role: info.role)
        }
    }

    /// First-start bootstrap: if no token exists, creates an `admin` token for principal `admin`
    /// and writes its plaintext to `<data-dir>/admin.token` (mode 0600).
    /// Returns whether it did, so the server can log the path without printing the secret.
    ///
    /// "Empty? then insert" is one write transaction, so of several instances starting together
    /// on one database exactly one commits a token (the others' transactions find it, on a retry
    /// after a serialization failure). The file is written inside the transaction under a name of
    /// this attempt's own and renamed into place only after the commit: an attempt that does not
    /// commit never touches `admin.token`, and a failed write commits no token.
    public func bootstrapAdminToken() throws(LabGalleryError) -> AdminTokenBootstrap {
        let url = layout.adminTokenURL
        let plaintext = TokenSecret.generate()
        let info = TokenInfo(
            id: TokenSecret.newID(), principal: "admin", role: .admin, createdAt: Date(), revoked: false)
        let staged = url.deletingLastPathComponent().appendingPathComponent(".admin.token.\(info.id)")
        defer { unlink(staged.path) }
        let created: Bool = try write { tx in
            guard try tx.countTokens() == 0 else { return false }
            try tx.insertToken(info, secretHash: TokenSecret.hash(plaintext))
            try FileOps.writeSecretFile(staged, contents: plaintext + "\n")
            return true
        }
        if created {
            guard rename(staged.path, url.path) == 0 else {
                throw FileOps.error("rename \(staged.path) to \(url.path)")
            }
            try FileOps.fsyncDirectory(url.deletingLastPathComponent())
        }
        return AdminTokenBootstrap(created: created, path: url)
    }
}
