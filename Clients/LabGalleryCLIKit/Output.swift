import Foundation
import LabGalleryClient

/// Renders results as a table (people) or JSON (scripts).
enum Output {
    /// Prints `value` as pretty, key-sorted JSON, or the table `table` builds.
    static func emit<T: Encodable>(_ value: T, _ format: OutputFormat, table: () -> String) throws {
        Console.out(try render(value, format, table: table))
    }

    /// What ``emit(_:_:table:)`` prints: `value` as pretty, key-sorted JSON and a newline, or `table()`.
    static func render<T: Encodable>(_ value: T, _ format: OutputFormat, table: () -> String) throws -> String {
        switch format {
        case .json: try json(value, pretty: true) + "\n"
        case .table: table()
        }
    }

    /// JSON with sorted keys and unescaped slashes (resource names stay readable).
    static func json<T: Encodable>(_ value: T, pretty: Bool) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting =
            pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// `text` with every terminal control made visible (`\u{1b}`…): C0 and C1 controls, DEL,
    /// line and paragraph separators, bidirectional overrides. Strings the server sent (names,
    /// display names, messages) go through it before they reach a terminal, so none of them
    /// can move the cursor, retitle the window, clear the screen or reorder what is shown.
    /// (JSON output needs nothing: the encoder escapes controls.)
    static func safe(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if needsEscape(scalar) {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }

    /// Columns padded to their widest cell; every cell made ``safe(_:)``.
    static func table(_ headers: [String], _ rows: [[String]]) -> String {
        let rows = rows.map { $0.map(safe) }
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }
            .joined(separator: "  ") + "\n"
        }
        return line(headers) + rows.map(line).joined()
    }

    /// `key: value` lines, keys aligned; every value made ``safe(_:)``.
    static func fields(_ pairs: [(String, String)]) -> String {
        let pairs = pairs.map { ($0.0, safe($0.1)) }
        let width = pairs.map(\.0.count).max() ?? 0
        return pairs.map { "\($0.0.padding(toLength: width, withPad: " ", startingAt: 0))  \($0.1)\n" }.joined()
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func rate(_ bytesPerSecond: Double) -> String { bytes(Int64(bytesPerSecond)) + "/s" }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }
}

// MARK: - Per-type tables

extension LabAccount {
    var fields: [(String, String)] {
        [
            ("name", name), ("display name", displayName), ("region", region),
            ("attached gallery", attachedGallery ?? "-"),
        ]
    }
    var row: [String] { [name, region, attachedGallery ?? "-", displayName] }
    static let headers = ["NAME", "REGION", "ATTACHED GALLERY", "DISPLAY NAME"]
}

extension Gallery {
    var fields: [(String, String)] {
        [("name", name), ("display name", displayName), ("region", region), ("geography", geography)]
    }
    var row: [String] { [name, region, geography, displayName] }
    static let headers = ["NAME", "REGION", "GEOGRAPHY", "DISPLAY NAME"]
}

extension Image {
    var fields: [(String, String)] {
        [
            ("name", name), ("display name", displayName), ("os type", osType.rawValue), ("os state", osState.rawValue),
            ("source", source.rawValue), ("source lab", sourceLab ?? "-"),
            ("size", "\(Output.bytes(sizeBytes)) (\(sizeBytes) bytes)"),
            ("sha256", sha256), ("region", region), ("author", author),
        ]
    }
    var row: [String] { [name, osType.rawValue, osState.rawValue, source.rawValue, Output.bytes(sizeBytes)] }
    static let headers = ["NAME", "OS TYPE", "OS STATE", "SOURCE", "SIZE"]
}

extension LabAccountImage {
    /// ENABLED, AVAILABLE (whether CreateLab would accept it now) and, last, the reason when not.
    var row: [String] { [enabled ? "yes" : "no", available ? "yes" : "no", unavailableReason ?? ""] }
    static let headers = ["ENABLED", "AVAILABLE", "REASON"]
}

extension Lab {
    var fields: [(String, String)] {
        [("name", name), ("display name", displayName), ("template image", templateImage)]
    }
    var row: [String] { [name, templateImage, displayName] }
    static let headers = ["NAME", "TEMPLATE IMAGE", "DISPLAY NAME"]
}

extension ReplicationStatus {
    var table: String {
        "image: \(image)\nstate: \(aggregatedState.rawValue)\n"
            + Output.table(
                ["REGION", "STATE", "PROGRESS", "COPIED", "ATTEMPTS", "ERROR"],
                regions.map {
                    [
                        $0.region, $0.state.rawValue, String(format: "%.1f%%", $0.progressPercent),
                        "\(Output.bytes($0.bytesCopied))/\(Output.bytes($0.bytesTotal))", "\($0.attempts)",
                        $0.error ?? "",
                    ]
                })
    }
}
