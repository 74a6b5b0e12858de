import Foundation

/// Paging parameters of a List call (`page_size`, `page_token`).
public struct PageRequest: Sendable, Equatable {
    /// Requested page size: 0 means the default (50), values above 1000 are capped at 1000, negative is invalid.
    public var size: Int
    /// The `next_page_token` of the previous page, or empty for the first page.
    public var token: String
    /// Creates a page request; defaults to the first page of default size.
    public init(size: Int = 0, token: String = "") {
        self.size = size
        self.token = token
    }

    /// Default page size.
    public static let defaultSize = 50
    /// Maximum page size.
    public static let maxSize = 1000
}

/// One page of a List call.
public struct Page<Item: Sendable>: Sendable {
    /// The items of this page.
    public var items: [Item]
    /// Token for the next page, or empty when this is the last page.
    public var nextPageToken: String
    /// Memberwise initializer.
    public init(items: [Item], nextPageToken: String) {
        self.items = items
        self.nextPageToken = nextPageToken
    }
}

/// A validated page request: the size to fetch and the key to start after.
///
/// Page tokens are opaque to clients: base64url of `"<list kind>:<last id>"`. The kind ties a token to
/// the list (and parent) it came from, so a token from another list is rejected as invalid.
struct PageCursor: Sendable {
    let limit: Int
    let after: String?
    let kind: String

    init(_ request: PageRequest, kind: String) throws(LabGalleryError) {
        self.kind = kind
        guard request.size >= 0 else {
            throw .invalid(
                "page_size",
                "must not be negative (0 means the default of \(PageRequest.defaultSize), max \(PageRequest.maxSize))")
        }
        limit = request.size == 0 ? PageRequest.defaultSize : min(request.size, PageRequest.maxSize)
        if request.token.isEmpty {
            after = nil
        } else {
            guard let data = Data(base64urlEncoded: request.token),
                let text = String(data: data, encoding: .utf8),
                text.hasPrefix(kind + ":"),
                ResourceID.isValid(String(text.dropFirst(kind.count + 1)))
            else {
                throw .invalid(
                    "page_token",
                    "invalid page token; pass the next_page_token of the previous response of this same list call, or empty for the first page"
                )
            }
            after = String(text.dropFirst(kind.count + 1))
        }
    }

    /// Builds a page from up to `limit + 1` rows fetched in key order.
    func page<T>(_ rows: [T], key: (T) -> String) -> Page<T> {
        guard rows.count > limit else { return Page(items: rows, nextPageToken: "") }
        let items = Array(rows.prefix(limit))
        let token = Data("\(kind):\(key(items[items.count - 1]))".utf8).base64urlEncodedString()
        return Page(items: items, nextPageToken: token)
    }
}

extension Data {
    init?(base64urlEncoded s: String) {
        var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b.count % 4 != 0 { b += "=" }
        self.init(base64Encoded: b)
    }

    func base64urlEncodedString() -> String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    var hexString: String { map { String(format: "%02x", $0) }.joined() }
}
