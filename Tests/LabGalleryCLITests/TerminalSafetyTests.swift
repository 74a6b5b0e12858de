import Foundation
import LabGalleryClient
import Testing

@testable import LabGalleryCLIKit

/// Issue 10, finding 7: strings the server sent never reach the terminal with their escape
/// sequences live — tables, `key: value` output, error lines, replication progress.
@Suite("labgallery: server strings are neutralised before printing")
struct TerminalSafetyTests {
    static let hostile = "evil\u{1B}]0;pwned\u{07}\u{1B}[2J\r\u{9B}31m\u{202E}txt\n"

    @Test("tables and fields escape control characters")
    func tablesAndFields() throws {
        let gallery = Gallery(name: "galleries/g", displayName: Self.hostile, region: "eastus", geography: "US")
        let table = Output.table(Gallery.headers, [gallery.row])
        let fields = Output.fields(gallery.fields)
        for text in [table, fields] {
            #expect(!text.contains("\u{1B}") && !text.contains("\u{07}") && !text.contains("\r"))
            #expect(!text.unicodeScalars.contains { $0.value == 0x9B || $0.value == 0x202E })
            #expect(text.contains("evil\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{d}\\u{9b}31m\\u{202e}txt\\u{a}"))
            #expect(text.split(separator: "\n").count == (text == table ? 2 : 4), "one line per row or field")
        }
        // JSON: the encoder escapes control characters itself.
        let json = try Output.render(GalleryJSON(gallery), .json) { "" }
        #expect(!json.contains("\u{1B}"))
    }

    @Test("error lines and replication progress escape control characters")
    func errorsAndProgress() {
        let failure = LabGalleryCLI.failure(
            LabGalleryClientError(.invalidArgument, Self.hostile))
        #expect(failure?.message.hasPrefix("error: INVALID_ARGUMENT: evil\\u{1b}") == true)
        #expect(failure?.message.contains("\u{1B}") == false)
        #expect(failure?.message.filter { $0 == "\n" }.count == 1)

        let status = ReplicationStatus(
            image: "galleries/g/images/\u{1B}[31mi", aggregatedState: .failed,
            regions: [
                RegionReplication(
                    region: "south\u{1B}[H", state: .failed, bytesCopied: 0, bytesTotal: 10, progressPercent: 0,
                    error: Self.hostile, attempts: 5)
            ])
        for mode in [ReplicationDisplay.Mode.plain, .live] {
            let out = Transcript()
            let display = ReplicationDisplay(mode: mode, write: { out.append($0) })
            try? display.show(status)
            // The live display's own cursor movement is the only escape sequence left.
            let own = ["\u{1B}[?25l", "\u{1B}[2K", "\u{1B}[?25h"]
            var text = out.value
            for sequence in own { text = text.replacingOccurrences(of: sequence, with: "") }
            #expect(!text.contains("\u{1B}"), "\(mode): \(text.debugDescription)")
            #expect(text.contains("\\u{1b}[31mi"))
        }
    }
}
