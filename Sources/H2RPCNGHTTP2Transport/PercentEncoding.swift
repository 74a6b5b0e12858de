/// `grpc-message` percent-encoding (grpc PROTOCOL-HTTP2.md): bytes outside 0x20–0x7E and
/// `%` itself are sent as `%XX` over the UTF-8 of the message.
enum PercentEncoding {
    /// The longest `grpc-message` value sent: 8 KiB of percent-encoded text. Every status
    /// message goes through `encode`, so this is the one place the cap lives. A status is a
    /// sentence for a person; a longer one would only crowd the trailers towards the peer's
    /// header-list limit (16 KiB by default in grpc) and nghttp2's 64 KiB per block, past which
    /// the trailers could not be sent at all.
    static let maxEncodedMessage = 8 * 1024
    /// Ends a message cut at `maxEncodedMessage`: "…" (U+2026), encoded.
    private static let truncationMark = Array("%E2%80%A6".utf8)

    @inline(__always)
    private static func escapes(_ byte: UInt8) -> Bool { byte < 0x20 || byte > 0x7E || byte == UInt8(ascii: "%") }

    /// The message percent-encoded, at most `limit` bytes: a longer one is cut at a character
    /// boundary (never inside an escape or a UTF-8 sequence) and ends with "…".
    static func encode(_ message: String, limit: Int = maxEncodedMessage) -> String {
        var encodedCount = 0
        for byte in message.utf8 { encodedCount += escapes(byte) ? 3 : 1 }
        if encodedCount == message.utf8.count && encodedCount <= limit { return message }
        let truncating = encodedCount > limit
        let room = max(0, limit - truncationMark.count)
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(min(encodedCount, limit))
        var scalarStart = 0  // out.count where the current character began
        for byte in message.utf8 {
            if byte & 0xC0 != 0x80 { scalarStart = out.count }  // not a continuation byte
            let width = escapes(byte) ? 3 : 1
            if truncating && out.count + width > room {
                out.removeSubrange(scalarStart...)  // the character that does not fit whole
                out.append(contentsOf: truncationMark)
                break
            }
            if width == 3 {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes leniently: a malformed escape is kept as it is, as the spec asks.
    static func decode<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        let input = Array(bytes)
        guard input.contains(UInt8(ascii: "%")) else { return String(decoding: input, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        var i = 0
        while i < input.count {
            if input[i] == UInt8(ascii: "%"), i + 2 < input.count,
                let hi = hexValue(input[i + 1]), let lo = hexValue(input[i + 2])
            {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(input[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
