import ArgumentParser
import BuildInfo
import Foundation
import LabGalleryCore
import LabGalleryServer
import Logging

/// `labgallery-server`: serves the gallery API (default command) and manages API tokens.
@main
struct LabGalleryServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "labgallery-server",
        abstract: "Serves the LabGallery API over gRPC (HTTP/2) and manages its API tokens.",
        version: BuildInfo.versionLine(program: "labgallery-server"),
        subcommands: [Serve.self, TokenCommand.self, FsckCommand.self],
        defaultSubcommand: Serve.self
    )
}

/// The data directory option shared by every command.
struct DataDirectoryOption: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Data directory: database, image blobs, admin.token.")
    var path: String = "./labgallery-data"

    var url: URL { URL(fileURLWithPath: path) }
}

/// Where the database is: `--database URL` (PostgreSQL, shared by several instances) or, without
/// it, SQLite in the data directory.
struct DatabaseOption: ParsableArguments {
    @Option(
        name: .customLong("database"),
        help: ArgumentHelp(
            "PostgreSQL URL of a database shared by several instances: postgresql://USER@HOST:PORT/DB, postgresql:///DB?host=SOCKETDIR, or any URL libpq accepts (default: SQLite in --data-dir).",
            valueName: "url"))
    var url: String?

    @Option(help: "Most PostgreSQL connections this process opens (with --database).")
    var databasePoolSize: Int = 8

    func validate() throws {
        guard databasePoolSize >= 1 else { throw ValidationError("--database-pool-size must be at least 1") }
        if let url, url.isEmpty { throw ValidationError("--database needs a URL, e.g. postgresql://USER@HOST:PORT/DB") }
    }
}

/// Log lines go to stderr, every value escaped and capped: `key=value` text
/// or one JSON object per line (`--log-format json`), both by ``SafeLogHandler``;
/// stdout is kept for machine-readable output.
enum Logs {
    /// The formats of `--log-format`.
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    static func bootstrap(level: Logger.Level, format: Format = .text) {
        LoggingSystem.bootstrap { label in
            var handler = SafeLogHandler(label: label, format: format)
            handler.logLevel = level
            return handler
        }
    }
}

extension TemplateImagePolicy: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument {
        case "any": self = .any
        case "generalized-only": self = .generalizedOnly
        default: return nil
        }
    }

    public static var allValueStrings: [String] { ["any", "generalized-only"] }
}

extension Role: ExpressibleByArgument {}

// swift-format-ignore: AvoidRetroactiveConformances
// (swift-log's level parsed by ArgumentParser: neither package can declare it.)
extension Logger.Level: @retroactive ExpressibleByArgument {}
