import LabGalleryCore
import Logging

/// The line of `--log-format json`: one JSON object,
/// `{"time":…,"level":…,"label":…,"message":…, <metadata keys>…}`, metadata keys sorted after
/// the four fixed ones (a metadata key named like one of them is written `meta.<key>`).
///
/// Every string is made safe as in text lines (control characters escaped as visible text by
/// `SafeText`, a metadata value capped at ``SafeLogHandler/valueLimit`` characters, the message
/// at `SafeText.messageLimit`), then written as a JSON string (`"` and `\` escaped, and any
/// control character left as `\u00XX`): whatever bytes a peer sent, the line is valid JSON and
/// stays one line. Nested metadata (dictionaries, arrays) becomes JSON objects and arrays.
enum JSONLine {
    /// The fixed keys of every line.
    static let fixedKeys: Set<String> = ["time", "level", "label", "message"]

    /// The line (with its newline) of one event with its merged `metadata`.
    static func line(label: String, event: LogEvent, metadata: Logger.Metadata) -> String {
        var line = "{\"time\":" + string(SafeLogHandler.timestamp())
        line += ",\"level\":" + string("\(event.level)")
        line += ",\"label\":" + string(SafeText.escaped(label, limit: SafeLogHandler.valueLimit))
        line += ",\"message\":" + string(SafeText.escaped("\(event.message)", limit: SafeText.messageLimit))
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            let name = fixedKeys.contains(key) ? "meta." + key : key
            line += "," + string(SafeText.escaped(name)) + ":" + Self.value(value)
        }
        return line + "}\n"
    }

    /// A metadata value as JSON: strings escaped and capped, nesting kept.
    static func value(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s): string(SafeText.escaped(s, limit: SafeLogHandler.valueLimit))
        case .stringConvertible(let c): string(SafeText.escaped(c.description, limit: SafeLogHandler.valueLimit))
        case .array(let items): "[" + items.map(Self.value).joined(separator: ",") + "]"
        case .dictionary(let entries):
            "{"
                + entries.sorted(by: { $0.key < $1.key })
                .map { string(SafeText.escaped($0.key)) + ":" + Self.value($0.value) }
                .joined(separator: ",") + "}"
        }
    }

    /// `text` as a JSON string literal (RFC 8259): `"` and `\` escaped, every control character
    /// below U+0020 as `\u00XX`. A Swift string is valid Unicode, so the result is valid UTF-8.
    static func string(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
