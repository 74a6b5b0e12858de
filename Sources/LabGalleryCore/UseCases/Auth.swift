import Crypto
import Foundation

/// A caller's role. Each role includes the ones after it: admin ⊇ educator ⊇ reader.
public enum Role: String, Sendable, CaseIterable, Comparable {
    /// Everything: lab accounts, galleries, attach/detach, enable/disable, upload, delete images.
    case admin
    /// Create/delete labs, save template images, and read.
    case educator
    /// Read only (Get/List).
    case reader

    private var rank: Int {
        switch self {
        case .admin: 2
        case .educator: 1
        case .reader: 0
        }
    }

    /// Whether this role may do everything `other` may.
    public func includes(_ other: Role) -> Bool { rank >= other.rank }

    /// Ordered by privilege: `reader < educator < admin`.
    public static func < (a: Role, b: Role) -> Bool { a.rank < b.rank }
}

/// An authenticated caller.
public struct Principal: Hashable, Sendable {
    /// The principal's name (recorded e.g. as an image's author).
    public var name: String
    /// The principal's role.
    public var role: Role
    /// Memberwise initializer.
    public init(name: String, role: Role) {
        self.name = name
        self.role = role
    }
}

/// Throws `permissionDenied` naming the role needed unless `principal`'s role includes `role`.
public func require(_ role: Role, for principal: Principal) throws(LabGalleryError) {
    guard principal.role.includes(role) else {
        throw .permissionDenied(
            message:
                "\(principal.name) has role \(principal.role.rawValue); this operation needs role \(role.rawValue) (or higher); ask an admin for a token with that role"
        )
    }
}

/// A stored API token, without its secret (tokens are stored only as SHA-256 hashes).
public struct TokenInfo: Hashable, Sendable {
    /// Identifier used to list and revoke, e.g. `tok-3fa2…` (not secret).
    public var id: String
    /// Principal the token authenticates as.
    public var principal: String
    /// Role granted.
    public var role: Role
    /// Creation time.
    public var createdAt: Date
    /// Whether the token was revoked.
    public var revoked: Bool
    /// Memberwise initializer.
    public init(id: String, principal: String, role: Role, createdAt: Date, revoked: Bool) {
        self.id = id
        self.principal = principal
        self.role = role
        self.createdAt = createdAt
        self.revoked = revoked
    }
}

/// A freshly created token: its plaintext is shown once and never stored.
public struct CreatedToken: Sendable {
    /// The stored record.
    public var info: TokenInfo
    /// The bearer secret, `lg_` + 43 base64url characters (32 random bytes).
    public var plaintext: String
}

/// Result of ``LabGalleryService/bootstrapAdminToken()``.
public struct AdminTokenBootstrap: Sendable, Equatable {
    /// Whether a token was created (only when the token table was empty).
    public var created: Bool
    /// `<data-dir>/admin.token`, written with mode 0600 when `created`.
    public var path: URL
}

/// Token secret generation and hashing.
enum TokenSecret {
    static let prefix = "lg_"

    /// 32 bytes from the system CSPRNG (`getrandom`/`arc4random`), base64url, prefixed `lg_`.
    static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        return prefix + Data(bytes).base64urlEncodedString()
    }

    /// A short random, non-secret id.
    static func newID() -> String {
        var rng = SystemRandomNumberGenerator()
        return "tok-" + Data((0..<8).map { _ in UInt8.random(in: .min ... .max, using: &rng) }).hexString
    }

    /// Lowercase hex SHA-256 of the token string.
    static func hash(_ token: String) -> String { Data(SHA256.hash(data: Data(token.utf8))).hexString }
}
