import ArgumentParser
import BuildInfo
import Foundation
import LabGalleryClient
import TestSupport
import Testing

@testable import LabGalleryCLIKit

// Issue 11, operations basics on the CLI side: global options before the subcommand, the live
// watch fitted to the terminal and restoring the cursor on Ctrl-C, and `--version`.

@Suite("labgallery: global options before the subcommand")
struct GlobalOptionsTests {
    @Test("leading global options move to just after the subcommand path; anything else stays")
    func hoisting() {
        let cases: [([String], [String])] = [
            (["--endpoint", "h:1", "gallery", "list"], ["gallery", "list", "--endpoint", "h:1"]),
            (["--endpoint=h:1", "gallery", "list"], ["gallery", "list", "--endpoint=h:1"]),
            (
                ["--tls", "--token", "t", "-o", "json", "replication", "watch", "g/i"],
                ["replication", "watch", "--tls", "--token", "t", "-o", "json", "g/i"]
            ),
            (["-o=json", "--timeout", "2", "cost", "g"], ["cost", "-o=json", "--timeout", "2", "g"]),
            (
                ["--output", "json", "gallery", "show", "x", "-o", "table"],
                ["gallery", "show", "--output", "json", "x", "-o", "table"]
            ),
            // Nothing to move, or nowhere to move it: unchanged, for ArgumentParser to judge.
            (["gallery", "list", "--endpoint", "h:1"], ["gallery", "list", "--endpoint", "h:1"]),
            (["--endpoint", "h:1"], ["--endpoint", "h:1"]),
            (["--endpoint"], ["--endpoint"]),
            (["--endpoint", "h:1", "--help"], ["--endpoint", "h:1", "--help"]),
            (["--endpoint", "h:1", "frobnicate"], ["--endpoint", "h:1", "frobnicate"]),
            (["--version"], ["--version"]),
            (["--tls=yes", "gallery", "list"], ["--tls=yes", "gallery", "list"]),
        ]
        for (input, expected) in cases {
            #expect(GlobalOptions.hoisted(input) == expected, "\(input)")
        }
    }

    @Test("every global option parses before the subcommand as after it; the later one wins")
    func parsing() throws {
        func list(_ arguments: [String]) throws -> GalleryCommand.List {
            try #require(try LabGalleryCLI.parse(arguments) as? GalleryCommand.List)
        }
        let before = try list([
            "--endpoint", "[::1]:7", "--token=t", "--tls", "--timeout", "2.5", "-o", "json", "gallery", "list",
        ])
        let after = try list([
            "gallery", "list", "--endpoint", "[::1]:7", "--token=t", "--tls", "--timeout", "2.5", "-o", "json",
        ])
        for c in [before, after] {
            #expect(
                c.connection.endpoint == ["[::1]:7"] && c.connection.token == "t" && c.connection.tls
                    && c.connection.timeout == 2.5 && c.output.output == .json)
        }
        let both = try list(["--timeout", "1", "gallery", "list", "--timeout", "2"])
        #expect(both.connection.timeout == 2)
        // --endpoint may be repeated: before and after, all count (in that order).
        let endpoints = try list(["--endpoint", "a:1", "gallery", "list", "--endpoint", "b:2"])
        #expect(endpoints.connection.endpoint == ["a:1", "b:2"])
        let watch = try #require(
            try LabGalleryCLI.parse(["--output=json", "replication", "watch", "g/i"]) as? ReplicationCommand.Watch)
        #expect(watch.image == "g/i" && watch.output.output == .json)

        // Usage errors stay usage errors (64), naming the problem.
        for (arguments, fragment) in [
            (["--endpoint", "h:1", "frobnicate"], "--endpoint"), (["--nope", "gallery", "list"], "--nope"),
            (["-o", "yaml", "gallery", "list"], "yaml"),
        ] {
            do {
                _ = try LabGalleryCLI.parse(arguments)
                Issue.record("\(arguments) parsed")
            } catch {
                #expect(LabGalleryCLI.exitCode(forFailure: error) == 64, "\(arguments)")
                #expect(LabGalleryCLI.message(for: error).contains(fragment), "\(LabGalleryCLI.message(for: error))")
            }
        }
    }

    @Test("every option of ConnectionOptions and OutputOptions is in the table (a new one must join it)")
    func tableIsComplete() {
        let names = Set(GlobalOptions.table.flatMap(\.names))
        for command in [ConnectionOptions.self, OutputOptions.self] as [any ParsableArguments.Type] {
            // The help lists every option of the group: each long name must be hoistable.
            let help = OptionNames.long(of: command)
            #expect(help.contains("--endpoint") || help.contains("--output"), "\(help)")
            for name in help where !names.contains(name) {
                Issue.record("\(name) of \(command) is not in GlobalOptions.table")
            }
        }
    }
}

/// The long option names a group of options declares, read from its help text.
enum OptionNames {
    static func long(of group: any ParsableArguments.Type) -> [String] {
        let help = group.helpMessage(columns: 1000)
        var names: [String] = []
        for word in help.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "," || $0 == "[" || $0 == "]" })
        where word.hasPrefix("--") && word.count > 2 {
            let name = String(word.prefix { $0 != "=" && $0 != "<" })
            // Prose in a help text names options too ("With --tls: …"): only whole names count.
            guard name.dropFirst(2).allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else { continue }
            if name != "--help" && !names.contains(name) { names.append(name) }
        }
        return names
    }
}

@Suite("labgallery: the live watch fits the terminal")
struct TerminalWidthTests {
    @Test("width: the terminal's, else a positive COLUMNS, else 80")
    func width() {
        #expect(TerminalWidth.resolve(ioctlColumns: 132, environment: ["COLUMNS": "40"]) == 132)
        #expect(TerminalWidth.resolve(ioctlColumns: 0, environment: ["COLUMNS": "40"]) == 40)
        #expect(TerminalWidth.resolve(ioctlColumns: nil, environment: ["COLUMNS": " 100 "]) == 100)
        for bad in ["", "0", "-3", "wide"] {
            #expect(TerminalWidth.resolve(ioctlColumns: nil, environment: ["COLUMNS": bad]) == 80, "\(bad)")
        }
        #expect(TerminalWidth.resolve(ioctlColumns: nil, environment: [:]) == 80)
    }

    @Test("bars take what the line leaves, 10 to 50 columns; lines are cut to the width less one")
    func bars() throws {
        let fixed = ReplicationDisplay.fixedColumns
        #expect(ReplicationDisplay.barWidth(columns: 80, regionWidth: 5) == 80 - 1 - fixed - 5)
        #expect(ReplicationDisplay.barWidth(columns: 200, regionWidth: 5) == 50)
        #expect(ReplicationDisplay.barWidth(columns: 30, regionWidth: 5) == 10)
        #expect(ReplicationDisplay.fit("abcdef", columns: 7) == "abcdef")
        #expect(ReplicationDisplay.fit("abcdefg", columns: 7) == "abcde…")
        #expect(ReplicationDisplay.fit("abc", columns: 0) == "…")

        for columns in [40, 60, 80, 120, 200] {
            let live = Transcript()
            let display = ReplicationDisplay(mode: .live, write: { live.append($0) }, columns: { columns })
            try display.show(
                ReplicationStatus(
                    image: "galleries/a-rather-long-gallery-name/images/an-even-longer-image-name",
                    aggregatedState: .replicating,
                    regions: [
                        RegionReplication(
                            region: "southcentralus", state: .replicating, bytesCopied: 500, bytesTotal: 1000,
                            progressPercent: 50, error: nil, attempts: 1),
                        RegionReplication(
                            region: "east", state: .failed, bytesCopied: 0, bytesTotal: 1000, progressPercent: 0,
                            error: String(repeating: "unreachable ", count: 20), attempts: 5),
                    ]))
            display.finish()
            let lines = live.value.split(separator: "\n").map { line in
                line.replacingOccurrences(of: "\r\u{1B}[2K", with: "").replacingOccurrences(of: "\u{1B}[?25l", with: "")
                    .replacingOccurrences(of: "\u{1B}[?25h", with: "")
            }.filter { !$0.isEmpty }
            #expect(lines.count == 3, "\(lines)")
            for line in lines { #expect(line.count < columns, "\(columns): \(line)") }
            // Where the line has room for the smallest bar, the bar is as wide as computed and closed.
            guard columns >= 80 else { continue }
            let bar = try #require(lines.first { $0.contains("southcentralus") }?.split(separator: "[").last)
            let barWidth = bar.prefix { $0 == "#" || $0 == "-" }.count
            #expect(barWidth == ReplicationDisplay.barWidth(columns: columns, regionWidth: 14), "\(columns)")
            #expect(bar.dropFirst(barWidth).hasPrefix("]  50.0%"), "\(columns): \(bar)")
        }
    }
}

@Suite("labgallery and labgallery-server --version")
struct VersionTests {
    @Test("both print the version and the commit git gives for this checkout")
    func version() async throws {
        let commit = try await output(["git", "-C", packageRoot.path, "rev-parse", "--short", "HEAD"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!commit.isEmpty)
        let server = packageRoot.appendingPathComponent(".build/debug/labgallery-server").path
        for (program, path) in [("labgallery", cliPath), ("labgallery-server", server)] {
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw CLIMissing(message: "\(path) is missing: `swift build` builds it (make test does)")
            }
            let line = try await output([path, "--version"]).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(line == "\(program) \(BuildInfo.version) (commit \(commit))", "\(line)")
        }
    }

    /// stdout of `argv` (which must exit 0).
    func output(_ argv: [String]) async throws -> String {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("lgv-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let status = try await spawn(argv, stdout: out.path)
        #expect(status == 0, "\(argv)")
        return try String(contentsOf: out, encoding: .utf8)
    }
}

@Suite("labgallery replication watch in a real terminal (tmux)")
struct WatchInterruptTests {
    @Test("bars fit a 60-column terminal; Ctrl-C shows the cursor again and exits 130")
    func interrupt() async throws {
        guard FileManager.default.isExecutableFile(atPath: cliPath) else {
            throw CLIMissing(message: "\(cliPath) is missing: `swift build` builds it (make test does)")
        }
        // 64 KiB/s per region and a 1 MiB image: the watch is still running when Ctrl-C comes.
        try await withLiveServer(replication: slowReplication(bytesPerSecond: 64 << 10)) { s in
            let client = try s.client()
            _ = try await client.createGallery(id: "shared", displayName: "", region: "north")
            let file = try tempImageFile(1 << 20, name: "img.vhd")
            let upload = try await runCLI(
                [
                    "image", "upload", file.path, "--gallery", "shared", "--os-state", "generalized", "--os-type",
                    "linux",
                ],
                server: s)
            #expect(upload.status == 0, "\(upload.stderr)")
            let term = TmuxSession(
                environment: ["LABGALLERY_ENDPOINT": s.endpoint, "LABGALLERY_TOKEN": s.adminToken, "PS1": "$ "],
                directory: s.dataDir, columns: 60)
            try await term.start()
            do {
                // The global options before the subcommand, as an operator types them.
                try await term.type("\(cliPath) --endpoint \(s.endpoint) replication watch shared/img; echo EXIT=$?")
                let bars = try await term.wait {
                    $0.contains("south") && $0.contains("REPLICATING") && $0.contains("#")
                }
                #expect(
                    try await term.tmux(["display", "-p", "-t", "t", "#{cursor_flag}"]).hasPrefix("0"),
                    "the live display hides the cursor")
                for line in bars.split(separator: "\n") where line.contains("[") {
                    #expect(line.count < 60 && line.contains("]"), "one unwrapped line per region: \(line)")
                }
                try await term.tmux(["send-keys", "-t", "t", "C-c"])
                let screen = try await term.wait { finished($0) }
                #expect(screen.split(separator: "\n").contains("EXIT=130"), "\(screen)")
                #expect(
                    try await term.tmux(["display", "-p", "-t", "t", "#{cursor_flag}"]).hasPrefix("1"),
                    "the cursor is visible again")
            } catch {
                await term.kill()
                throw error
            }
            await term.kill()
        }
    }
}
