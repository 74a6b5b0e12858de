import Foundation
import LabGalleryClient
import LabGalleryCore
import LabGalleryServer
import TestSupport
import Testing

// LabGalleryCore and LabGalleryClient both name types `Image`, `Gallery`, `ReplicationWatch`…:
// test code uses the client's, and qualifies the core's (`LabGalleryCore.X`).
//
// `LiveServer` is the one of Tests/LabGalleryClientTests/Support.swift (a test target cannot
// import another), kept to what the CLI tests use.

/// The package root (this file is Tests/LabGalleryCLITests/Support.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A small geography so every image has two replicas: `north` (home), `south`, `east`.
let testRegions = #"{"geographies": {"Testland": ["north", "south", "east"]}}"#

/// A real `GalleryServer` on 127.0.0.1 over a temp data directory (port 0 unless given, so a
/// test can restart a server on the same port and data).
final class LiveServer {
    let dataDir: URL
    let replication: LabGalleryCore.ReplicationConfiguration
    private(set) var server: GalleryServer
    private(set) var port: Int
    let adminToken: String

    init(replication: LabGalleryCore.ReplicationConfiguration = .init(), dataDir: URL? = nil, port: Int = 0) async throws {
        self.dataDir = dataDir ?? FileManager.default.temporaryDirectory.appendingPathComponent("lgc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.dataDir, withIntermediateDirectories: true)
        let regions = self.dataDir.appendingPathComponent("regions.json")
        if !FileManager.default.fileExists(atPath: regions.path) { try Data(testRegions.utf8).write(to: regions) }
        self.replication = replication
        server = try await Self.makeServer(dataDir: self.dataDir, port: port, replication: replication)
        self.port = try await server.start()
        adminToken = try String(contentsOf: self.dataDir.appendingPathComponent("admin.token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func makeServer(dataDir: URL, port: Int, replication: LabGalleryCore.ReplicationConfiguration) async throws -> GalleryServer {
        try await GalleryServer(configuration: ServerConfiguration(
            host: "127.0.0.1", port: UInt16(port), dataDirectory: dataDir,
            regionsFile: dataDir.appendingPathComponent("regions.json"),
            shutdownGracePeriod: .seconds(1), replication: replication))
    }

    var endpoint: String { "127.0.0.1:\(port)" }

    /// A library client with the admin token.
    func client(retry: LabGalleryClient.RetryPolicy = .default) throws -> LabGalleryClient {
        try LabGalleryClient(configuration: .init(port: port, token: adminToken, retryPolicy: retry))
    }

    /// A token of another role.
    func token(_ principal: String, _ role: LabGalleryCore.Role) async throws -> String {
        try await server.core.createToken(principal: principal, role: role).plaintext
    }

    /// Stops the server (watch streams end with UNAVAILABLE); the data directory stays.
    func stop() async { await server.shutdown() }

    func remove() { try? FileManager.default.removeItem(at: dataDir) }
}

/// Runs `body` against a fresh server, stopping it afterwards even when `body` throws.
func withLiveServer(replication: LabGalleryCore.ReplicationConfiguration = .init(), _ body: (LiveServer) async throws -> Void) async throws {
    let server = try await LiveServer(replication: replication)
    do { try await body(server) } catch {
        await server.stop(); server.remove()
        throw error
    }
    await server.stop(); server.remove()
}

/// Replication that takes a while: `bytesPerSecond` to every region, progress published every 100 ms.
func slowReplication(bytesPerSecond: Int64, regions: [String: LabGalleryCore.RegionLink] = [:], maxAttempts: Int = 5) -> LabGalleryCore.ReplicationConfiguration {
    .init(maxAttempts: maxAttempts, backoffInitial: .milliseconds(50), backoffMax: .milliseconds(200),
          defaultLink: .init(bandwidthBytesPerSecond: bytesPerSecond, latencyMilliseconds: 0), regions: regions,
          chunkSize: 64 << 10, persistEvery: 256 << 10, progressInterval: .milliseconds(100))
}

/// Writes `count` bytes to a temp file.
func tempImageFile(_ count: Int, name: String = "image.vhd") throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgc-img-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let url = dir.appendingPathComponent(name)
    try Data(testBytes(count)).write(to: url)
    return url
}

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

/// Runs the CLI with the server's endpoint and admin token in the environment, stdin not a terminal.
func runCLI(_ arguments: [String], server: LiveServer, token: String? = nil, stdin: String? = nil) async throws -> CLIResult {
    guard FileManager.default.isExecutableFile(atPath: cliPath) else {
        throw CLIMissing(message: "\(cliPath) is missing: build it first with `swift build --product labgallery` (make test does)")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: cliPath)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env["LABGALLERY_ENDPOINT"] = server.endpoint
    env["LABGALLERY_TOKEN"] = token ?? server.adminToken
    process.environment = env
    // Run where no ./labgallery-data/admin.token can be picked up by accident.
    process.currentDirectoryURL = server.dataDir
    // Output goes to files (no pipe can fill up and block the child).
    let outURL = server.dataDir.appendingPathComponent("cli-\(UUID().uuidString).out")
    let errURL = server.dataDir.appendingPathComponent("cli-\(UUID().uuidString).err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: outURL); try? FileManager.default.removeItem(at: errURL) }
    let input = Pipe()
    process.standardOutput = try FileHandle(forWritingTo: outURL)
    process.standardError = try FileHandle(forWritingTo: errURL)
    process.standardInput = input
    try await run(process) {
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? input.fileHandleForWriting.close()
    }
    return CLIResult(status: process.terminationStatus, stdout: try String(contentsOf: outURL, encoding: .utf8),
                     stderr: try String(contentsOf: errURL, encoding: .utf8))
}

/// Runs `process` to its end without blocking a thread: the in-process server under test shares
/// the cooperative pool, so `waitUntilExit()` there could starve it.
func run(_ process: Process, afterLaunch: () -> Void = {}) async throws {
    let exited = AsyncStream<Void> { continuation in
        process.terminationHandler = { _ in continuation.yield(); continuation.finish() }
    }
    try process.run()
    afterLaunch()
    for await _ in exited { break }
}

struct CLIMissing: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

