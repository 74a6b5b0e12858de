import Foundation
import LabGalleryClient
import LabGalleryCore
import LabGalleryServer
import TestSupport
import Testing

// LabGalleryCore and LabGalleryClient both name types `Image`, `Gallery`, `ReplicationWatch`…:
// test code uses the client's, and qualifies the core's (`LabGalleryCore.X`).

/// The package root (this file is Tests/LabGalleryCLITests/Support.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

// MARK: - Running the CLI binary

/// `.build/debug/labgallery` — the Makefile builds it before the tests.
let cliPath = packageRoot.appendingPathComponent(".build/debug/labgallery").path

struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String

    /// Decodes stdout as JSON (the test parses the output, never string-matches it).
    func json<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(stdout.utf8))
    }
}

/// Runs the CLI with the server's endpoint (or `endpoint`) and admin token in the environment,
/// stdin not a terminal.
func runCLI(
    _ arguments: [String], server: LiveServer, token: String? = nil, stdin: String? = nil, endpoint: String? = nil
) async throws -> CLIResult {
    guard FileManager.default.isExecutableFile(atPath: cliPath) else {
        throw CLIMissing(
            message: "\(cliPath) is missing: build it first with `swift build --product labgallery` (make test does)")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: cliPath)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env["LABGALLERY_ENDPOINT"] = endpoint ?? server.endpoint
    env["LABGALLERY_TOKEN"] = token ?? server.adminToken
    process.environment = env
    // Run where no ./labgallery-data/admin.token can be picked up by accident.
    process.currentDirectoryURL = server.dataDir
    // Output goes to files (no pipe can fill up and block the child).
    let outURL = server.dataDir.appendingPathComponent("cli-\(UUID().uuidString).out")
    let errURL = server.dataDir.appendingPathComponent("cli-\(UUID().uuidString).err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    defer {
        try? FileManager.default.removeItem(at: outURL)
        try? FileManager.default.removeItem(at: errURL)
    }
    let input = Pipe()
    process.standardOutput = try FileHandle(forWritingTo: outURL)
    process.standardError = try FileHandle(forWritingTo: errURL)
    process.standardInput = input
    try await run(process) {
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? input.fileHandleForWriting.close()
    }
    return CLIResult(
        status: process.terminationStatus, stdout: try String(contentsOf: outURL, encoding: .utf8),
        stderr: try String(contentsOf: errURL, encoding: .utf8))
}

/// Runs `process` to its end without blocking a thread: the in-process server under test shares
/// the cooperative pool, so `waitUntilExit()` there could starve it.
func run(_ process: Process, afterLaunch: () -> Void = {}) async throws {
    let exited = AsyncStream<Void> { continuation in
        process.terminationHandler = { _ in
            continuation.yield()
            continuation.finish()
        }
    }
    try process.run()
    afterLaunch()
    for await _ in exited { break }
}

struct CLIMissing: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
