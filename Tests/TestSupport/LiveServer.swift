import Foundation
import LabGalleryClient
import LabGalleryCore
import LabGalleryServer

// A real gallery server for the client library's and the CLI's tests, which talk to it the way
// their users do: over HTTP/2 on loopback.

/// A small geography so every image has two replicas: `north` (home), `south`, `east`.
public let testRegions = #"{"geographies": {"Testland": ["north", "south", "east"]}}"#

/// A real `GalleryServer` on 127.0.0.1 over a temp data directory (port 0 unless given, so a
/// test can restart a server on the same port and data).
public final class LiveServer {
    public let dataDir: URL
    public let replication: LabGalleryCore.ReplicationConfiguration
    public private(set) var server: GalleryServer
    public private(set) var port: Int
    public let adminToken: String

    public init(replication: LabGalleryCore.ReplicationConfiguration = .init(), dataDir: URL? = nil, port: Int = 0)
        async throws
    {
        self.dataDir =
            dataDir ?? FileManager.default.temporaryDirectory.appendingPathComponent("lgc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.dataDir, withIntermediateDirectories: true)
        let regions = self.dataDir.appendingPathComponent("regions.json")
        if !FileManager.default.fileExists(atPath: regions.path) { try Data(testRegions.utf8).write(to: regions) }
        self.replication = replication
        server = try await Self.makeServer(dataDir: self.dataDir, port: port, replication: replication)
        self.port = try await server.start()
        adminToken = try String(contentsOf: self.dataDir.appendingPathComponent("admin.token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func makeServer(dataDir: URL, port: Int, replication: LabGalleryCore.ReplicationConfiguration)
        async throws -> GalleryServer
    {
        try await GalleryServer(
            configuration: ServerConfiguration(
                host: "127.0.0.1", port: UInt16(port), dataDirectory: dataDir,
                regionsFile: dataDir.appendingPathComponent("regions.json"),
                shutdownGracePeriod: .seconds(1), replication: replication))
    }

    public var endpoint: String { "127.0.0.1:\(port)" }

    /// A library client with the admin token.
    public func client(retry: LabGalleryClient.RetryPolicy = .default) throws -> LabGalleryClient {
        try LabGalleryClient(configuration: .init(port: port, token: adminToken, retryPolicy: retry))
    }

    /// A token of another role.
    public func token(_ principal: String, _ role: LabGalleryCore.Role) async throws -> String {
        try await server.core.createToken(principal: principal, role: role).plaintext
    }

    /// Stops the server (watch streams end with UNAVAILABLE); the data directory stays.
    public func stop() async { await server.shutdown() }

    /// Starts a new server on the same port over the same data (replication resumes).
    public func restart() async throws {
        server = try await Self.makeServer(dataDir: dataDir, port: port, replication: replication)
        _ = try await server.start()
    }

    public func remove() { try? FileManager.default.removeItem(at: dataDir) }
}

/// Runs `body` against a fresh server, stopping it afterwards even when `body` throws.
public func withLiveServer(
    replication: LabGalleryCore.ReplicationConfiguration = .init(), _ body: (LiveServer) async throws -> Void
) async throws {
    let server = try await LiveServer(replication: replication)
    do { try await body(server) } catch {
        await server.stop()
        server.remove()
        throw error
    }
    await server.stop()
    server.remove()
}

/// Replication that takes a while: `bytesPerSecond` to every region, progress published every 100 ms.
public func slowReplication(
    bytesPerSecond: Int64, regions: [String: LabGalleryCore.RegionLink] = [:], maxAttempts: Int = 5
) -> LabGalleryCore.ReplicationConfiguration {
    .init(
        maxAttempts: maxAttempts, backoffInitial: .milliseconds(50), backoffMax: .milliseconds(200),
        defaultLink: .init(bandwidthBytesPerSecond: bytesPerSecond, latencyMilliseconds: 0), regions: regions,
        chunkSize: 64 << 10, persistEvery: 256 << 10, progressInterval: .milliseconds(100))
}

/// Writes `count` bytes to a temp file.
public func tempImageFile(_ count: Int, name: String = "image.vhd") throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgc-img-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let url = dir.appendingPathComponent(name)
    try Data(testBytes(count)).write(to: url)
    return url
}
