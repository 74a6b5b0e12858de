/// The header names a transport owns: they are never surfaced as user metadata nor sent from
/// it, on the server and the client side alike. The one table every filter checks.
///
/// Pseudo-headers (`:path`, `:status`, …) are reserved too.
public enum ReservedHeaders {
    /// Every reserved name (pseudo-headers apart).
    public static let names: [StaticString] = [
        "te", "host", "upgrade", "connection", "keep-alive", "grpc-status", "content-type",
        "grpc-timeout", "grpc-message", "grpc-encoding", "content-length", "proxy-connection",
        "transfer-encoding", "grpc-accept-encoding", "grpc-status-details-bin",
    ]

    /// `names` by length: a lookup compares one or two names at most.
    @usableFromInline
    static let byLength: [[StaticString]] = {
        var table = [[StaticString]](repeating: [], count: (names.map(\.utf8CodeUnitCount).max() ?? 0) + 1)
        for name in names { table[name.utf8CodeUnitCount].append(name) }
        return table
    }()

    /// Whether the header name in `name` (lower-case UTF-8, as HTTP/2 sends it) is reserved.
    @inlinable
    public static func contains(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let first = name.first else { return false }
        if first == UInt8(ascii: ":") { return true }
        let table = byLength
        guard name.count < table.count else { return false }
        for candidate in table[name.count] where candidate.withUTF8Buffer({ $0.elementsEqual(name) }) {
            return true
        }
        return false
    }

    /// Whether the header name `name` (lower-case) is reserved.
    public static func contains(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { contains($0) }
    }
}
