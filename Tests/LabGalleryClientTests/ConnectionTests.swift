import Foundation
import LabGalleryClient
import LabGalleryCore
import LabGalleryServer
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

// Issue 11: a client that finds its server (names with several addresses, IPv6 and IPv4,
// Unix sockets, URL-like endpoints refused) and a watch that survives a connection which dies
// silently (keepalive).

@Suite("Connections: finding the server, keepalive")
struct ConnectionTests {
    @Test("endpoint forms: host:port, [v6]:port, unix:/path; URLs are refused with what to write")
    func endpoints() throws {
        #expect(try LabGalleryClient.parseEndpoint("unix:/run/lg.sock") == ("unix:/run/lg.sock", 0))
        #expect(try LabGalleryClient.parseEndpoint("[::1]:9000") == ("::1", 9000))
        for url in ["http://127.0.0.1:50051", "https://gallery.example/", "grpc://h:1"] {
            do {
                _ = try LabGalleryClient.parseEndpoint(url)
                Issue.record("\(url) should be refused")
            } catch {
                #expect(error.code == .invalidArgument)
                #expect(error.message.contains("host:port") && error.message.contains("--tls"), "\(error.message)")
            }
        }
        #expect(throws: LabGalleryClientError.self) { try LabGalleryClient.parseEndpoint("unix:") }
    }

    @Test("localhost reaches a server on 127.0.0.1 and one on ::1")
    func localhost() async throws {
        for host in ["127.0.0.1", "::1"] {
            if host == "::1" && !hasIPv6Loopback() {
                // Skipped only on a machine without an IPv6 loopback (say so in the log).
                print("skip localhost on ::1: this machine has no IPv6 loopback")
                continue
            }
            // "localhost" also names the other loopback address, where another test's server
            // may have the same port number (each family hands out its ports on its own): hold
            // that address and port, so a connection there is refused and the client walks on
            // to this server. If someone holds it already, start this server again elsewhere.
            var attempt = 0
            while true {
                attempt += 1
                let server = try await ConfiguredServer { $0.host = host }
                guard let other = bindLoopback(v6: host == "127.0.0.1", port: UInt16(server.port)) else {
                    await server.stop()
                    try #require(attempt < 50, "the other loopback address at the server's port was always taken")
                    continue
                }
                defer { close(other) }
                let client = try LabGalleryClient(
                    configuration: .init(host: "localhost", port: server.port, token: server.token))
                _ = try await client.createGallery(id: "g", region: "north")
                #expect(try await client.getGallery("g").name == "galleries/g", "via \(host)")
                await server.stop()
                break
            }
        }
    }

    @Test("a Unix domain socket end to end")
    func unixSocket() async throws {
        let path = "/tmp/lgc-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        let server = try await ConfiguredServer { $0.unixSocketPath = path }
        let client = try LabGalleryClient(endpoint: "unix:\(path)", token: server.token)
        _ = try await client.createGallery(id: "u", region: "north")
        #expect(try await client.allGalleries().map(\.name) == ["galleries/u"])
        await server.stop()
        let gone = try LabGalleryClient(endpoint: "unix:\(path)", token: server.token)
        await expectClientError(.unavailable, "unix:\(path)") { _ = try await gone.getGallery("u") }
    }

    @Test("a name that does not resolve is UNAVAILABLE with the reason")
    func unresolvable() async throws {
        let client = try LabGalleryClient(
            configuration: .init(
                host: "no-such-host.invalid", port: 1, token: nil, retryPolicy: .init(maxAttempts: 1)))
        await expectClientError(.unavailable, "no-such-host.invalid") { _ = try await client.getGallery("g") }
    }

    @Test("a watch notices a silently dead connection within the keepalive timeout and resumes to the end")
    func watchSurvivesSilentProxy() async throws {
        // About 8 s of replication (2 MiB at 256 KiB/s): the proxy goes silent in the middle of it.
        let server = try await LiveServer(replication: slowReplication(bytesPerSecond: 256 << 10))
        defer { server.remove() }
        let proxy = try LoopbackProxy(upstreamPort: server.port)
        defer { proxy.close() }
        var configuration = LabGalleryClient.Configuration(
            port: proxy.port, token: server.adminToken,
            retryPolicy: .init(maxAttempts: 400, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(250)))
        // A PING unanswered for 3 s: the frozen connection is found dead within seconds, while a
        // healthy connection to a server starved by the whole suite on 2 loaded cores is not (with
        // 1 s, re-opened connections were declared dead too until the retry budget ran out).
        configuration.keepaliveTime = .seconds(1)
        configuration.keepaliveTimeout = .seconds(3)
        let client = try LabGalleryClient(configuration: configuration)
        _ = try await client.createGallery(id: "g", region: "north")
        let image = try await client.uploadImage(
            ImageUpload(gallery: "g", imageID: "img", osType: .linux, osState: .generalized),
            chunks: AsyncStream { c in
                c.yield(testBytes(2 << 20))
                c.finish()
            })
        var frozeAt: ContinuousClock.Instant?
        var resumedAfter: Duration?
        var endedCompleted = false
        for try await status in client.watchReplication(image: image.name) {
            endedCompleted = status.aggregatedState == .completed
            if let frozeAt, resumedAfter == nil {
                resumedAfter = .now - frozeAt
            }
            if frozeAt == nil && status.aggregatedState != .completed {
                proxy.freeze()  // bytes stop both ways; the sockets stay open
                frozeAt = .now
            }
        }
        #expect(frozeAt != nil, "the proxy went silent while the image was still replicating")
        #expect(endedCompleted, "the terminal state arrived after the re-open")
        // Keepalive 1 s + timeout 3 s, plus ticks, backoff and a loaded machine: well under 60 s.
        // (Without keepalive the watch would wait on the dead connection forever.)
        let took = try #require(resumedAfter)
        #expect(took < .seconds(60), "resumed after \(took)")
        #expect(proxy.connections >= 2, "the watch re-opened on a new connection")
        await server.stop()
    }
}

/// Whether this machine can bind ::1.
func hasIPv6Loopback() -> Bool {
    guard let fd = bindLoopback(v6: true, port: 0) else { return false }
    close(fd)
    return true
}

/// A TCP socket bound (not listening) to 127.0.0.1 or ::1 at `port` (0: any), or nil if that
/// address and port are taken. A connection to it is refused.
func bindLoopback(v6: Bool, port: UInt16) -> Int32? {
    let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    let rc: Int32
    if v6 {
        var a = sockaddr_in6()
        a.sin6_family = sa_family_t(AF_INET6)
        a.sin6_addr = in6addr_loopback
        a.sin6_port = port.bigEndian
        rc = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
    } else {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        a.sin_port = port.bigEndian
        rc = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
    guard rc == 0 else {
        close(fd)
        return nil
    }
    return fd
}

/// A gallery server over a temp directory with a changed configuration (host, Unix socket).
final class ConfiguredServer {
    let server: GalleryServer
    let port: Int
    let token: String
    let dir: URL

    init(_ configure: (inout ServerConfiguration) -> Void) async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let regions = dir.appendingPathComponent("regions.json")
        try Data(testRegions.utf8).write(to: regions)
        var configuration = ServerConfiguration(
            port: 0, dataDirectory: dir, regionsFile: regions, shutdownGracePeriod: .seconds(1))
        configure(&configuration)
        server = try await GalleryServer(configuration: configuration)
        port = try await server.start()
        token = try String(contentsOf: dir.appendingPathComponent("admin.token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func stop() async {
        await server.shutdown()
        try? FileManager.default.removeItem(at: dir)
    }
}
