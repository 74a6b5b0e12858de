import ArgumentParser
import Foundation
import LabGalleryClient
import Synchronization

extension OSType: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument.lowercased() {
        case "windows": self = .windows
        case "linux": self = .linux
        default: return nil
        }
    }
    public static var allValueStrings: [String] { ["windows", "linux"] }
}

extension OSState: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument.lowercased() {
        case "generalized": self = .generalized
        case "specialized": self = .specialized
        default: return nil
        }
    }
    public static var allValueStrings: [String] { ["generalized", "specialized"] }
}

struct ImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Upload, list, show, enable, disable and delete images.",
        subcommands: [Upload.self, List.self, Show.self, Enable.self, Disable.self, Delete.self])

    struct Upload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload an image file into a gallery, with a progress bar (bytes, rate, ETA) on stderr.")
        @Argument(help: "The image file.", completion: .file()) var file: String
        @Option(help: "The gallery to store into.") var gallery: String
        @Option(help: "generalized or specialized.") var osState: OSState
        @Option(help: "windows or linux.") var osType: OSType
        @Option(help: "The image id (default: the file name, lower-cased, without extension).") var id: String?
        @Option(help: "A human-readable name.") var displayName = ""
        @Option(help: "Expected lower-case hex SHA-256; the server stores nothing on a mismatch.") var sha256: String?
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let url = URL(fileURLWithPath: file)
            let imageID = id ?? Self.defaultID(url)
            let bar = UploadProgressBar(terminal: Console.stderrIsTerminal)
            let image = try await connection.client().uploadImage(
                ImageUpload(
                    gallery: gallery, imageID: imageID, displayName: displayName, osType: osType, osState: osState,
                    sha256: sha256),
                from: url, progress: { bar.update($0) })
            bar.finish()
            try Output.emit(ImageJSON(image), output.output) { Output.fields(image.fields) }
        }

        /// `Ubuntu_22.04.vhd` → `ubuntu-22-04`: the id rules are 1–63 of [a-z0-9-], starting with a letter.
        static func defaultID(_ url: URL) -> String {
            let base = url.deletingPathExtension().lastPathComponent.lowercased()
            let mapped = String(base.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "-" })
            let trimmed = mapped.split(separator: "-").joined(separator: "-")
            let id = trimmed.first?.isLetter == true ? trimmed : "image-" + trimmed
            return String(id.prefix(63))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "List the images of a gallery, or of a lab account's attached gallery with whether each is enabled and available to create labs now."
        )
        @Option(help: "The gallery.") var gallery: String?
        @Option(help: "The lab account.") var labAccount: String?
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func validate() throws {
            if (gallery == nil) == (labAccount == nil) {
                throw ValidationError("give exactly one of --gallery and --lab-account")
            }
        }

        func run() async throws {
            let client = try connection.client()
            if let gallery {
                let images = try await client.allImages(gallery: gallery)
                try Output.emit(ImageList(images), output.output) { Output.table(Image.headers, images.map(\.row)) }
            } else if let labAccount {
                let images = try await client.listLabAccountImages(labAccount: labAccount)
                try Output.emit(LabAccountImageList(images), output.output) {
                    Output.table(Image.headers + LabAccountImage.headers, images.map { $0.image.row + $0.row })
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an image.")
        @Argument(help: "galleries/G/images/I, G/I, or I with --gallery.") var image: String
        @Option(help: "The gallery (for a bare image id).") var gallery: String?
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let image = try await connection.client().getImage(try Names.image(image, gallery: gallery))
            try Output.emit(ImageJSON(image), output.output) { Output.fields(image.fields) }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable images for a lab account (all or nothing).")
        @OptionGroup var args: EnableArguments
        func run() async throws { try await args.run(enabled: true) }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable images for a lab account (all or nothing).")
        @OptionGroup var args: EnableArguments
        func run() async throws { try await args.run(enabled: false) }
    }

    struct EnableArguments: ParsableArguments {
        @Option(help: "The lab account.") var labAccount: String
        @Argument(help: "Images: full names, G/I, or ids in the account's attached gallery.") var images: [String]
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func validate() throws {
            if images.isEmpty { throw ValidationError("name at least one image") }
        }

        func run(enabled: Bool) async throws {
            let client = try connection.client()
            var names: [String] = []
            for ref in images { names.append(try await Names.image(ref, labAccount: labAccount, client: client)) }
            let result = try await client.setImagesEnabled(names, enabled: enabled, labAccount: labAccount)
            try Output.emit(LabAccountImageList(result), output.output) {
                Output.table(["NAME"] + LabAccountImage.headers, result.map { [$0.image.name] + $0.row })
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an image (refused while a lab uses it).")
        @Argument(help: "galleries/G/images/I, G/I, or I with --gallery.") var image: String
        @Option(help: "The gallery (for a bare image id).") var gallery: String?
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let full = try Names.image(image, gallery: gallery)
            try await connection.client().deleteImage(full)
            try Output.emit(Deleted(deleted: full), output.output) { "deleted \(full)\n" }
        }
    }
}

/// The upload progress line on stderr: redrawn in place (at most 10 times a second) on a
/// terminal, a plain line per 10 % otherwise.
final class UploadProgressBar: Sendable {
    private struct State {
        var start = ContinuousClock.now
        var lastDraw: ContinuousClock.Instant? = nil
        var lastDecile = -1
        var last = UploadProgress(bytesSent: 0, totalBytes: nil)
    }
    private let terminal: Bool
    private let state = Mutex(State())

    init(terminal: Bool) { self.terminal = terminal }

    func update(_ p: UploadProgress) {
        let line: String? = state.withLock { s in
            s.last = p
            let now = ContinuousClock.now
            let total = p.totalBytes ?? 0
            let fraction = total > 0 ? Double(p.bytesSent) / Double(total) : 0
            if terminal {
                if let last = s.lastDraw, now - last < .milliseconds(100), p.bytesSent != total { return nil }
                s.lastDraw = now
                return "\r\u{1B}[2K" + Self.render(p, elapsed: now - s.start, bar: true)
            }
            let decile = Int(fraction * 10)
            guard decile != s.lastDecile else { return nil }
            s.lastDecile = decile
            return "upload: " + Self.render(p, elapsed: now - s.start, bar: false) + "\n"
        }
        if let line { Console.err(line) }
    }

    func finish() {
        if terminal { Console.err("\n") }
    }

    static func render(_ p: UploadProgress, elapsed: Duration, bar: Bool) -> String {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rate = seconds > 0 ? Double(p.bytesSent) / seconds : 0
        guard let total = p.totalBytes, total > 0 else {
            return "\(Output.bytes(p.bytesSent))  \(Output.rate(rate))"
        }
        let fraction = min(1, Double(p.bytesSent) / Double(total))
        let eta = rate > 0 ? Double(total - p.bytesSent) / rate : .infinity
        let width = 30
        let filled = Int(fraction * Double(width))
        let barText =
            bar
            ? "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] " : ""
        return barText + String(format: "%3.0f%%", fraction * 100)
            + "  \(Output.bytes(p.bytesSent))/\(Output.bytes(total))  \(Output.rate(rate))  ETA \(Output.duration(eta))"
    }
}
