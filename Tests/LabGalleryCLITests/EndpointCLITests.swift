import Foundation
import LabGalleryClient
import TestSupport
import Testing

@testable import LabGalleryCLIKit

// Issue 12: the CLI with several endpoints, the first one down.

@Suite("labgallery: several endpoints")
struct EndpointCLITests {
    /// Nothing listens there (port 1 is privileged and unused on a test machine; the path does not exist).
    static let downTCP = "127.0.0.1:1"
    static let downUnix = "unix:/nonexistent/labgallery-\(UUID().uuidString).sock"

    @Test("--endpoint A --endpoint B and LABGALLERY_ENDPOINT=A,B work with A down")
    func firstDown() async throws {
        try await withLiveServer { s in
            var r = try await runCLI(
                ["gallery", "create", "g", "--region", "north", "--endpoint", Self.downTCP, "--endpoint", s.endpoint],
                server: s)
            #expect(r.status == 0, "exit \(r.status): \(r.stderr)")
            for list in ["\(Self.downTCP),\(s.endpoint)", "\(Self.downUnix), \(s.endpoint)"] {
                r = try await runCLI(["gallery", "list", "-o", "json"], server: s, endpoint: list)
                #expect(r.status == 0, "LABGALLERY_ENDPOINT=\(list): exit \(r.status): \(r.stderr)")
                #expect(r.stdout.contains("galleries/g"))
                r = try await runCLI(["gallery", "show", "g"], server: s, endpoint: list)
                #expect(r.status == 0, "\(r.stderr)")
            }
            // Every endpoint down: UNAVAILABLE (exit 24), naming them all.
            r = try await runCLI(
                ["gallery", "list", "--timeout", "5"], server: s, endpoint: "\(Self.downTCP),\(Self.downUnix)")
            #expect(r.status == 24, "\(r.stderr)")
            #expect(r.stderr.contains(Self.downTCP) && r.stderr.contains(Self.downUnix), "\(r.stderr)")
        }
    }

    @Test("a malformed entry in the list is named precisely")
    func malformed() async throws {
        try await withLiveServer { s in
            var r = try await runCLI(["gallery", "list"], server: s, endpoint: "\(s.endpoint),host:port")
            #expect(r.status == 13, "\(r.stderr)")
            #expect(
                r.stderr.contains("LABGALLERY_ENDPOINT") && r.stderr.contains("entry 2")
                    && r.stderr.contains("\"host:port\""), "\(r.stderr)")
            r = try await runCLI(["gallery", "list"], server: s, endpoint: "\(s.endpoint),,\(s.endpoint)")
            #expect(r.status == 13 && r.stderr.contains("entry 2 is empty"), "\(r.stderr)")
            r = try await runCLI(["gallery", "list", "--endpoint", s.endpoint, "--endpoint", "http://x:1"], server: s)
            #expect(r.status == 13 && r.stderr.contains("--endpoint") && r.stderr.contains("http://x:1"), "\(r.stderr)")
        }
    }

    @Test("parsing: --endpoint repeats and accumulates; the admin.token fallback needs every endpoint loopback")
    func options() throws {
        func options(_ arguments: String...) throws -> ConnectionOptions {
            try #require(try LabGalleryCLI.parse(["gallery", "list"] + arguments) as? GalleryCommand.List).connection
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgcli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let adminFile = dir.appendingPathComponent("admin.token").path
        try Data("admin-token\n".utf8).write(to: URL(fileURLWithPath: adminFile))

        var c = try options("--endpoint", "127.0.0.1:1", "--endpoint", "[::1]:2,unix:/run/x.sock")
            .configuration(environment: ["LABGALLERY_ENDPOINT": "ignored:9"], tokenFile: adminFile)
        #expect(c.endpoints.map(\.description) == ["127.0.0.1:1", "[::1]:2", "unix:/run/x.sock"])
        #expect(c.token == "admin-token")
        c = try options().configuration(
            environment: ["LABGALLERY_ENDPOINT": "localhost:1,gallery.lab:2"], tokenFile: adminFile)
        #expect(c.endpoints.count == 2 && c.token == nil, "the local admin token never goes to another machine")
        // Hoisted before the subcommand, --endpoint joins the ones after it.
        let both = try #require(
            try LabGalleryCLI.parse(["--endpoint", "a:1", "gallery", "list", "--endpoint", "b:2"])
                as? GalleryCommand.List)
        #expect(both.connection.endpoint == ["a:1", "b:2"])
        // TLS and the cleartext-token rule apply to every endpoint.
        do {
            _ = try options("--endpoint", "127.0.0.1:1", "--endpoint", "gallery.lab:2", "--token", "t").client()
            Issue.record("a cleartext token to gallery.lab was accepted")
        } catch {
            #expect(LabGalleryCLI.exitCode(forFailure: error) == 19)
        }
        _ = try options("--endpoint", "127.0.0.1:1", "--endpoint", "gallery.lab:2", "--token", "t", "--tls").client()
    }
}
