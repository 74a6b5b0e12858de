import ArgumentParser
import Foundation
import LabGalleryClient

struct ReplicationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replication", abstract: "Show, watch and retry the replication of images across their geography.",
        subcommands: [Status.self, Watch.self, Retry.self])

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an image's replication, one line per region.")
        @Argument(help: "galleries/G/images/I, G/I, or I with --gallery.") var image: String
        @Option(help: "The gallery (for a bare image id).") var gallery: String?
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let status = try await connection.client().getReplicationStatus(
                image: try Names.image(image, gallery: gallery))
            try Output.emit(ReplicationStatusJSON(status), output.output) { status.table }
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Watch replication live: one bar per region (state, percent, rate).",
            discussion: """
                On a terminal the bars are redrawn in place; otherwise a plain line is printed per change \
                of state or 10 % step (with --output json: one JSON ReplicationStatus per line). Exits 0 when \
                every region completed, 2 if any failed. With --gallery it watches every image of the \
                gallery and exits once all of them are done, or runs until interrupted with --follow.
                """)
        @Argument(help: "galleries/G/images/I, G/I, or I with --gallery.") var image: String?
        @Option(help: "Watch every image of this gallery (or the gallery of a bare image id).") var gallery: String?
        @Flag(help: "With --gallery and no image: keep watching until interrupted.") var follow = false
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func validate() throws {
            if image == nil && gallery == nil { throw ValidationError("give an image, or --gallery G") }
        }

        func run() async throws {
            let client = try connection.client()
            let display = ReplicationDisplay(
                mode: output.output == .json ? .json : Console.stdoutIsTerminal ? .live : .plain)
            if display.isLive { InterruptRestoresCursor.install() }
            defer {
                // Also when the stream failed: the cursor must not stay hidden.
                display.finish()
                if display.isLive { InterruptRestoresCursor.uninstall() }
            }
            var last: [String: ReplicationStatus] = [:]
            if let image {
                for try await status in client.watchReplication(image: try Names.image(image, gallery: gallery)) {
                    last[status.image] = status
                    try display.show(status)
                }
            } else if let gallery {
                // The stream never ends by itself: stop once every image that exists now is done.
                let expected = Set(try await client.allImages(gallery: gallery).map(\.name))
                if expected.isEmpty && !follow {
                    Console.err("\(ResourceName.gallery(gallery)) has no images\n")
                    return
                }
                for try await status in client.watchGalleryReplication(gallery: gallery) {
                    last[status.image] = status
                    try display.show(status)
                    // A deleted image is done too; a deleted gallery ends the stream with NOT_FOUND.
                    let done = expected.allSatisfy {
                        last[$0].map { $0.deleted || $0.aggregatedState.isTerminal } == true
                    }
                    if done && !follow { break }
                }
            }
            display.finish()
            let failed = last.values.filter { !$0.deleted }.flatMap { s in
                s.regions.filter { $0.state == .failed }.map { (s.image, $0) }
            }
            if !failed.isEmpty {
                for (image, region) in failed {
                    Console.err(
                        Output.safe(
                            "failed: \(image) in \(region.region): \(region.error ?? "no reason given") (labgallery replication retry \(image))"
                        ) + "\n"
                    )
                }
                throw CLIError(
                    message: "replication failed in \(failed.count) region(s)", exitCode: ExitCodes.replicationFailed)
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Retry an image's failed replication (all failed regions, or --region).")
        @Argument(help: "galleries/G/images/I, G/I, or I with --gallery.") var image: String
        @Option(help: "The gallery (for a bare image id).") var gallery: String?
        @Option(name: .customLong("region"), help: "A region to retry (repeatable; default: every failed region).")
        var regions: [String] = []
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let status = try await connection.client().retryReplication(
                image: try Names.image(image, gallery: gallery), regions: regions)
            try Output.emit(ReplicationStatusJSON(status), output.output) { status.table }
        }
    }
}

/// Draws replication progress: live bars redrawn in place with ANSI cursor movement on a
/// terminal, plain lines per meaningful change otherwise, or one JSON document per status.
final class ReplicationDisplay {
    enum Mode { case live, plain, json }

    private struct Rate {
        var bytes: Int64
        var at: ContinuousClock.Instant
        var perSecond: Double = 0
    }

    private let mode: Mode
    private let write: (String) -> Void
    /// The terminal's width, asked on every live redraw.
    private let columns: () -> Int
    private var order: [String] = []  // images in order of appearance
    private var statuses: [String: ReplicationStatus] = [:]
    private var rates: [String: Rate] = [:]  // key: image + " " + region
    private var printed: [String: String] = [:]  // plain mode: last state/decile per region
    private var drawnLines = 0
    private var finished = false

    /// A display in `mode` writing to `write` (stdout by default), its live bars fitted to
    /// `columns` (stdout's terminal width by default).
    init(
        mode: Mode, write: @escaping (String) -> Void = { Console.out($0) },
        columns: @escaping () -> Int = TerminalWidth.current
    ) {
        self.mode = mode
        self.write = write
        self.columns = columns
    }

    /// Columns of a live line besides the region name and the bar: the indent, the state, the
    /// brackets, the percent, the separators and room for a rate (`1023.9 MiB/s`).
    static let fixedColumns = 2 + 2 + 11 + 2 + 2 + 7 + 2 + 12

    /// The bar's width in a terminal `columns` wide whose longest region name is `regionWidth`:
    /// what is left of the line (one column spare, so the last column never wraps), 10 to 50.
    static func barWidth(columns: Int, regionWidth: Int) -> Int {
        min(50, max(10, columns - 1 - fixedColumns - regionWidth))
    }

    /// `line` cut to fit in `columns` less one (ending in "…" when cut): a line that wrapped would
    /// break the count of lines the next redraw moves up over.
    static func fit(_ line: String, columns: Int) -> String {
        let room = max(columns - 1, 1)
        guard line.count > room else { return line }
        return String(line.prefix(room - 1)) + "…"
    }

    func show(_ status: ReplicationStatus) throws {
        if statuses[status.image] == nil { order.append(status.image) }
        statuses[status.image] = status
        updateRates(status)
        switch mode {
        case .json:
            write(try Output.json(ReplicationStatusJSON(status), pretty: false) + "\n")
        case .plain:
            for r in status.regions {
                let key = "\(status.image) \(r.region)"
                let mark = "\(r.state.rawValue) \(Int(r.progressPercent / 10))"
                guard printed[key] != mark else { continue }
                printed[key] = mark
                write(
                    Output.safe(
                        "\(status.image)  \(r.region)  \(r.state.rawValue)  \(String(format: "%.0f%%", r.progressPercent))  \(rateText(key, r))"
                    ) + "\n"
                )
            }
            if status.aggregatedState.isTerminal, printed[status.image] != status.aggregatedState.rawValue {
                printed[status.image] = status.aggregatedState.rawValue
                write(Output.safe("\(status.image)  \(status.aggregatedState.rawValue)") + "\n")
            }
        case .live:
            redraw()
        }
    }

    /// Whether the display redraws in place (and hides the cursor meanwhile).
    var isLive: Bool { mode == .live }

    /// Shows the cursor again if a redraw hid it (once; later calls write nothing).
    func finish() {
        guard mode == .live, drawnLines > 0, !finished else { return }
        finished = true
        write("\u{1B}[?25h")
    }

    private func updateRates(_ status: ReplicationStatus) {
        let now = ContinuousClock.now
        for r in status.regions {
            let key = "\(status.image) \(r.region)"
            guard var rate = rates[key] else {
                rates[key] = Rate(bytes: r.bytesCopied, at: now)
                continue
            }
            let dt = now - rate.at
            let seconds = Double(dt.components.seconds) + Double(dt.components.attoseconds) / 1e18
            if r.state != .replicating {
                rate.perSecond = 0
            } else if seconds >= 0.05, r.bytesCopied >= rate.bytes {
                let instant = Double(r.bytesCopied - rate.bytes) / seconds
                rate.perSecond = rate.perSecond == 0 ? instant : 0.7 * rate.perSecond + 0.3 * instant  // smoothed
            } else {
                continue  // too soon to measure: keep the reference point
            }
            rate.bytes = r.bytesCopied
            rate.at = now
            rates[key] = rate
        }
    }

    private func rateText(_ key: String, _ r: RegionReplication) -> String {
        guard r.state == .replicating, let rate = rates[key], rate.perSecond > 0 else { return "" }
        return Output.rate(rate.perSecond)
    }

    private func redraw() {
        let columns = columns()
        var lines: [String] = []
        for image in order {
            guard let status = statuses[image] else { continue }
            lines.append(Output.safe("\(image)  \(status.aggregatedState.rawValue)"))
            let width = status.regions.map(\.region.count).max() ?? 0
            let barWidth = Self.barWidth(columns: columns, regionWidth: width)
            for r in status.regions {
                let filled = Int((min(max(r.progressPercent, 0), 100) / 100 * Double(barWidth)).rounded(.down))
                let bar =
                    "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: barWidth - filled) + "]"
                var line =
                    "  " + r.region.padding(toLength: width, withPad: " ", startingAt: 0)
                    + "  " + r.state.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)
                    + "  " + bar + String(format: " %5.1f%%", r.progressPercent)
                    + "  " + rateText("\(image) \(r.region)", r)
                if let error = r.error, r.state == .failed { line += "  " + error }
                lines.append(Output.safe(line))
            }
        }
        // Move up over what was drawn before and overwrite it line by line.
        var text = drawnLines == 0 ? "\u{1B}[?25l" : "\u{1B}[\(drawnLines)A"
        for line in lines { text += "\r\u{1B}[2K" + Self.fit(line, columns: columns) + "\n" }
        drawnLines = lines.count
        write(text)
    }
}
