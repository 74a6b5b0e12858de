import H2RPC

/// Adds `authorization: <value>` to every call: `Authorization(bearer: token)` for a bearer
/// token, `Authorization(value:)` for anything else (a malformed header, another scheme).
public struct Authorization: ClientInterceptor {
    /// The header's whole value.
    public let value: String

    public init(value: String) { self.value = value }

    public init(bearer token: String) { value = "Bearer \(token)" }

    public func prepare(_ head: inout ClientRequestHead) throws {
        head.metadata.replace("authorization", value)
    }
}
