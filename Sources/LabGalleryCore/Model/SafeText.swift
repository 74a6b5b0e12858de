/// Text that came from outside (a request field, a peer, a file) made safe to write into a log
/// line or echo in a status message: control characters escaped, length capped.
///
/// A newline in an echoed id would forge a log line, an ESC would reach an operator's terminal,
/// and a 4 MB id would write 4 MB per call; escaped and capped, none of them can.
/// Escapes: `\n`, `\r`, `\t`, `\\`, and `\u{X}` for every other C0/C1 control, DEL, the line and
/// paragraph separators and the bidirectional overrides and isolates. Past `limit` Unicode scalars
/// the text is cut and ends with "…".
public enum SafeText {
    /// The cap on an input echoed in a status message or logged as one value: 128 characters.
    public static let inputLimit = 128
    /// The cap on a whole status message or log line part: 1024 characters.
    public static let messageLimit = 1024

    /// `text` with control characters escaped and at most `limit` characters (then "…").
    /// Returns `text` itself when there is nothing to change (short printable ASCII).
    public static func escaped(_ text: String, limit: Int = inputLimit) -> String {
        if isPlain(text, limit: limit) { return text }
        return escape(text, limit: limit, quotes: false, backslash: true)
    }

    /// A whole message (already built from quoted inputs): control characters escaped, a
    /// backslash left as it is (so quoted inputs are not escaped twice), at most `limit` characters.
    public static func sanitized(_ message: String, limit: Int = messageLimit) -> String {
        if isPlain(message, limit: limit) { return message }
        return escape(message, limit: limit, quotes: false, backslash: false)
    }

    /// `"text"`: escaped and capped as ``escaped(_:limit:)``, with `"` escaped too, in double
    /// quotes. The one way the domain quotes a caller's input in a message.
    public static func quoted(_ text: String, limit: Int = inputLimit) -> String {
        "\"" + escape(text, limit: limit, quotes: true, backslash: true) + "\""
    }

    /// Short, printable ASCII without a backslash: nothing to escape or cut.
    private static func isPlain(_ text: String, limit: Int) -> Bool {
        let utf8 = text.utf8
        guard utf8.count <= limit else { return false }
        return utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != 0x5C }
    }

    private static func escape(_ text: String, limit: Int, quotes: Bool, backslash: Bool) -> String {
        var out = ""
        out.reserveCapacity(min(text.utf8.count, limit) + 8)
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit {
                out += "…"
                break
            }
            count += 1
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\\" where backslash: out += "\\\\"
            case "\"" where quotes: out += "\\\""
            default:
                if needsEscape(scalar) {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: true  // C0, DEL, C1 (CSI is 0x9B)
        case 0x2028, 0x2029: true  // line and paragraph separators
        case 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true  // bidirectional marks, overrides, isolates
        case 0xFEFF: true
        default: false
        }
    }
}
