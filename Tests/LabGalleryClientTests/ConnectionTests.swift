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
            let server = try await ConfiguredServer { $0.host = host }
            let client = try LabGalleryClient(
                configuration: .init(host: "localhost", port: server.port, token: server.token))
            _ = try await client.createGallery(id: "g", region: "north")
            #expect(try await client.getGallery("g").name == "galleries/g", "via \(host)")
            await server.stop()
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
        let proxy = try SilentProxy(upstreamPort: server.port)
        defer { proxy.close() }
        var configuration = LabGalleryClient.Configuration(
            port: proxy.port, token: server.adminToken,
            retryPolicy: .init(maxAttempts: 40, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(250)))
        configuration.keepaliveTime = .seconds(1)
        configuration.keepaliveTimeout = .seconds(1)
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
        // Keepalive 1 s + timeout 1 s, plus ticks, backoff and a loaded machine: well under 20 s.
        // (Without keepalive the watch would wait on the dead connection forever.)
        let took = try #require(resumedAfter)
        #expect(took < .seconds(20), "resumed after \(took)")
        #expect(proxy.connections >= 2, "the watch re-opened on a new connection")
        await server.stop()
    }
}

/// Whether this machine can bind ::1.
func hasIPv6Loopback() -> Bool {
    let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var a = sockaddr_in6()
    a.sin6_family = sa_family_t(AF_INET6)
    a.sin6_addr = in6addr_loopback
    return withUnsafePointer(to: &a) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
        }
    } == 0
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

/// A TCP proxy on loopback that can go silent: `freeze()` stops forwarding on every connection
/// open now, without closing anything (a dead NAT entry, a cable pulled). New connections are
/// forwarded normally.
final class SilentProxy: @unchecked Sendable {
    private let listener: Int32
    let port: Int
    private let upstreamPort: Int
    private let state = Mutex<(pairs: [Pair], accepted: Int, closed: Bool)>(([], 0, false))

    final class Pair: @unchecked Sendable {
        let a: Int32
        let b: Int32
        let frozen = Atomic<Bool>(false)
        let closed = Atomic<Bool>(false)
        init(_ a: Int32, _ b: Int32) {
            self.a = a
            self.b = b
        }
    }

    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var a = Self.loopback(0)
        let rc = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0, listen(fd, 64) == 0 else { throw POSIXError(.EADDRINUSE) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: a.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Connections accepted so far.
    var connections: Int { state.withLock { $0.accepted } }

    func freeze() { state.withLock { s in for p in s.pairs { p.frozen.store(true, ordering: .relaxed) } } }

    func close() {
        let pairs = state.withLock { s -> [Pair] in
            s.closed = true
            return s.pairs
        }
        shutdown(listener, Int32(SHUT_RDWR))
        for p in pairs where !p.closed.exchange(true, ordering: .relaxed) {
            shutdown(p.a, Int32(SHUT_RDWR))
            shutdown(p.b, Int32(SHUT_RDWR))
        }
    }

    private static func loopback(_ port: Int) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = UInt16(port).bigEndian
        a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return a
    }

    private func acceptLoop() {
        while true {
            let c = accept(listener, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                Glibc.close(listener)
                return
            }
            let u = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = Self.loopback(upstreamPort)
            let rc = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(u, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if rc != 0 {
                Glibc.close(c)
                Glibc.close(u)
                continue
            }
            let pair = Pair(c, u)
            let open = state.withLock { s -> Bool in
                s.accepted += 1
                s.pairs.append(pair)
                return !s.closed
            }
            if !open { pair.closed.store(true, ordering: .relaxed) }
            Thread.detachNewThread { Self.pump(pair, from: pair.a, to: pair.b) }
            Thread.detachNewThread { Self.pump(pair, from: pair.b, to: pair.a) }
        }
    }

    /// Copies `from` → `to` until either side closes; while frozen it reads nothing and sends nothing.
    private static func pump(_ pair: Pair, from: Int32, to: Int32) {
        var buf = [UInt8](repeating: 0, count: 65536)
        while !pair.closed.load(ordering: .relaxed) {
            if pair.frozen.load(ordering: .relaxed) {
                usleep(20_000)
                continue
            }
            var pfd = pollfd(fd: from, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 50) <= 0 { continue }
            if pair.frozen.load(ordering: .relaxed) { continue }  // froze while waiting: the bytes stay unread
            let n = buf.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            var sent = 0
            while sent < n {
                let k = buf.withUnsafeBytes { send(to, $0.baseAddress! + sent, n - sent, Int32(MSG_NOSIGNAL)) }
                if k <= 0 { break }
                sent += k
            }
        }
        if !pair.closed.exchange(true, ordering: .relaxed) {
            shutdown(pair.a, Int32(SHUT_RDWR))
            shutdown(pair.b, Int32(SHUT_RDWR))
        }
    }
}
