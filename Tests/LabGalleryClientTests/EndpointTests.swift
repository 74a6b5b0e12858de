import Foundation
import Synchronization
import TestSupport
import Testing

@testable import LabGalleryClient

#if canImport(Glibc)
    import Glibc
#endif

// Issue 12 (client part): a client of several instances spreads its calls, fails over what is
// safe to fail over, and a watch follows onto another instance when its own dies.

@Suite("Several endpoints: spread, failover, watches that move")
struct EndpointTests {
    @Test("endpoint lists: every form, spaces; an empty or malformed entry is named")
    func lists() throws {
        let list = try Endpoint.list("127.0.0.1:1, [::1]:2 ,unix:/run/a.sock,gallery.lab")
        #expect(
            list == [
                Endpoint(host: "127.0.0.1", port: 1), Endpoint(host: "::1", port: 2),
                Endpoint(host: "unix:/run/a.sock", port: 0), Endpoint(host: "gallery.lab", port: 50051),
            ])
        #expect(list.map(\.description) == ["127.0.0.1:1", "[::1]:2", "unix:/run/a.sock", "gallery.lab:50051"])
        for (text, fragments) in [
            ("a:1,,b:2", ["entry 2 is empty"]), ("a:1,host:port", ["entry 2", "host:port", "not a number"]),
            ("a:1,http://b:2", ["entry 2", "not a URL"]), ("a:1,", ["entry 2 is empty"]),
        ] {
            do {
                _ = try Endpoint.list(text)
                Issue.record("\(text) was accepted")
            } catch {
                #expect(error.code == .invalidArgument)
                for f in fragments { #expect(error.message.contains(f), "\(error.message) should say \(f)") }
            }
        }
        // A token in cleartext is refused if any endpoint is off the machine.
        do {
            _ = try LabGalleryClient(endpoints: ["127.0.0.1:1", "gallery.lab:2"], token: "t")
            Issue.record("a cleartext token to gallery.lab was accepted")
        } catch {
            #expect(error.code == .failedPrecondition && error.message.contains("gallery.lab"))
        }
    }

    @Test("the pool: round-robin over the endpoints up; one that failed goes last for its back-off, then comes back")
    func pool() async throws {
        let client = try multiClient(
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], token: "t", endpointBackoff: .seconds(2))
        let pool = client.pool
        #expect(
            [pool.order(), pool.order(), pool.order(), pool.order()] == [
                [0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2],
            ])
        pool.failed(1)
        #expect(pool.isDown(1))
        // Its turn passes to the next one up; it is tried last.
        #expect([pool.order(), pool.order(), pool.order()] == [[2, 0, 1], [2, 0, 1], [0, 2, 1]])
        pool.failed(2)
        #expect(pool.order().suffix(2) == [1, 2], "down endpoints last, the soonest back first")
        try await eventually("endpoint 1 is back after its back-off") { !pool.isDown(1) }
        pool.answered(2)
        #expect(!pool.isDown(2) && Set(pool.order()) == [0, 1, 2])
    }

    @Test("reads are spread round-robin over the instances")
    func spread() async throws {
        let servers = try await liveServers(3)
        defer { for s in servers { s.remove() } }
        // Each instance has its own data here: its gallery `g` says which instance answered.
        for (i, s) in servers.enumerated() {
            _ = try await s.client().createGallery(id: "g", displayName: "s\(i)", region: "north")
        }
        let client = try multiClient(servers.map(\.endpoint), token: servers[0].adminToken)
        var answered: [String: Int] = [:]
        for _ in 0..<30 { answered[try await client.getGallery("g").displayName, default: 0] += 1 }
        #expect(answered == ["s0": 10, "s1": 10, "s2": 10], "\(answered)")
        for s in servers { await s.stop() }
    }

    @Test("with the first instance stopped, reads and writes go through the next; errors name the endpoints")
    func failover() async throws {
        let servers = try await liveServers(2)
        let (a, b) = (servers[0], servers[1])
        defer {
            a.remove()
            b.remove()
        }
        await a.stop()
        // A write whose instance cannot be reached goes to the next (nothing reached a server),
        // as do reads. (A tiny back-off: every call tries the stopped instance again first.)
        let client = try multiClient([a.endpoint, b.endpoint], token: a.adminToken, endpointBackoff: .milliseconds(1))
        for i in 0..<6 { _ = try await client.createGallery(id: "g\(i)", region: "north") }
        #expect(try await client.allGalleries().count == 6)
        #expect(try await b.client().allGalleries().count == 6)
        // So does an upload from a file (read again from the start): two, so one starts at a.
        let file = try tempImageFile(256 << 10)
        defer { try? FileManager.default.removeItem(at: file.deletingLastPathComponent()) }
        for id in ["img1", "img2"] {
            let image = try await client.uploadImage(
                ImageUpload(gallery: "g0", imageID: id, osType: .linux, osState: .generalized), from: file)
            #expect(image.sizeBytes == 256 << 10)
        }

        // Nothing answers: the error names every endpoint tried, within the caller's deadline.
        await b.stop()
        let started = ContinuousClock.now
        do {
            _ = try await client.getGallery("g0", timeout: .seconds(3))
            Issue.record("a read with every instance down succeeded")
        } catch {
            #expect(error.code == .unavailable || error.code == .deadlineExceeded, "\(error)")
            #expect(error.message.contains(a.endpoint) && error.message.contains(b.endpoint), "\(error.message)")
        }
        #expect(ContinuousClock.now - started < .seconds(20), "the deadline bounds the retries")
        await expectClientError(.unavailable, a.endpoint, b.endpoint) {
            _ = try await client.createGallery(id: "late", region: "north")
        }
    }

    @Test("a write that fails UNAVAILABLE after it was sent is not retried elsewhere; a read is")
    func writeNotRetried() async throws {
        let servers = try await liveServers(2)
        let (a, b) = (servers[0], servers[1])
        defer {
            a.remove()
            b.remove()
        }
        let proxy = try LoopbackProxy(upstreamPort: a.port)
        let client = try multiClient(["127.0.0.1:\(proxy.port)", b.endpoint], token: a.adminToken)
        // Round-robin: the 1st call goes through the proxy, the 2nd to b, the 3rd through the proxy.
        _ = try await client.listGalleries()
        _ = try await client.listGalleries()
        proxy.hold()  // the proxy keeps reading but forwards nothing: the request is sent, never answered
        let before = proxy.heldBytes
        let write = Task { try await client.createGallery(id: "once", region: "north") }
        try await eventually("the write reached the proxy") { proxy.heldBytes > before }
        proxy.close()
        do {
            _ = try await write.value
            Issue.record("the write succeeded")
        } catch let error as LabGalleryClientError {
            #expect(error.code == .unavailable, "\(error)")
        }
        await expectClientError(.notFound) { _ = try await b.client().getGallery("once") }
        // A read whose instance dies after sending moves on.
        let proxy2 = try LoopbackProxy(upstreamPort: a.port)
        defer { proxy2.close() }
        let reader = try multiClient(["127.0.0.1:\(proxy2.port)", b.endpoint], token: a.adminToken)
        _ = try await reader.listGalleries()  // through proxy2
        _ = try await b.client().createGallery(id: "on-b", region: "north")
        proxy2.hold()
        let held = proxy2.heldBytes
        _ = try await reader.listGalleries()  // to b
        let read = Task { try await reader.getGallery("on-b") }
        try await eventually("the read reached the proxy") { proxy2.heldBytes > held }
        proxy2.close()
        #expect(try await read.value.name == "galleries/on-b")
        await a.stop()
        await b.stop()
    }

    @Test("a watch through two proxies to one server: kill the one carrying it, it re-opens through the other")
    func watchMoves() async throws {
        // About 8 s of replication (2 MiB at 256 KiB/s): the proxy dies in the middle of it.
        let server = try await LiveServer(replication: slowReplication(bytesPerSecond: 256 << 10))
        defer { server.remove() }
        let p1 = try LoopbackProxy(upstreamPort: server.port)
        let p2 = try LoopbackProxy(upstreamPort: server.port)
        defer {
            p1.close()
            p2.close()
        }
        let setup = try server.client()
        _ = try await setup.createGallery(id: "g", region: "north")
        let image = try await setup.uploadImage(
            ImageUpload(gallery: "g", imageID: "img", osType: .linux, osState: .generalized),
            chunks: AsyncStream { c in
                c.yield(testBytes(2 << 20))
                c.finish()
            })
        let client = try multiClient(["127.0.0.1:\(p1.port)", "127.0.0.1:\(p2.port)"], token: server.adminToken)
        var killed: LoopbackProxy?
        var afterKill = 0
        var last: ReplicationStatus?
        for try await status in client.watchReplication(image: image.name) {
            last = status
            if killed != nil { afterKill += 1 }
            if killed == nil && status.aggregatedState != .completed {
                let carrier = p1.connections > 0 ? p1 : p2
                carrier.close()
                killed = carrier
            }
        }
        let dead = try #require(killed, "a proxy died while the image was still replicating")
        let other = dead === p1 ? p2 : p1
        #expect(last?.aggregatedState == .completed, "the watch ended at COMPLETED: \(String(describing: last))")
        #expect(afterKill > 0 && other.connections >= 1, "the watch re-opened through the other proxy")
        await server.stop()
    }
}

/// `n` servers on loopback that accept the same admin token: the first one's data directory,
/// copied while it is stopped, starts the others (each then keeps its own data).
private func liveServers(_ n: Int) async throws -> [LiveServer] {
    let first = try await LiveServer()
    await first.stop()
    var copies: [URL] = []
    for _ in 1..<n {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgc-\(UUID().uuidString)")
        try await blocking { try FileManager.default.copyItem(at: first.dataDir, to: dir) }
        copies.append(dir)
    }
    try await first.restart()
    var servers = [first]
    for dir in copies { servers.append(try await LiveServer(dataDir: dir)) }
    return servers
}

/// A client of several endpoints with quick retries (a test must not wait out the defaults).
private func multiClient(_ endpoints: [String], token: String, endpointBackoff: Duration = .seconds(1)) throws
    -> LabGalleryClient
{
    var configuration = LabGalleryClient.Configuration(
        endpoints: try endpoints.map { (e) throws(LabGalleryClientError) in try Endpoint(parsing: e) }, token: token,
        retryPolicy: .init(maxAttempts: 5, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(200)))
    configuration.endpointBackoff = endpointBackoff
    configuration.maxEndpointBackoff = endpointBackoff
    return try LabGalleryClient(configuration: configuration)
}
