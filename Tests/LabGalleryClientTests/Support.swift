import Foundation
import LabGalleryClient
import LabGalleryCore
import LabGalleryServer
import TestSupport
import Testing

// LabGalleryCore and LabGalleryClient both name types `Image`, `Gallery`, `ReplicationWatch`…:
// test code uses the client's, and qualifies the core's (`LabGalleryCore.X`).

// The CLI's tests (and their helpers that run the binary) are in Tests/LabGalleryCLITests.

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

    /// Starts a new server on the same port over the same data (replication resumes).
    func restart() async throws {
        server = try await Self.makeServer(dataDir: dataDir, port: port, replication: replication)
        _ = try await server.start()
    }

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

/// Expects `body` to throw a `LabGalleryClientError` with `code` whose message contains `fragments`.
func expectClientError(_ code: LabGalleryClientError.Code, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation,
                       _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected \(code), the call succeeded", sourceLocation: sourceLocation)
    } catch let error as LabGalleryClientError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(error.message.contains(f), "message \"\(error.message)\" should mention \"\(f)\"", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected LabGalleryClientError \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

/// Writes `count` bytes to a temp file.
func tempImageFile(_ count: Int, name: String = "image.vhd") throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgc-img-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let url = dir.appendingPathComponent(name)
    try Data(testBytes(count)).write(to: url)
    return url
}
