import Foundation
import LabGalleryCore
import Logging

/// The server's log handler for machines (`--log-format json`): one JSON object per line on
/// stderr, `{"time":…,"level":…,"label":…,"message":…, <metadata keys>…}`, metadata keys sorted
/// after the four fixed ones (a metadata key named like one of them is written `meta.<key>`).
///
/// Every string is made safe as ``SafeLogHandler`` does it (control characters escaped as visible
/// text by `SafeText`, a metadata value capped at ``SafeLogHandler/valueLimit`` characters, the
/// message at `SafeText.messageLimit`), then written as a JSON string (`"` and `\` escaped, and
/// any control character left as `\u00XX`): whatever bytes a peer sent, the line is valid JSON
/// and stays one line. Nested metadata (dictionaries, arrays) becomes JSON objects and arrays.
struct JSONLogHandler: LogHandler {
    /// The fixed keys of every line.
    static let fixedKeys: Set<String> = ["time", "level", "label", "message"]

    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    /// Where lines go (stderr; a test may collect them instead).
    let write: @Sendable (String) -> Void

    init(
        label: String,
        write: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }
    ) {
        self.label = label
        self.write = write
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra, uniquingKeysWith: { _, new in new }) }
        if let error = event.error { all["error.message"] = "\(error)" }
        var line = "{\"time\":" + Self.string(SafeLogHandler.timestamp())
        line += ",\"level\":" + Self.string("\(event.level)")
        line += ",\"label\":" + Self.string(SafeText.escaped(label, limit: SafeLogHandler.valueLimit))
        line += ",\"message\":" + Self.string(SafeText.escaped("\(event.message)", limit: SafeText.messageLimit))
        for (key, value) in all.sorted(by: { $0.key < $1.key }) {
            let name = Self.fixedKeys.contains(key) ? "meta." + key : key
            line += "," + Self.string(SafeText.escaped(name)) + ":" + Self.value(value)
        }
        line += "}\n"
        write(line)
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
