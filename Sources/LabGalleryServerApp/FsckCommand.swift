import ArgumentParser
import Blocking
import Foundation
import LabGalleryCore
import LabGalleryServer

/// `labgallery-server fsck --data-dir D`: checks the database against the disk.
///
/// Reads only (safe beside a running server). Exit 0 when consistent, 1 when a problem was found
/// (missing or corrupt blobs, images or replicas outside the region catalog), 2 when the check
/// itself could not run.
struct FsckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck",
        abstract: "Check the database against the blobs on disk (every blob's SHA-256 included).",
        discussion: """
            Prints one line per problem ("problem: …") and per harmless finding ("warning: …"), then a \
            summary. Exit status: 0 consistent, 1 problems found, 2 the check could not run.
            """
    )

    @OptionGroup var dataDir: DataDirectoryOption

    @Option(help: "JSON region catalog the server runs with (default: the built-in one).")
    var regionsFile: String?

    func run() async throws {
        let report: FsckReport
        do {
            let catalog =
                try regionsFile.map { (path) throws(LabGalleryError) in
                    try RegionCatalog(contentsOf: URL(fileURLWithPath: path))
                } ?? .builtIn
            let dataDirectory = dataDir.url
            report = try await BlockingExecutor.shared.run { () throws(LabGalleryError) in
                guard FileManager.default.fileExists(atPath: DataLayout(root: dataDirectory).databaseURL.path) else {
                    throw LabGalleryError.failedPrecondition(
                        message: "no database in \(dataDirectory.path); nothing to check")
                }
                return try LabGalleryService.open(
                    dataDirectory: dataDirectory,
                    configuration: LabGalleryConfiguration(regionCatalog: catalog)
                ).fsck()
            }
        } catch {
            let message = (error as? LabGalleryError)?.message ?? "\(error)"
            FileHandle.standardError.write(Data("labgallery-server fsck: \(message)\n".utf8))
            throw ExitCode(2)
        }
        for p in report.problems { print("problem: \(p)") }
        for w in report.warnings { print("warning: \(w)") }
        print(
            "\(report.blobsChecked) blob(s), \(report.bytesChecked) byte(s) checked: \(report.problems.count) problem(s), \(report.warnings.count) warning(s)"
        )
        fflush(nil)
        if !report.isClean { throw ExitCode(1) }
    }
}
