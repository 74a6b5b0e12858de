import Foundation
import LabGalleryCore
import Logging
import Synchronization
import Testing

@testable import LabGalleryServerApp

/// Lines a handler wrote.
final class Lines: Sendable {
    private let text = Mutex("")
    func append(_ s: String) { text.withLock { $0 += s } }
    var value: String { text.withLock { $0 } }
}

@Suite("labgallery-server --log-format json")
struct JSONLogHandlerTests {
    /// One event through a JSON handler; returns the raw line.
    func line(
        _ message: Logger.Message, metadata: Logger.Metadata = [:], label: String = "labgallery-server"
    ) -> String {
        let lines = Lines()
        var logger = Logger(label: label) { label in
            SafeLogHandler(label: label, format: .json, write: { lines.append($0) })
        }
        logger.logLevel = .trace
        logger.info(message, metadata: metadata)
        return lines.value
    }

    /// The line parsed (it must be one JSON object on one line).
    func object(_ line: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        #expect(line.hasSuffix("\n") && line.dropLast().firstIndex(of: "\n") == nil, sourceLocation: sourceLocation)
        let parsed = try JSONSerialization.jsonObject(with: Data(line.utf8))
        return try #require(parsed as? [String: Any], sourceLocation: sourceLocation)
    }

    @Test("fixed keys first, then the metadata sorted; nested values stay JSON")
    func shape() throws {
        let text = line(
            "call",
            metadata: [
                "status": "OK", "bytes_in": "12", "message": "clash",
                "nested": .dictionary(["b": "2", "a": .array(["x", "y"])]),
            ])
        #expect(text.hasPrefix(#"{"time":""#))
        #expect(text.contains(#","level":"info","label":"labgallery-server","message":"call","bytes_in":"12","#))
        let o = try object(text)
        #expect(o["message"] as? String == "call" && o["meta.message"] as? String == "clash")
        #expect(o["status"] as? String == "OK")
        let nested = try #require(o["nested"] as? [String: Any])
        #expect(nested["b"] as? String == "2" && nested["a"] as? [String] == ["x", "y"])
        #expect((o["time"] as? String)?.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}/) != nil)
    }

    @Test("any input is valid JSON on one line: controls escaped as SafeText does, values capped")
    func hostileInput() throws {
        // Every C0 and C1 control, DEL, quotes, backslashes, separators, bidi overrides, a BOM,
        // invalid UTF-8 (decoded as Swift does: U+FFFD), a 4 MB value.
        var nasty = String(decoding: (0..<256).map { UInt8($0) }, as: UTF8.self)
        nasty += String((0..<0x20).map { Character(Unicode.Scalar($0)!) })
        nasty += "\u{7F}\u{85}\u{9B}31m\"\\\u{2028}\u{2029}\u{202E}\u{2066}\u{FEFF}é𝄞"
        let huge = String(repeating: "A", count: 4 << 20)
        let text = line(
            "m\(nasty)", metadata: ["peer": "\(nasty)", "method": "\(huge)", "k\n\"ey": "v"], label: "l\u{1B}")
        let o = try object(text)
        #expect(o["peer"] as? String == SafeText.escaped(nasty, limit: SafeLogHandler.valueLimit))
        #expect(o["message"] as? String == SafeText.escaped("m\(nasty)", limit: SafeText.messageLimit))
        #expect(o["label"] as? String == "l\\u{1b}")
        #expect((o["method"] as? String)?.count == SafeLogHandler.valueLimit + 1)  // cut, then "…"
        #expect(o[#"k\n"ey"#] as? String == "v")
        #expect(text.utf8.count < 8 << 10, "a 4 MB value writes a short line")
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" || (0x7F...0x9F).contains($0.value) })
    }

    @Test("a JSON string escapes quotes, backslashes and every control below U+0020")
    func jsonString() throws {
        #expect(JSONLine.string("a\"b\\c\u{0}\u{1F} é") == #""a\"b\\c\u0000\u001f é""#)
        for scalar in (0..<0x20).map({ Unicode.Scalar($0)! }) {
            let s = JSONLine.string(String(Character(scalar)))
            #expect(
                try JSONSerialization.jsonObject(with: Data(s.utf8), options: .fragmentsAllowed) as? String
                    == String(Character(scalar)))
        }
    }

    @Test("the level filter and --log-format's values")
    func options() {
        let lines = Lines()
        var logger = Logger(label: "x") { label in
            SafeLogHandler(label: label, format: .json, write: { lines.append($0) })
        }
        logger.logLevel = .notice
        logger.info("hidden")
        logger.notice("shown")
        #expect(lines.value.split(separator: "\n").count == 1 && lines.value.contains("shown"))
        #expect(Logs.Format(argument: "json") == .json && Logs.Format(argument: "text") == .text)
        #expect(Logs.Format(argument: "yaml") == nil)
    }
}
