import Foundation
import GeneratedProtos
import H2RPC
import H2RPCInProcessTransport
import H2RPCNGHTTP2Transport
import LabGalleryCore
import LabGalleryServer
import Synchronization
import TestSupport
import Testing

/// Region catalog JSON with a three-region test geography (home r1, targets r2 and r3).
func writeTestCatalog(in dir: URL) throws -> URL {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let url = dir.appendingPathComponent("regions.json")
    try Data(#"{"geographies": {"Test": ["r1", "r2", "r3"]}}"#.utf8).write(to: url)
    return url
}

/// A GalleryServer with a custom replication config, in-process over a temp data dir.
final class ReplicationServer {
    let dir: URL
    let server: GalleryServer
    let token: String
    private let transport = InProcessTransport()
    private var rpcs: [RPCClient] = []

    init(_ replication: ReplicationConfiguration, configure: (inout ServerConfiguration) -> Void = { _ in })
        async throws
    {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgs-repl-\(UUID().uuidString)")
        let catalog = try writeTestCatalog(in: dir.appendingPathExtension("conf"))
        var configuration = ServerConfiguration(
            host: "127.0.0.1", port: 0, dataDirectory: dir, regionsFile: catalog, shutdownGracePeriod: .seconds(1),
            replication: replication)
        configure(&configuration)
        server = try await GalleryServer(configuration: configuration, transport: transport.server)
        try await server.start()
        token = try String(contentsOf: dir.appendingPathComponent("admin.token"), encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
    }

    func admin() throws -> Clients { try client(token: token) }

    /// Clients sending `token`.
    func client(token: String) throws -> Clients {
        let rpc = RPCClient(transport: transport.makeClient(), interceptors: [Authorization(bearer: token)])
        rpcs.append(rpc)
        return Clients(rpc: rpc)
    }

    /// Files (relative paths) under `relative` in the data directory.
    func files(under relative: String) -> [String] {
        TempDirectory.files(under: dir.appendingPathComponent(relative))
    }

    func stop() async {
        await server.shutdown()
        for r in rpcs { r.close() }
        try? FileManager.default.removeItem(at: dir)
        try? FileManager.default.removeItem(at: dir.appendingPathExtension("conf"))
    }
}

func quickReplication(bandwidth: Int64? = nil, regions: [String: RegionLink] = [:], maxAttempts: Int = 3)
    -> ReplicationConfiguration
{
    ReplicationConfiguration(
        maxAttempts: maxAttempts, backoffInitial: .milliseconds(10), backoffMax: .milliseconds(20),
        defaultLink: RegionLink(bandwidthBytesPerSecond: bandwidth, latencyMilliseconds: 0), regions: regions,
        chunkSize: 64 * 1024, persistEvery: 256 * 1024, progressInterval: .milliseconds(20))
}

@Suite(.serialized) struct ReplicationServiceTests {
    @Test func watchReplicationFirstMessageChangesThenEndsOK() async throws {
        let s = try await ReplicationServer(quickReplication(bandwidth: 1 << 20))
        let c = try s.admin()
        try await c.createGallery("g", region: "r1")
        let image = try await c.upload(gallery: "galleries/g", id: "img", bytes: testBytes(400_000))
        let call = try await c.replication.watchReplication(.init(image: image.name))
        var seen: [Labgallery_V1_ReplicationStatus] = []
        for try await status in call { seen.append(status) }
        #expect(await call.status().status.code == .ok)
        #expect(seen.first?.regions.map(\.region) == ["r2", "r3"], "the first message is the full state")
        #expect(seen.last?.aggregatedState == .completed)
        #expect(
            seen.last?.regions.allSatisfy {
                $0.state == .completed && $0.progressPercent == 100 && $0.bytesCopied == 400_000
            } == true)
        // Already completed: exactly one message, then OK.
        var again = 0
        for try await _ in try await c.replication.watchReplication(.init(image: image.name)) { again += 1 }
        #expect(again == 1)
        #expect(try await c.replication.getReplicationStatus(.init(image: image.name)).aggregatedState == .completed)
        await expectRPC(.notFound) {
            for try await _ in try await c.replication.watchReplication(.init(image: "galleries/g/images/none")) {}
        }
        await expectRPC(.invalidArgument, "image") {
            for try await _ in try await c.replication.watchReplication(.init(image: "bad")) {}
        }

        // The cost report: home + two completed replicas, exact decimal strings.
        let cost = try await c.billing.getGalleryCost(.init(gallery: "galleries/g"))
        #expect(cost.currency == "USD")
        #expect(cost.lines.map(\.region) == ["r1", "r2", "r3"])
        let line = Money("0.048125")!.perGiB(times: 400_000).description
        #expect(cost.lines.allSatisfy { $0.monthlyCost == line && $0.sizeBytes == 400_000 })
        #expect(cost.monthlyTotal == (Money(line)! + Money(line)! + Money(line)!).description)
        #expect(
            cost.oneTimeReplicationEgress
                == (Money("0.02")!.perGiB(times: 400_000) + Money("0.02")!.perGiB(times: 400_000)).description)
        await s.stop()
    }

    @Test func retryReplicationOverRPC() async throws {
        let s = try await ReplicationServer(
            quickReplication(
                regions: ["r2": RegionLink(bandwidthBytesPerSecond: nil, latencyMilliseconds: 0, unreachable: true)],
                maxAttempts: 2))
        let c = try s.admin()
        try await c.createGallery("g", region: "r1")
        let image = try await c.upload(gallery: "galleries/g", id: "img", bytes: testBytes(100_000))
        var last: Labgallery_V1_ReplicationStatus?
        for try await status in try await c.replication.watchReplication(.init(image: image.name)) { last = status }
        #expect(last?.aggregatedState == .failed)
        #expect(last?.regions.first { $0.region == "r2" }?.error.contains("unreachable") == true)
        await expectRPC(.invalidArgument, "regions", "westus") {
            _ = try await c.replication.retryReplication(.init(image: image.name, regions: ["westus"]))
        }
        await expectRPC(.failedPrecondition, "r3", "not FAILED") {
            _ = try await c.replication.retryReplication(.init(image: image.name, regions: ["r3"]))
        }
        let retried = try await c.replication.retryReplication(.init(image: image.name, regions: []))
        #expect(retried.aggregatedState == .replicating)
        #expect(retried.regions.first { $0.region == "r2" }?.state == .pending)
        await s.stop()
    }

    @Test func watchesHonourDeadlinesAndEndUnavailableOnShutdown() async throws {
        let s = try await ReplicationServer(quickReplication(bandwidth: 32 * 1024))
        let c = try s.admin()
        try await c.createGallery("g", region: "r1")
        let image = try await c.upload(gallery: "galleries/g", id: "img", bytes: testBytes(1_000_000))
        await expectRPC(.deadlineExceeded) {
            for try await _ in try await c.replication.watchReplication(
                .init(image: image.name), options: CallOptions(timeout: .milliseconds(300)))
            {}
        }
        let single = try await c.replication.watchReplication(.init(image: image.name))
        let gallery = try await c.replication.watchGalleryReplication(.init(gallery: "galleries/g"))
        var gi = gallery.makeAsyncIterator()
        #expect(try await gi.next()?.image == image.name, "the gallery watch starts with every image")
        var si = single.makeAsyncIterator()
        #expect(try await si.next()?.aggregatedState == .replicating)
        let shutdown = Task { await s.stop() }
        await expectRPC(.unavailable, "reconnect") { while try await gi.next() != nil {} }
        await expectRPC(.unavailable, "reconnect") { while try await si.next() != nil {} }
        await shutdown.value
    }

    /// Issue 10, finding 8: watch streams are capped per caller and in all (RESOURCE_EXHAUSTED),
    /// and a stream that ends gives its slot back.
    @Test func watchersAreCappedPerCallerAndInAll() async throws {
        let s = try await ReplicationServer(quickReplication()) {
            $0.maxWatchers = 3
            $0.maxWatchersPerCaller = 2
        }
        let c = try s.admin()
        try await c.createGallery("g", region: "r1")
        _ = try await c.upload(gallery: "galleries/g", id: "img", bytes: testBytes(1000))
        let reader = try await s.server.core.createToken(principal: "rita", role: .reader)
        let r = try s.client(token: reader.plaintext)
        final class Count: Sendable { let value = Atomic<Int>(0) }
        let count = Count()
        func watch(_ clients: Clients) -> Task<Void, any Error> {
            Task {
                for try await _ in try await clients.replication.watchGalleryReplication(.init(gallery: "galleries/g"))
                {
                    count.value.add(1, ordering: .relaxed)
                    try await Task.sleep(for: .seconds(3600))  // hold the stream open until cancelled
                }
            }
        }
        let first = watch(c)
        let second = watch(c)
        try await eventually("two watches are open") { count.value.load(ordering: .relaxed) == 2 }
        await expectRPC(.resourceExhausted, "per caller") {
            for try await _ in try await c.replication.watchGalleryReplication(.init(gallery: "galleries/g")) {}
        }
        let third = watch(r)
        try await eventually("a third watch is open") { count.value.load(ordering: .relaxed) == 3 }
        await expectRPC(.resourceExhausted, "its limit") {
            for try await _ in try await r.replication.watchGalleryReplication(.init(gallery: "galleries/g")) {}
        }
        first.cancel()
        let fourth = watch(c)
        try await eventually("an ended watch gives its slot back") { count.value.load(ordering: .relaxed) == 4 }
        for t in [second, third, fourth] { t.cancel() }
        await s.stop()
    }

    /// Issue 10, finding 8: watch streams are capped per connection too, whoever the callers
    /// are: a third watch on one connection is RESOURCE_EXHAUSTED, while the same caller on a
    /// second connection may watch.
    @Test func watchersAreCappedPerConnection() async throws {
        let s = try await ReplicationServer(quickReplication()) {
            $0.maxWatchersPerConnection = 2
        }
        let c = try s.admin()
        try await c.createGallery("g", region: "r1")
        _ = try await c.upload(gallery: "galleries/g", id: "img", bytes: testBytes(1000))
        final class Count: Sendable { let value = Atomic<Int>(0) }
        let count = Count()
        func watch(_ clients: Clients) -> Task<Void, any Error> {
            Task {
                for try await _ in try await clients.replication.watchGalleryReplication(.init(gallery: "galleries/g"))
                {
                    count.value.add(1, ordering: .relaxed)
                    try await Task.sleep(for: .seconds(3600))  // hold the stream open until cancelled
                }
            }
        }
        let held = [watch(c), watch(c)]
        try await eventually("two watches are open on one connection") { count.value.load(ordering: .relaxed) == 2 }
        await expectRPC(.resourceExhausted, "per connection") {
            for try await _ in try await c.replication.watchGalleryReplication(.init(gallery: "galleries/g")) {}
        }
        let other = try s.admin()
        let third = watch(other)
        try await eventually("another connection may watch") { count.value.load(ordering: .relaxed) == 3 }
        for t in held + [third] { t.cancel() }
        await s.stop()
    }

    /// Issue 10, finding 7: a watch stream opened with a token that is then revoked ends with
    /// UNAUTHENTICATED (the unknown-token answer) within 5 s.
    @Test func watchesEndWhenTheirTokenIsRevoked() async throws {
        let s = try await ReplicationServer(quickReplication())
        let c = try s.admin()
        try await c.createGallery("g", region: "r1")
        _ = try await c.upload(gallery: "galleries/g", id: "img", bytes: testBytes(1000))
        let reader = try await s.server.core.createToken(principal: "rita", role: .reader)
        let r = try s.client(token: reader.plaintext)
        let opened = Atomic<Bool>(false)
        let ended = Task {
            do {
                for try await _ in try await r.replication.watchGalleryReplication(.init(gallery: "galleries/g")) {
                    opened.store(true, ordering: .releasing)
                }
                return Status.Code.ok
            } catch let e as RPCError { return e.code }
        }
        try await eventually("the watch is open") { opened.load(ordering: .acquiring) }
        try await s.server.core.revokeToken(id: reader.info.id)
        let revoked = ContinuousClock.now
        #expect(try await ended.value == .unauthenticated)
        #expect(ContinuousClock.now - revoked < .seconds(5))
        await s.stop()
    }

    @Test func createLabWaitsForTheReplicaInTheAccountsRegion() async throws {
        let s = try await ReplicationServer(quickReplication(bandwidth: 256 * 1024))
        let c = try s.admin()
        try await c.createGallery("g", region: "r1")
        try await c.createLabAccount("a", region: "r2", gallery: .attachGallery("galleries/g"))
        let image = try await c.upload(gallery: "galleries/g", id: "img", bytes: testBytes(300_000))
        await expectRPC(.failedPrecondition, "r2", "in progress") {
            _ = try await c.labs.createLab(
                .init(labAccount: "labAccounts/a", labId: "l", lab: .init(displayName: "L", templateImage: image.name)))
        }
        for try await _ in try await c.replication.watchReplication(.init(image: image.name)) {}
        let lab = try await c.labs.createLab(
            .init(labAccount: "labAccounts/a", labId: "l", lab: .init(displayName: "L", templateImage: image.name)))
        #expect(lab.templateImage == image.name)
        // Deleting the image removes its replicas.
        _ = try await c.labs.deleteLab(.init(name: lab.name))
        _ = try await c.images.deleteImage(.init(name: image.name))
        #expect(TempDirectory.files(under: s.dir.appendingPathComponent("regions/r2")).isEmpty)
        #expect(TempDirectory.files(under: s.dir.appendingPathComponent("regions/r3")).isEmpty)
        await s.stop()
    }
}

/// kill -9 of a real `labgallery-server` in the middle of replication, then a restart.
@Suite(.serialized) struct ReplicationCrashTests {
    /// Starts the debug binary with extra flags; returns the process and its port.
    static func launch(dataDir: URL, args: [String], name: String) async throws -> (Process, Int, URL) {
        let binary = ServerProcess.binary
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build labgallery-server first")
        let out = dataDir.appendingPathExtension("\(name).stdout")
        let err = dataDir.appendingPathExtension("\(name).stderr")
        try Data().write(to: out)
        try Data().write(to: err)
        let p = Process()
        p.executableURL = binary
        p.arguments = ["--port", "0", "--data-dir", dataDir.path] + args
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        try p.run()
        for _ in 0..<2400 {  // up to 2 minutes: only catches a server that never starts
            let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            if let nl = text.firstIndex(of: "\n"),
                let port = text[..<nl].split(separator: ":").last.flatMap({ Int($0) })
            {
                return (p, port, err)
            }
            guard p.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ProcessFailure("server did not start: \((try? String(contentsOf: err, encoding: .utf8)) ?? "")")
    }

    @Test func killDashNineMidReplicationResumesEveryJobAndNeverRecopiesAFinishedReplica() async throws {
        let tmp = try TempDirectory()
        let dataDir = tmp.url.appendingPathComponent("data")
        let catalog = try writeTestCatalog(in: tmp.url)
        // r2 fast, r3 slow: when r3 is mid-copy, r2 is already COMPLETED.
        let config = tmp.url.appendingPathComponent("replication.json")
        try Data(
            #"""
            {"concurrency": 2, "chunkKiB": 256, "persistEveryKiB": 1024, "progressIntervalMs": 50,
             "defaultLink": {"bandwidthMiBps": 20, "latencyMs": 0}, "regions": {"r3": {"bandwidthMiBps": 4, "latencyMs": 0}}}
            """#.utf8
        ).write(to: config)
        let args = ["--regions-file", catalog.path, "--replication-config", config.path]
        var (server, port, _) = try await Self.launch(dataDir: dataDir, args: args, name: "first")
        let token = try String(contentsOf: dataDir.appendingPathComponent("admin.token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        func connect(_ port: Int) throws -> Clients {
            Clients(
                rpc: RPCClient(
                    transport: try H2ClientTransport(host: "127.0.0.1", port: port),
                    interceptors: [Authorization(bearer: token)]))
        }
        let c = try connect(port)
        try await c.createGallery("g", region: "r1")
        let bytes = testBytes(12 << 20)
        let image = try await c.upload(gallery: "galleries/g", id: "big", bytes: bytes, chunkSize: 1 << 20)

        // Watch until r2 is COMPLETED and r3 has copied a few MiB, then SIGKILL.
        var lastSeen: Labgallery_V1_ReplicationStatus?
        for try await status in try await c.replication.watchReplication(.init(image: image.name)) {
            lastSeen = status
            let r2 = status.regions.first { $0.region == "r2" }
            let r3 = status.regions.first { $0.region == "r3" }
            if r2?.state == .completed, let r3, r3.state == .replicating, r3.bytesCopied >= 3 << 20 { break }
        }
        kill(server.processIdentifier, SIGKILL)
        await waitUntilExit(server)
        c.rpc.close()
        #expect(server.terminationReason == .uncaughtSignal)
        let r3Before = try #require(lastSeen?.regions.first { $0.region == "r3" })
        #expect(r3Before.state == .replicating && r3Before.bytesCopied < r3Before.bytesTotal)

        // What the dead server left: r2's finished replica and r3's persisted offset.
        let rowsBefore = try await replicationRows(dataDir: dataDir, catalog: catalog)
        let r2Blob = try #require(rowsBefore.first { $0.record.region == "r2" }?.blobPath)
        let r3Row = try #require(rowsBefore.first { $0.record.region == "r3" })
        #expect(
            r3Row.record.state == .replicating && r3Row.record.bytesCopied >= 1 << 20 && r3Row.partialPath != nil,
            "progress was persisted before the kill: \(r3Row.record)")
        let r2Attributes = try FileManager.default.attributesOfItem(atPath: dataDir.appendingPathComponent(r2Blob).path)

        // Restart on the same data directory: r3 resumes from its offset and completes; r2 is left alone.
        (server, port, _) = try await Self.launch(dataDir: dataDir, args: args, name: "second")
        let c2 = try connect(port)
        var firstAfter: Labgallery_V1_ReplicationStatus?
        var final: Labgallery_V1_ReplicationStatus?
        for try await status in try await c2.replication.watchReplication(.init(image: image.name)) {
            if firstAfter == nil { firstAfter = status }
            final = status
        }
        c2.rpc.close()
        let r3After = try #require(firstAfter?.regions.first { $0.region == "r3" })
        #expect(r3After.bytesCopied >= r3Row.record.bytesCopied, "resumed, not restarted from zero")
        #expect(r3After.attempts == r3Row.record.attempts, "a resume is the same attempt")
        #expect(final?.aggregatedState == .completed)
        kill(server.processIdentifier, SIGTERM)
        await waitUntilExit(server)

        let rowsAfter = try await replicationRows(dataDir: dataDir, catalog: catalog)
        #expect(
            rowsAfter.first { $0.record.region == "r2" }?.blobPath == r2Blob,
            "the finished replica was not copied again")
        let r2Now = try FileManager.default.attributesOfItem(atPath: dataDir.appendingPathComponent(r2Blob).path)
        #expect(r2Now[.modificationDate] as? Date == r2Attributes[.modificationDate] as? Date)
        #expect(r2Now[.systemFileNumber] as? Int == r2Attributes[.systemFileNumber] as? Int)
        let expected = try await sha256Hex(bytes)
        for row in rowsAfter {
            #expect(row.record.state == .completed && row.partialPath == nil)
            let data = try Data(contentsOf: dataDir.appendingPathComponent(try #require(row.blobPath)))
            let actual = try await sha256Hex(Array(data))
            #expect(actual == expected, "replica in \(row.record.region) matches the image")
        }
        #expect(TempDirectory.files(under: dataDir.appendingPathComponent("regions/r3/partial")).isEmpty)
    }
}

/// The replication rows of `galleries/g/images/big` in a stopped server's data directory.
private func replicationRows(dataDir: URL, catalog: URL) async throws -> [ReplicationRow] {
    try await blocking {
        let core = try LabGalleryService.open(
            dataDirectory: dataDir,
            configuration: LabGalleryConfiguration(regionCatalog: RegionCatalog(contentsOf: catalog)))
        defer { try? core.storage.close() }
        return try core.storage.read { try $0.replicationRows(of: ImageName(gallery: GalleryName(id: "g"), id: "big")) }
    }
}

/// Watch streams a client cancels or drops are gone from the engine (no fan-out to dead streams).
@Suite struct WatchLifetimeTests {
    @Test func cancelledAndDroppedWatchesLeaveTheEngine() async throws {
        let s = try await ReplicationServer(quickReplication(bandwidth: 1 << 20))
        let c = try s.admin()
        try await c.createGallery("g", region: "r1")
        let image = try await c.upload(gallery: "galleries/g", id: "img", bytes: testBytes(4 << 20), chunkSize: 1 << 20)
        // 50 gallery watches and 50 image watches, read until cancelled.
        var tasks: [Task<Void, Never>] = []
        for _ in 0..<50 {
            let gallery = try await c.replication.watchGalleryReplication(.init(gallery: "galleries/g"))
            tasks.append(Task { do { for try await _ in gallery {} } catch {} })
            let single = try await c.replication.watchReplication(.init(image: image.name))
            tasks.append(Task { do { for try await _ in single {} } catch {} })
        }
        try await eventually("100 open watches") { s.server.replication.openWatches == 100 }
        for t in tasks { t.cancel() }
        try await eventually("the cancelled watches to leave the engine") { s.server.replication.openWatches == 0 }
        // Dropped with their connection.
        let other = try s.admin()
        for _ in 0..<20 {
            let call = try await other.replication.watchGalleryReplication(.init(gallery: "galleries/g"))
            tasks.append(Task { do { for try await _ in call {} } catch {} })
        }
        try await eventually("20 open watches") { s.server.replication.openWatches == 20 }
        other.rpc.close()
        try await eventually("the dropped watches to leave the engine") { s.server.replication.openWatches == 0 }
        await s.stop()
    }
}
