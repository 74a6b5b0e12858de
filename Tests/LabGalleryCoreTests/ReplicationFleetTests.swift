import Foundation
import LabGalleryPostgres
import Synchronization
import TestSupport
import Testing

@testable import LabGalleryCore

/// Six regions in one geography: an image stored in f1 has five replication jobs.
let fleetCatalog = try! RegionCatalog(geographies: ["Fleet": ["f1", "f2", "f3", "f4", "f5", "f6"]])

/// Short leases so takeovers happen within a test: a 4 s lease renewed every 0.5 s; writes stop
/// 1.5 s before it could expire (2.5 s without a renewal: a loaded machine never gets there).
func fleetReplication(_ id: String, concurrency: Int, bandwidth: Int64?) -> ReplicationConfiguration {
    var c = ReplicationConfiguration(
        concurrency: concurrency, maxAttempts: 5, backoffInitial: .milliseconds(10), backoffMax: .milliseconds(40),
        defaultLink: RegionLink(bandwidthBytesPerSecond: bandwidth, latencyMilliseconds: 0),
        chunkSize: 64 * 1024, persistEvery: 128 * 1024, progressInterval: .milliseconds(10))
    c.fleet = ReplicationFleetSettings(
        instanceID: id, leaseDuration: .seconds(4), renewInterval: .milliseconds(500),
        claimInterval: .milliseconds(100), safetyMargin: .milliseconds(1500), refreshInterval: .seconds(1),
        publishInterval: .milliseconds(100))
    return c
}

/// Every chunk write of every engine, in the order they happened (the test hook's view).
final class WriteLog: Sendable {
    struct Write: Sendable {
        var engine: String
        var job: String
        var epoch: Int64
        var offset: Int64
    }
    private let writes = Mutex<[Write]>([])
    var all: [Write] { writes.withLock { $0 } }
    func observe(_ engine: ReplicationEngine) {
        let id = engine.instanceID ?? "?"
        engine.observeWrites { [self] job, epoch, offset in
            writes.withLock { $0.append(Write(engine: id, job: job, epoch: epoch, offset: offset)) }
        }
    }
    /// Per job, the engines that wrote it, in order of their first write.
    func holders() -> [String: [String]] {
        var out: [String: [String]] = [:]
        for w in all where out[w.job]?.last != w.engine { out[w.job, default: []].append(w.engine) }
        return out
    }
}

/// Instances over one data directory and one database: each its own service (its own SQLite
/// connection or PostgreSQL pool, its own hooks) and fleet engine, one change feed between them
/// (as LISTEN/NOTIFY is; `PostgresChangeFeedTests` tests that one).
final class Fleet: Sendable {
    let f: Fixture
    let feed = InProcessChangeFeed()
    let log = WriteLog()

    init(_ engine: StorageEngine) async throws {
        f = try await Fixture(LabGalleryConfiguration(regionCatalog: fleetCatalog), engine: engine)
        try await f.gallery("g", region: "f1")
    }

    /// A new instance: a service on its own connection to the shared database, and its engine.
    func instance(_ id: String, concurrency: Int, bandwidth: Int64? = 512 * 1024, start: Bool = true) async throws
        -> (service: LabGalleryService, engine: ReplicationEngine)
    {
        let dir = f.dir
        let url = f.database?.url
        let service = try await blocking {
            let layout = DataLayout(root: dir)
            let storage: any Storage =
                try url.map { try PostgresStorage(url: $0) } ?? SQLiteStorage(path: layout.databaseURL.path)
            return LabGalleryService(
                storage: storage, layout: layout, configuration: LabGalleryConfiguration(regionCatalog: fleetCatalog))
        }
        let engine = ReplicationEngine(
            service: service, configuration: fleetReplication(id, concurrency: concurrency, bandwidth: bandwidth),
            changeFeed: feed)
        log.observe(engine)
        if start { try await startEngine(engine) }
        return (service, engine)
    }

    func rows(_ image: String) async throws -> [ReplicationRow] {
        let n = try ImageName(parsing: image, field: "image")
        return try await blocking { try f.service.storage.read { try $0.replicationRows(of: n) } }
    }

    /// Every replica of `image` is COMPLETED and hashes to the image's SHA-256.
    func expectVerified(_ image: Image) async throws {
        let rows = try await rows(image.name)
        #expect(rows.count == 5)
        for row in rows {
            #expect(row.record.state == .completed, "\(row.record)")
            let blob = try #require(row.blobPath)
            #expect(try await sha256Hex(of: f.dir.appendingPathComponent(blob)) == image.sha256)
        }
    }
}

/// Every status of an image watch on `service` until it ends (a COMPLETED or FAILED one).
func watchToEnd(_ service: LabGalleryService, _ image: String) async throws -> [ReplicationStatus] {
    try await watchAll(service, image)
}

@Suite(.serialized) struct ReplicationFleetTests {
    @Test(arguments: StorageEngine.allCases) func eachJobIsCopiedByExactlyOneOfThreeEngines(_ engine: StorageEngine)
        async throws
    {
        let fleet = try await Fleet(engine)
        let a = try await fleet.instance("A", concurrency: 2)
        let b = try await fleet.instance("B", concurrency: 2)
        let c = try await fleet.instance("C", concurrency: 2)
        let bytes = pattern(400_000, multiplier: 29, offset: 2)
        let image = try await fleet.f.upload("galleries/g", "img", bytes: bytes, chunk: 200_000)
        // Watched on C, stored through the fixture's service (no engine): the work runs on A and B or C.
        let seen = try await watchToEnd(c.service, image.name)
        let last = try #require(seen.last)
        #expect(last.aggregatedState == .completed && last.regions.allSatisfy { $0.state == .completed })
        try await fleet.expectVerified(image)
        let holders = fleet.log.holders()
        #expect(holders.count == 5 && holders.values.allSatisfy { $0.count == 1 }, "\(holders)")
        #expect(a.engine.bytesCopied + b.engine.bytesCopied + c.engine.bytesCopied == 5 * 400_000)
        #expect(Set(holders.values.flatMap { $0 }).count >= 2, "the jobs spread over the engines")
        for e in [a.engine, b.engine, c.engine] { await e.stop() }
    }

    @Test(arguments: StorageEngine.allCases) func aKilledInstancesJobsAreTakenOverAndWatchersOnAnotherSeeTheEnd(
        _ engine: StorageEngine
    ) async throws {
        let fleet = try await Fleet(engine)
        // A is slow (a job takes ~9 s), the takers copy at disk speed.
        let a = try await fleet.instance("A", concurrency: 8, bandwidth: 128 * 1024)
        let bytes = pattern(1_200_000, multiplier: 23, offset: 9)
        let image = try await a.service.uploadForTest("galleries/g", "img", bytes: bytes)
        try await eventually("A copies every job and has made progress durable") {
            let rows = try await fleet.rows(image.name)
            return a.engine.runningJobs == 5 && rows.allSatisfy { $0.record.bytesCopied >= 128 * 1024 }
        }
        let b = try await fleet.instance("B", concurrency: 4, bandwidth: nil)
        let c = try await fleet.instance("C", concurrency: 4, bandwidth: nil)
        let watcher = Task { try await watchToEnd(b.service, image.name) }
        try await eventually("the watch on B is open") { b.engine.openWatches == 1 }
        let durable = try await fleet.rows(image.name).reduce(Int64(0)) { $0 + $1.record.bytesCopied }
        // kill -9: no release, no more writes; the leases expire in the database.
        try await blocking { a.engine.simulateCrash() }
        let seen = try await watcher.value
        let last = try #require(seen.last)
        #expect(last.aggregatedState == .completed && last.regions.allSatisfy { $0.state == .completed })
        #expect(seen.contains { s in s.regions.contains { $0.state == .replicating } })
        try await fleet.expectVerified(image)
        // The takers resumed from the durable offsets: only the rest was copied again.
        #expect(b.engine.bytesCopied + c.engine.bytesCopied <= 5 * 1_200_000 - durable + 5 * 64 * 1024)
        let holders = fleet.log.holders()
        #expect(holders.values.allSatisfy { $0.first == "A" && $0.count == 2 }, "\(holders)")
        // A COMPLETED job is never claimed (so never copied) again.
        let claimable = try await blocking {
            try fleet.f.service.replicationStore.claim(owner: "probe", limit: 100, lease: .seconds(1))
        }
        #expect(claimable.isEmpty)
        for e in [a.engine, b.engine, c.engine] { await e.stop() }
    }

    @Test(arguments: StorageEngine.allCases) func aHolderWhoseLeaseExpiresStopsBeforeTheNewHolderWrites(
        _ engine: StorageEngine
    ) async throws {
        let fleet = try await Fleet(engine)
        let a = try await fleet.instance("A", concurrency: 8, bandwidth: 256 * 1024)
        let image = try await a.service.uploadForTest(
            "galleries/g", "img", bytes: pattern(1_000_000, multiplier: 5, offset: 1))
        try await eventually("A copies every job") { a.engine.runningJobs == 5 }
        let b = try await fleet.instance("B", concurrency: 8, bandwidth: 256 * 1024)
        // A is cut off from the database: it cannot renew, so it must stop writing on its own.
        a.engine.isolate(true)
        let seen = try await watchToEnd(b.service, image.name)
        #expect(seen.last?.aggregatedState == .completed)
        try await fleet.expectVerified(image)
        let writes = fleet.log.all
        #expect(Set(writes.map(\.job)).count == 5)
        for job in Set(writes.map(\.job)) {
            let mine = writes.enumerated().filter { $0.element.job == job }
            // Positions in the one log of every write: A's last came before B's first.
            let lastOld = mine.last { $0.element.engine == "A" }?.offset
            let firstNew = mine.first { $0.element.engine == "B" }?.offset
            #expect(lastOld != nil && firstNew != nil, "\(job) was taken over")
            if let lastOld, let firstNew { #expect(lastOld < firstNew, "\(job): A wrote after B started") }
            let epochs = mine.map(\.element.epoch)
            #expect(epochs == epochs.sorted() && Set(epochs).count == 2, "\(job): two claims, writes in epoch order")
        }
        try await eventually("A's jobs stopped on their own") { a.engine.runningJobs == 0 }
        for e in [a.engine, b.engine] { await e.stop() }
    }

    @Test(arguments: StorageEngine.allCases) func recoveryOnAStartingInstanceLeavesTheLiveHoldersFilesAlone(
        _ engine: StorageEngine
    ) async throws {
        let fleet = try await Fleet(engine)
        let a = try await fleet.instance("A", concurrency: 8, bandwidth: 128 * 1024)
        let image = try await a.service.uploadForTest(
            "galleries/g", "img", bytes: pattern(400_000, multiplier: 3, offset: 7))
        try await eventually("A has partial replicas") {
            let rows = try await fleet.rows(image.name)
            return a.engine.runningJobs == 5 && rows.allSatisfy { $0.partialPath != nil && $0.record.bytesCopied > 0 }
        }
        let layout = fleet.f.service.layout
        // An upload in progress on A (young temp file) and a stale one a crash left (an hour old).
        let young = layout.tempDirectory(region: "f1").appendingPathComponent("live.part")
        let stale = layout.tempDirectory(region: "f1").appendingPathComponent("stale.part")
        try FileManager.default.createDirectory(
            at: young.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(repeating: 1, count: 10).write(to: young)
        try Data(repeating: 2, count: 10).write(to: stale)
        try FileManager.default.setAttributes(
            [.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: stale.path)
        let partials = try await fleet.rows(image.name).compactMap(\.partialPath)
        // An upload on A between its `writing` blob row and the commit that references it (file in
        // place, just written), and one a crash interrupted an hour ago.
        let sha = String(repeating: "ab", count: 32)
        let writing = ["regions/f1/blobs/ab/\(sha).live.blob", "regions/f1/blobs/ab/\(sha).dead.blob"]
        for (i, path) in writing.enumerated() {
            let file = layout.url(path)
            try FileManager.default.createDirectory(
                at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(repeating: 3, count: 10).write(to: file)
            if i == 1 {
                try FileManager.default.setAttributes(
                    [.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: file.path)
            }
            try await blocking {
                try fleet.f.service.storage.write { tx in
                    try tx.insertBlob(
                        BlobRecord(path: path, region: "f1", sha256: sha, sizeBytes: 10, state: .writing))
                }
            }
        }
        // Another instance starts on the same data directory.
        let b = try await fleet.instance("B", concurrency: 2, start: false)
        let report = try await blocking { try b.service.recoverFiles(fleetGrace: .seconds(60)) }
        #expect(report.removedTempFiles == ["regions/f1/tmp/stale.part"])
        #expect(report.removedBlobs == [writing[1]] && report.lostAndFound.isEmpty, "\(report)")
        #expect(FileManager.default.fileExists(atPath: layout.url(writing[0]).path))
        for p in partials { #expect(FileManager.default.fileExists(atPath: layout.url(p).path), "\(p) kept") }
        #expect(FileManager.default.fileExists(atPath: young.path))
        #expect(try await watchToEnd(a.service, image.name).last?.aggregatedState == .completed)
        try await fleet.expectVerified(image)
        await a.engine.stop()
    }
}

extension LabGalleryService {
    /// Uploads `bytes` as admin (the test's Fixture.upload, on this service).
    func uploadForTest(_ gallery: String, _ id: String, bytes: [UInt8]) async throws -> Image {
        let up = try await beginUpload(
            ImageUploadHeader(
                gallery: gallery, imageID: id, displayName: "Image \(id)", osType: .linux, osState: .generalized,
                sha256: nil), caller: admin)
        var i = 0
        while i < bytes.count {
            try await up.append(bytes[i..<min(i + 300_000, bytes.count)])
            i += 300_000
        }
        return try await up.finish()
    }
}

@Suite(.serialized) struct ReplicationFleetWatchTests {
    @Test(arguments: StorageEngine.allCases) func aGalleryWatchOnOneInstanceSeesImagesStoredAndDeletedOnAnother(
        _ engine: StorageEngine
    ) async throws {
        let fleet = try await Fleet(engine)
        let a = try await fleet.instance("A", concurrency: 4, bandwidth: 1 << 20)
        let b = try await fleet.instance("B", concurrency: 1, bandwidth: 1 << 20)
        let gallery = try await b.service.watchGalleryReplication(gallery: "galleries/g", caller: reader)
        let image = try await a.service.uploadForTest(
            "galleries/g", "img", bytes: pattern(300_000, multiplier: 7, offset: 3))
        var completed = false
        while !completed, let s = try await gallery.next() {
            completed = s.image == image.name && s.aggregatedState == .completed
        }
        // An image watch opened on B now starts from the database's state, whoever copied it.
        let watch = try await b.service.watchReplication(image: image.name, caller: reader)
        #expect(try await watch.next()?.aggregatedState == .completed)
        watch.close()
        try await a.service.deleteImage(name: image.name, caller: admin)
        var deleted = false
        while !deleted, let s = try await gallery.next() { deleted = s.image == image.name && s.deleted }
        #expect(deleted, "B's gallery watch hears the deletion made on A")
        try await a.service.deleteGallery(name: "galleries/g", caller: admin)
        await expectError(.notFound) { while try await gallery.next() != nil {} }
        gallery.close()
        for e in [a.engine, b.engine] { await e.stop() }
    }

    @Test func progressIsCoalescedAndStateChangesAlwaysGoOut() {
        let feed = InProcessChangeFeed()
        let heard = Mutex<[ReplicationChange]>([])
        let subscription = feed.subscribe { c in heard.withLock { $0.append(c) } }
        let coalescer = ChangeCoalescer(feed: feed, origin: "A", interval: .seconds(3600))
        for _ in 0..<50 { coalescer.changed("galleries/g/images/i", now: false) }
        #expect(heard.withLock { $0.count } == 1, "the first progress goes out, the rest wait for the interval")
        coalescer.changed("galleries/g/images/i", now: true)
        coalescer.changed("galleries/g/images/j", now: false)
        #expect(
            heard.withLock { $0 } == [
                ReplicationChange(image: "galleries/g/images/i", origin: "A"),
                ReplicationChange(image: "galleries/g/images/i", origin: "A"),
                ReplicationChange(image: "galleries/g/images/j", origin: "A"),
            ])
        coalescer.stop()
        subscription.cancel()
        feed.publish(ReplicationChange(image: "x", origin: "B"))
        #expect(heard.withLock { $0.count } == 3, "a cancelled subscription hears nothing")
    }

    @Test func fleetSettingsDefaultToFractionsOfTheLeaseAndMustFitInIt() throws {
        let s = ReplicationFleetSettings(leaseDuration: .seconds(30))
        #expect(s.renewInterval == .seconds(10) && s.safetyMargin == .seconds(5) && !s.instanceID.isEmpty)
        try s.validate()
        #expect(ReplicationFleetSettings().instanceID != ReplicationFleetSettings().instanceID)
        let bad = ReplicationFleetSettings(
            leaseDuration: .seconds(3), renewInterval: .seconds(2), safetyMargin: .seconds(1))
        #expect(throws: LabGalleryError.self) { try bad.validate() }
    }
}
