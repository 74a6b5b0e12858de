/// gRPC metadata: an ordered multimap of lower-case keys to values.
///
/// Keys ending in `-bin` carry binary values, sent base64-encoded without padding; both
/// padded and unpadded base64 are accepted on receipt. Other values are ASCII strings.
public struct Metadata: Sendable, Hashable, ExpressibleByDictionaryLiteral, Sequence {
    /// A metadata value.
    public enum Value: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
        /// A printable ASCII value.
        case string(String)
        /// A binary value (only under keys ending in `-bin`).
        case binary([UInt8])

        /// A string value from a literal.
        public init(stringLiteral value: String) { self = .string(value) }

        /// The string, or the binary value in unpadded base64.
        public var description: String {
            switch self {
            case .string(let s): return s
            case .binary(let b): return Base64.encode(b, padded: false)
            }
        }
    }

    /// One key/value pair.
    public struct Entry: Sendable, Hashable {
        /// The key, lower-case.
        public var key: String
        /// The value.
        public var value: Value

        /// Creates an entry; `key` must be lower-case (as HTTP/2 field names are).
        public init(key: String, value: Value) {
            self.key = key
            self.value = value
        }
    }

    private var entries: [Entry]

    /// Creates empty metadata.
    public init() { entries = [] }

    /// Creates metadata from string pairs: `["x-request-id": "42"]`.
    public init(dictionaryLiteral elements: (String, Value)...) {
        entries = []
        for (key, value) in elements { add(key, value) }
    }

    /// Adds a string value under `key`.
    public mutating func add(_ key: String, _ value: String) {
        add(key, .string(value))
    }

    /// Adds a binary value under `key` (which should end in `-bin`).
    public mutating func add(_ key: String, binary value: [UInt8]) {
        add(key, .binary(value))
    }

    /// Adds a value under `key`.
    public mutating func add(_ key: String, _ value: Value) {
        entries.append(Entry(key: Metadata.normalized(key), value: value))
    }

    /// Adds an entry read off the wire (HTTP/2 field names are already lower-case).
    public mutating func append(_ entry: Entry) {
        entries.append(entry)
    }

    /// Replaces every value of `key` with `value`.
    public mutating func replace(_ key: String, _ value: String) {
        let k = Metadata.normalized(key)
        entries.removeAll { $0.key == k }
        entries.append(Entry(key: k, value: .string(value)))
    }

    /// Removes every value of `key`.
    public mutating func removeAll(_ key: String) {
        let k = Metadata.normalized(key)
        entries.removeAll { $0.key == k }
    }

    /// `key` in lower case; most keys already are, and then no new string is made.
    @inline(__always)
    private static func normalized(_ key: String) -> String {
        let isUpper = { (c: UInt8) in c &- UInt8(ascii: "A") < 26 }
        // Scanned in place (the generic UTF8View walk cost more than the lookup it precedes).
        let upper =
            key.utf8.withContiguousStorageIfAvailable { $0.contains(where: isUpper) }
            ?? key.utf8.contains(where: isUpper)
        return upper ? key.lowercased() : key
    }

    /// Whether `entry` is under `key` (normalized): byte counts first, a cheap mismatch.
    @inline(__always)
    private static func matches(_ entry: Entry, _ key: String) -> Bool {
        entry.key.utf8.count == key.utf8.count && entry.key == key
    }

    /// All values of `key`, in order.
    public subscript(_ key: String) -> [Value] {
        let k = Metadata.normalized(key)
        return entries.filter { $0.key == k }.map(\.value)
    }

    /// The first string value of `key`.
    public func first(_ key: String) -> String? {
        let k = Metadata.normalized(key)
        for e in entries where Metadata.matches(e, k) {
            if case .string(let s) = e.value { return s }
        }
        return nil
    }

    /// The first binary value of `key`.
    public func firstBinary(_ key: String) -> [UInt8]? {
        let k = Metadata.normalized(key)
        for e in entries where Metadata.matches(e, k) {
            if case .binary(let b) = e.value { return b }
        }
        return nil
    }

    /// The number of entries.
    public var count: Int { entries.count }
    /// Whether there are no entries.
    public var isEmpty: Bool { entries.isEmpty }

    /// Iterates the entries in order.
    public func makeIterator() -> IndexingIterator<[Entry]> { entries.makeIterator() }

    /// Appends every entry of `other`.
    public mutating func append(contentsOf other: Metadata) {
        entries.append(contentsOf: other.entries)
    }

    /// Builds an entry from a received header; `-bin` values are base64-decoded.
    /// Returns nil for a `-bin` value that is not valid base64.
    public static func wireEntry(key: String, value: UnsafeBufferPointer<UInt8>) -> Entry? {
        if key.hasSuffix("-bin") {
            // Several values may arrive joined by commas.
            var out: [UInt8] = []
            for part in value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: true) {
                let trimmed = part.drop(while: { $0 == UInt8(ascii: " ") })
                guard let bytes = Base64.decode(trimmed) else { return nil }
                out.append(contentsOf: bytes)
            }
            return Entry(key: key, value: .binary(out))
        }
        return Entry(key: key, value: .string(String(decoding: value, as: UTF8.self)))
    }

    /// The wire form of an entry's value.
    public static func wireValue(_ value: Value) -> String {
        switch value {
        case .string(let s): return s
        case .binary(let b): return Base64.encode(b, padded: false)
        }
    }

    /// Whether `key` is a header name the transport owns (see ``ReservedHeaders``): such
    /// entries are never surfaced as, or sent from, user metadata.
    public static func isReserved(_ key: String) -> Bool {
        ReservedHeaders.contains(key)
    }
}

/// Base64 (RFC 4648 standard alphabet) for `-bin` metadata.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        // Accept the URL-safe alphabet too: some peers send it.
        table[Int(UInt8(ascii: "-"))] = 62
        table[Int(UInt8(ascii: "_"))] = 63
        return table
    }()

    /// Encodes `bytes`; gRPC sends `-bin` values without padding.
    public static func encode(_ bytes: [UInt8], padded: Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(alphabet[Int(n & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            if padded { out.append(contentsOf: [UInt8(ascii: "="), UInt8(ascii: "=")]) }
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            if padded { out.append(UInt8(ascii: "=")) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes padded or unpadded base64; nil if malformed.
    public static func decode<Bytes: Collection<UInt8>>(_ input: Bytes) -> [UInt8]? {
        var chars = Array(input)
        while let last = chars.last, last == UInt8(ascii: "=") { chars.removeLast() }
        if chars.count % 4 == 1 { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        for c in chars {
            let v = reverse[Int(c)]
            if v == 0xFF { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        return out
    }
}
