import Foundation
import LabGalleryCore
import Logging

/// The server's log handler: one line per event on stderr, in text
/// (`TIMESTAMP LEVEL LABEL: key=value ... MESSAGE`, like swift-log's `StreamLogHandler`) or as
/// one JSON object (``JSONLine``, `--log-format json`). In both formats
/// nothing a peer sent can shape the output: every metadata value and the message have their
/// control characters escaped (`\n`, `\u{1b}`…, see `SafeText`) and are capped (a value at
/// ``valueLimit`` characters, the message at `SafeText.messageLimit`), and a value holding a
/// space, `"` or `=` is written in double quotes. A newline in a request cannot forge a log line,
/// an ESC cannot reach the operator's terminal, and a 4 MB string writes at most a few hundred
/// bytes per line.
struct SafeLogHandler: LogHandler {
    /// The cap on one metadata value, in characters.
    static let valueLimit = 256

    let label: String
    /// Text or JSON lines.
    let format: Logs.Format
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    /// Where lines go (stderr; a test may collect them instead).
    let write: @Sendable (String) -> Void

    init(
        label: String, format: Logs.Format = .text,
        write: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }
    ) {
        self.label = label
        self.format = format
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
        switch format {
        case .text: write(Self.textLine(label: label, event: event, metadata: all))
        case .json: write(JSONLine.line(label: label, event: event, metadata: all))
        }
    }

    /// The text line (with its newline) of one event with its merged `metadata`.
    static func textLine(label: String, event: LogEvent, metadata all: Logger.Metadata) -> String {
        var line = Self.timestamp() + " \(event.level) " + SafeText.escaped(label) + ":"
        for (key, value) in all.sorted(by: { $0.key < $1.key }) {
            line += " " + SafeText.escaped(key) + "=" + Self.value("\(value)")
        }
        return line + " " + SafeText.escaped("\(event.message)", limit: SafeText.messageLimit) + "\n"
    }

    /// A metadata value as written: escaped, capped, quoted when it would not read as one token.
    static func value(_ raw: String) -> String {
        let escaped = SafeText.escaped(raw, limit: valueLimit)
        guard escaped.isEmpty || escaped.utf8.contains(where: { $0 == 0x20 || $0 == 0x22 || $0 == 0x3D }) else {
            return escaped
        }
        return "\"" + escaped.replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// Now, local time with its offset: `2026-11-30T05:00:00+0000` (the JSON format's too).
    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [Int8](repeating: 0, count: 64)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
