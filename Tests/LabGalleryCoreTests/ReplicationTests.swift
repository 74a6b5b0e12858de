import Foundation
import TestSupport
import Testing

@testable import LabGalleryCore

/// A three-region geography so each image has two replication jobs (r2, r3) from home r1.
let replicationCatalog = try! RegionCatalog(geographies: ["Test": ["r1", "r2", "r3"], "Other": ["x1", "x2"]])

/// Fast settings: small chunks, frequent persistence, tiny backoff.
func fastReplication(
    _ links: [String: RegionLink] = [:], bandwidth: Int64? = nil, maxAttempts: Int = 5,
    concurrency: Int = 4, backoff: Duration = .milliseconds(10)
) -> ReplicationConfiguration {
    ReplicationConfiguration(
        concurrency: concurrency, maxAttempts: maxAttempts, backoffInitial: backoff,
        backoffMax: backoff * 4,
        defaultLink: RegionLink(bandwidthBytesPerSecond: bandwidth, latencyMilliseconds: 0),
        regions: links, chunkSize: 64 * 1024, persistEvery: 128 * 1024, progressInterval: .milliseconds(10))
}

func link(bandwidth: Int64? = nil, fail: Int = 0, corrupt: Int = 0, unreachable: Bool = false) -> RegionLink {
    RegionLink(
        bandwidthBytesPerSecond: bandwidth, latencyMilliseconds: 0, failFirstAttempts: fail,
        corruptFirstAttempts: corrupt, unreachable: unreachable)
}

/// A fixture with the test catalog, a gallery `g` in r1 and a started engine.
final class ReplicationFixture: Sendable {
    let f: Fixture
    let engine: ReplicationEngine
    init(_ config: ReplicationConfiguration, start: Bool = true) async throws {
        f = try await Fixture(LabGalleryConfiguration(regionCatalog: replicationCatalog))
        try await f.gallery("g", region: "r1")
        engine = ReplicationEngine(service: f.service, configuration: config)
        if start { try await startEngine(engine) }
    }
    /// Every status of a WatchReplication stream until it ends.
    func watchAll(_ image: String) async throws -> [ReplicationStatus] {
        let w = try await f.service.watchReplication(image: image, caller: reader)
        var out: [ReplicationStatus] = []
        while let s = try await w.next() { out.append(s) }
        return out
    }
    func rows(_ image: String) async throws -> [ReplicationRow] {
        let n = try ImageName(parsing: image, field: "image")
        return try await blocking { try f.service.storage.read { try $0.replicationRows(of: n) } }
    }
}

/// Starts an engine (it reads the database) off the cooperative pool.
func startEngine(_ engine: ReplicationEngine) async throws {
    try await blocking { try engine.start() }
}

/// Every status of a WatchReplication stream of `service` (its running engine) until it ends.
func watchAll(_ service: LabGalleryService, _ image: String) async throws -> [ReplicationStatus] {
    let w = try await service.watchReplication(image: image, caller: reader)
    var out: [ReplicationStatus] = []
    while let s = try await w.next() { out.append(s) }
    return out
}

@Suite(.serialized) struct ReplicationEngineTests {
    @Test func pendingReplicatingCompletedWithVerifiedReplicas() async throws {
        // Slow enough (~4.7 s) that the reader sees progress even when a loaded test machine
        // keeps the watcher's task waiting for a thread for a second or two.
        let x = try await ReplicationFixture(fastReplication(bandwidth: 128 * 1024))
        let bytes = pattern(600_000, multiplier: 31, offset: 0)
        let image = try await x.f.upload("galleries/g", "img", bytes: bytes, chunk: 100_000)
        let seen = try await x.watchAll(image.name)
        #expect(seen.count >= 3, "first message, progress, terminal")
        #expect(seen.first?.regions.map(\.region) == ["r2", "r3"])
        let states = Set(seen.flatMap { $0.regions.map(\.state) })
        #expect(states.contains(.replicating))
        #expect(
            seen.contains { s in
                s.regions.contains { $0.state == .replicating && $0.bytesCopied > 0 && $0.bytesCopied < $0.bytesTotal }
            },
            "progress is visible")
        let last = try #require(seen.last)
        #expect(last.aggregatedState == .completed)
        #expect(
            last.regions.allSatisfy {
                $0.state == .completed && $0.bytesCopied == 600_000 && $0.progressPercent == 100 && $0.attempts == 1
            })
        for row in try await x.rows(image.name) {
            let blob = try #require(row.blobPath)
            #expect(blob.hasPrefix("regions/\(row.record.region)/blobs/\(image.sha256.prefix(2))/\(image.sha256)."))
            #expect(row.partialPath == nil)
            #expect(try await sha256Hex(of: x.f.dir.appendingPathComponent(blob)) == image.sha256)
        }
        #expect(x.f.files(under: "regions/r2/partial").isEmpty)
        // Already terminal: one message, then the end.
        let again = try await x.watchAll(image.name)
        #expect(again.count == 1 && again[0].aggregatedState == .completed)
        await x.engine.stop()
    }

    @Test func checksumMismatchIsAFailureNeverCompleted() async throws {
        let x = try await ReplicationFixture(fastReplication(["r2": link(corrupt: 1)], maxAttempts: 1))
        let image = try await x.f.upload("galleries/g", "img", bytes: Array(repeating: 9, count: 300_000))
        let last = try #require(try await x.watchAll(image.name).last)
        #expect(last.aggregatedState == .failed)
        let r2 = try #require(last.regions.first { $0.region == "r2" })
        #expect(r2.state == .failed)
        #expect(r2.error?.contains("checksum mismatch") == true)
        #expect(r2.error?.contains("RetryReplication") == true)
        #expect(last.regions.first { $0.region == "r3" }?.state == .completed)
        #expect(x.f.files(under: "regions/r2").isEmpty, "the bad copy is discarded")
        await x.engine.stop()
    }

    @Test func checksumMismatchRetriesFromScratch() async throws {
        // A backoff far longer than the test: the failed attempt's PENDING state stays put until
        // the test has seen it, then an engine with a short backoff takes over (as after a restart).
        let x = try await ReplicationFixture(
            fastReplication(["r2": link(corrupt: 1)], maxAttempts: 3, backoff: .seconds(3600)))
        let image = try await x.f.upload("galleries/g", "img", bytes: Array(repeating: 5, count: 300_000))
        let w = try await x.f.service.watchReplication(image: image.name, caller: reader)
        while let s = try await w.next() {
            if s.regions.contains(where: {
                $0.region == "r2" && $0.state == .pending && ($0.error ?? "").contains("checksum mismatch")
            }) {
                break
            }
        }
        #expect(
            try await x.rows(image.name).first { $0.record.region == "r2" }?.record.error?.contains("checksum mismatch")
                == true,
            "the failed attempt is persisted with its reason")
        await x.engine.stop()
        let resumed = ReplicationEngine(
            service: x.f.service, configuration: fastReplication(["r2": link(corrupt: 1)], maxAttempts: 3))
        try await startEngine(resumed)
        let done = try await watchAll(x.f.service, image.name)
        let r2 = try #require(done.last?.regions.first { $0.region == "r2" })
        #expect(r2.state == .completed && r2.attempts == 2, "the second attempt started from scratch and verified")
        await resumed.stop()
    }

    @Test func injectedFaultsRetryWithBackoffThenSucceed() async throws {
        let x = try await ReplicationFixture(
            fastReplication(["r3": link(fail: 2)], maxAttempts: 5, backoff: .seconds(3600)))
        let image = try await x.f.upload("galleries/g", "img", bytes: Array(repeating: 1, count: 400_000))
        let w = try await x.f.service.watchReplication(image: image.name, caller: reader)
        while let s = try await w.next() {
            let r2 = s.regions.first { $0.region == "r2" }
            let r3 = s.regions.first { $0.region == "r3" }
            if r2?.state == .completed, r3?.state == .pending,
                (r3?.error ?? "").contains("attempt 1 of 5 failed: connection to r3 reset")
            {
                break
            }
        }
        await x.engine.stop()
        let kept = try #require(try await x.rows(image.name).first { $0.record.region == "r3" })
        #expect(
            kept.partialPath != nil && kept.record.bytesCopied >= 128 * 1024, "a transfer error keeps the partial copy")
        let resumed = ReplicationEngine(
            service: x.f.service, configuration: fastReplication(["r3": link(fail: 2)], maxAttempts: 5))
        try await startEngine(resumed)
        let r3 = try #require(try await watchAll(x.f.service, image.name).last?.regions.first { $0.region == "r3" })
        #expect(r3.state == .completed && r3.attempts == 3 && r3.error == nil)
        // Attempts 2 and 3 continued from the partial copy: only the rest of r3 was written again.
        #expect(resumed.bytesCopied <= 400_000 - kept.record.bytesCopied + 64 * 1024)
        await resumed.stop()
    }

    @Test func unreachableRegionFailsAfterTheLimitAndRetryReplicationRequeues() async throws {
        let x = try await ReplicationFixture(fastReplication(["r2": link(unreachable: true)], maxAttempts: 3))
        let image = try await x.f.upload("galleries/g", "img", bytes: Array(repeating: 3, count: 100_000))
        let last = try #require(try await x.watchAll(image.name).last)
        let r2 = try #require(last.regions.first { $0.region == "r2" })
        #expect(last.aggregatedState == .failed && r2.state == .failed && r2.attempts == 3)
        #expect(r2.error?.contains("unreachable") == true)

        await expectError(.invalidArgument, field: "regions", contains: ["home region"]) {
            _ = try await x.f.service.retryReplication(image: image.name, regions: ["r1"], caller: admin)
        }
        await expectError(.invalidArgument, field: "regions", contains: ["x1"]) {
            _ = try await x.f.service.retryReplication(image: image.name, regions: ["x1"], caller: admin)
        }
        await expectError(.failedPrecondition, contains: ["r3", "COMPLETED", "not FAILED"]) {
            _ = try await x.f.service.retryReplication(image: image.name, regions: ["r3"], caller: admin)
        }
        await expectError(.permissionDenied) {
            _ = try await x.f.service.retryReplication(image: image.name, regions: [], caller: reader)
        }

        // The operator fixes the link (a restart with a new config), then retries every failed region.
        await x.engine.stop()
        let fixed = ReplicationEngine(service: x.f.service, configuration: fastReplication())
        try await startEngine(fixed)
        let queued = try await x.f.service.retryReplication(image: image.name, regions: [], caller: admin)
        #expect(queued.regions.first { $0.region == "r2" }?.state == .pending)
        #expect(queued.regions.first { $0.region == "r2" }?.attempts == 0)
        #expect(queued.regions.first { $0.region == "r3" }?.state == .completed)
        let w = try await x.f.service.watchReplication(image: image.name, caller: reader)
        var final: ReplicationStatus?
        while let s = try await w.next() { final = s }
        #expect(final?.aggregatedState == .completed)
        #expect(final?.regions.first { $0.region == "r2" }?.attempts == 1)
        await fixed.stop()
    }

    @Test func stopAndRestartResumesFromThePersistedOffset() async throws {
        let x = try await ReplicationFixture(fastReplication(bandwidth: 1 << 20, concurrency: 2))
        let bytes = pattern(1_500_000, multiplier: 7, offset: 3)
        let image = try await x.f.upload("galleries/g", "img", bytes: bytes, chunk: 500_000)
        // Wait until both jobs have persisted some progress, then stop (as a shutdown would).
        try await eventually("persisted progress of both jobs") {
            try await x.rows(image.name).allSatisfy { $0.record.bytesCopied >= 256 * 1024 }
        }
        await x.engine.stop()
        let before = try await x.rows(image.name)
        #expect(
            before.allSatisfy { $0.record.state == .replicating && $0.record.bytesCopied > 0 && $0.partialPath != nil })
        // Startup recovery keeps referenced partial replicas.
        let report = try await blocking { try x.f.service.recoverFiles() }
        #expect(report.lostAndFound.isEmpty && report.removedBlobs.isEmpty)
        for row in before {
            #expect(FileManager.default.fileExists(atPath: x.f.dir.appendingPathComponent(row.partialPath!).path))
        }

        let resumed = ReplicationEngine(service: x.f.service, configuration: fastReplication(concurrency: 2))
        try await startEngine(resumed)
        let w = try await x.f.service.watchReplication(image: image.name, caller: reader)
        var final: ReplicationStatus?
        while let s = try await w.next() { final = s }
        #expect(final?.aggregatedState == .completed)
        let persisted = before.reduce(Int64(0)) { $0 + $1.record.bytesCopied }
        #expect(
            resumed.bytesCopied == 2 * 1_500_000 - persisted,
            "only the bytes after the persisted offsets were copied again")
        for row in try await x.rows(image.name) {
            #expect(try await sha256Hex(of: x.f.dir.appendingPathComponent(try #require(row.blobPath))) == image.sha256)
            #expect(row.record.attempts == 1, "a resume is the same attempt")
        }
        await resumed.stop()
    }

    @Test func partialFileLongerOrShorterThanTheOffsetIsChecked() async throws {
        let x = try await ReplicationFixture(fastReplication(bandwidth: 1 << 20, concurrency: 1))
        let bytes = pattern(800_000, multiplier: 13, offset: 0)
        let image = try await x.f.upload("galleries/g", "img", bytes: bytes, chunk: 400_000)
        try await eventually("persisted progress") {
            try await x.rows(image.name).contains { $0.record.bytesCopied >= 128 * 1024 }
        }
        await x.engine.stop()
        let row = try #require(
            try await x.rows(image.name).first { $0.partialPath != nil && $0.record.bytesCopied > 0 })
        // Bytes beyond the persisted offset (written after the last fsync) are garbage to the job.
        let handle = try FileHandle(forWritingTo: x.f.dir.appendingPathComponent(row.partialPath!))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(repeating: 0xEE, count: 70_000))
        try handle.close()
        let resumed = ReplicationEngine(service: x.f.service, configuration: fastReplication())
        try await startEngine(resumed)
        let w = try await x.f.service.watchReplication(image: image.name, caller: reader)
        var final: ReplicationStatus?
        while let s = try await w.next() { final = s }
        #expect(final?.aggregatedState == .completed)
        for r in try await x.rows(image.name) {
            #expect(try await sha256Hex(of: x.f.dir.appendingPathComponent(try #require(r.blobPath))) == image.sha256)
        }
        await resumed.stop()
    }

    @Test func crashAroundTheRenameNeverCopiesAgain() async throws {
        // Engine not started: the rows stay PENDING while the test lays out the two crash states.
        let x = try await ReplicationFixture(fastReplication(), start: false)
        let bytes = pattern(700_000, multiplier: 11, offset: 5)
        let image = try await x.f.upload("galleries/g", "img", bytes: bytes, chunk: 350_000)
        let name = try ImageName(parsing: image.name, field: "image")
        let layout = x.f.service.layout
        let home = try #require(try await blocking { try x.f.service.storage.read { try $0.image(name) } })
        var rows = try await x.rows(image.name)
        #expect(rows.map(\.record.region) == ["r2", "r3"])
        for i in rows.indices {
            let region = rows[i].record.region
            let partial = layout.newReplicaPartialPath(region: region, image: name)
            let blob = layout.newBlobPath(region: region, sha256: image.sha256)
            // r2: died after the rename (the replica sits under its final name);
            // r3: died after recording the final name, before the rename (a complete partial file).
            let file = layout.url(region == "r2" ? blob : partial)
            try FileManager.default.createDirectory(
                at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: layout.url(home.blobPath), to: file)
            rows[i].partialPath = partial
            rows[i].blobPath = blob
            rows[i].record.state = .replicating
            rows[i].record.attempts = 1
            rows[i].record.bytesCopied = Int64(bytes.count)
            rows[i].record.bytesTotal = Int64(bytes.count)
            let row = rows[i]
            // What the job records before its rename: the blob (`writing`) and its name in the row.
            try await blocking {
                try x.f.service.storage.write { tx in
                    try tx.insertBlob(
                        BlobRecord(
                            path: blob, region: region, sha256: image.sha256, sizeBytes: Int64(bytes.count),
                            state: .writing))
                    _ = try tx.updateReplication(row)
                }
            }
        }
        let report = try await blocking { try x.f.service.recoverFiles() }
        #expect(report.lostAndFound.isEmpty && report.removedBlobs.isEmpty, "both files are referenced by their rows")

        try await startEngine(x.engine)
        let final = try #require(try await x.watchAll(image.name).last)
        #expect(final.aggregatedState == .completed)
        #expect(x.engine.bytesCopied == 0, "neither region was copied again")
        for (before, after) in zip(rows, try await x.rows(image.name)) {
            #expect(after.blobPath == before.blobPath && after.partialPath == nil && after.record.attempts == 1)
            #expect(try await sha256Hex(of: layout.url(try #require(after.blobPath))) == image.sha256)
        }
        await x.engine.stop()
    }

    @Test func deleteImageCancelsJobsAndRemovesReplicas() async throws {
        let x = try await ReplicationFixture(fastReplication(bandwidth: 256 * 1024))
        let image = try await x.f.upload("galleries/g", "img", bytes: Array(repeating: 4, count: 1_000_000))
        let w = try await x.f.service.watchReplication(image: image.name, caller: reader)
        _ = try await w.next()
        try await eventually("both jobs running") { x.engine.runningJobs == 2 }
        try await x.f.service.deleteImage(name: image.name, caller: admin)
        var ended: (any Error)?
        do { while try await w.next() != nil {} } catch { ended = error }
        #expect((ended as? LabGalleryError)?.code == .notFound)
        try await eventually("the jobs to stop") { x.engine.runningJobs == 0 }
        #expect(x.f.files(under: "regions/r2").isEmpty && x.f.files(under: "regions/r3").isEmpty)
        await x.engine.stop()
    }

    @Test func slowWatcherIsCoalescedButSeesTheTerminalState() async throws {
        let x = try await ReplicationFixture(fastReplication(bandwidth: 2 << 20))
        let image = try await x.f.upload("galleries/g", "img", bytes: Array(repeating: 8, count: 600_000))
        let slow = try await x.f.service.watchReplication(image: image.name, caller: reader)
        // Never read while the copy runs: the mailbox holds at most the latest status.
        var maxPending = 0
        try await eventually("every replica completed") {
            maxPending = max(maxPending, slow.pendingCount)
            return try await !x.rows(image.name).contains(where: { $0.record.state != .completed })
                && x.engine.runningJobs == 0
        }
        #expect(maxPending <= 1)
        var got: [ReplicationStatus] = []
        while let s = try await slow.next() { got.append(s) }
        #expect(got.count == 1, "coalesced to the latest state")
        #expect(got.last?.aggregatedState == .completed)
        await x.engine.stop()
    }

    @Test func terminalStateIsNeverCoalescedAway() async {
        let m = WatchMailbox()
        let r = { (s: ReplicationState) in
            ReplicationStatus(
                image: "galleries/g/images/i",
                regions: [
                    RegionReplication(region: "r2", state: s, bytesCopied: 0, bytesTotal: 1, error: nil, attempts: 1)
                ])
        }
        _ = m.post(r(.replicating))
        _ = m.post(r(.failed))
        _ = m.post(r(.pending))  // a retry right after the failure
        _ = m.post(r(.replicating))
        #expect(m.pendingCount == 2, "the FAILED state stays queued, later ones coalesce behind it")
    }

    @Test func watchEndsOnCancellationAndOnShutdown() async throws {
        let x = try await ReplicationFixture(fastReplication(bandwidth: 64 * 1024))
        let image = try await x.f.upload("galleries/g", "img", bytes: Array(repeating: 2, count: 500_000))
        let w = try await x.f.service.watchReplication(image: image.name, caller: reader)
        let task = Task { () -> (any Error)? in
            do { while try await w.next() != nil {} } catch { return error }
            return nil
        }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        #expect(await task.value is CancellationError)

        let g = try await x.f.service.watchGalleryReplication(gallery: "galleries/g", caller: reader)
        #expect(try await g.next()?.image == image.name)
        x.engine.closeWatchers()
        await #expect(throws: ReplicationWatchError.shutdown) { while try await g.next() != nil {} }
        let late = try await x.f.service.watchReplication(image: image.name, caller: reader)
        await #expect(throws: ReplicationWatchError.shutdown, "a watch opened after the close ends at once") {
            _ = try await late.next()
        }
        await x.engine.stop()
    }

    @Test func galleryWatchSendsEveryImageThenChanges() async throws {
        let x = try await ReplicationFixture(fastReplication())
        let a = try await x.f.upload("galleries/g", "a", bytes: Array(repeating: 1, count: 1000))
        let w = try await x.f.service.watchGalleryReplication(gallery: "galleries/g", caller: reader)
        #expect(try await w.next()?.image == a.name)
        let b = try await x.f.upload("galleries/g", "b", bytes: Array(repeating: 2, count: 1000))
        var sawB = false
        while let s = try await w.next() {
            if s.image == b.name && s.aggregatedState == .completed {
                sawB = true
                break
            }
        }
        #expect(sawB)
        await expectError(.notFound) {
            _ = try await x.f.service.watchGalleryReplication(gallery: "galleries/none", caller: reader)
        }
        await expectError(.invalidArgument, field: "gallery") {
            _ = try await x.f.service.watchGalleryReplication(gallery: "nope", caller: reader)
        }
        await x.engine.stop()
    }

    @Test func createLabNeedsTheImageInTheAccountsRegion() async throws {
        let x = try await ReplicationFixture(
            fastReplication(["r3": link(unreachable: true)], bandwidth: 256 * 1024, maxAttempts: 1))
        try await x.f.account("far", region: "r2", gallery: .attach(gallery: "galleries/g"))
        try await x.f.account("failing", region: "r3", gallery: .attach(gallery: "galleries/g"))
        try await x.f.account("home", region: "r1", gallery: .attach(gallery: "galleries/g"))
        try await x.f.account("other", region: "x1", gallery: .attach(gallery: "galleries/g"))
        let image = try await x.f.upload("galleries/g", "img", bytes: Array(repeating: 6, count: 400_000))
        func create(_ account: String) async throws {
            _ = try await x.f.service.createLab(
                labAccount: "labAccounts/\(account)", labID: "lab", displayName: "L", templateImage: image.name,
                caller: educator)
        }
        try await create("home")
        await expectError(.failedPrecondition, contains: ["r2", "in progress", "WatchReplication"]) {
            try await create("far")
        }
        await expectError(.failedPrecondition, contains: ["x1", "another geography"]) { try await create("other") }
        _ = try await x.watchAll(image.name)
        try await create("far")
        await expectError(.failedPrecondition, contains: ["r3", "failed", "RetryReplication"]) {
            try await create("failing")
        }
        await x.engine.stop()
    }
}

@Suite struct CostTests {
    @Test func moneyIsExactDecimal() async throws {
        #expect(Money("1.54")?.description == "1.54")
        #expect(Money("0.048125")?.description == "0.048125")
        #expect(Money("3")?.description == "3.00")
        #expect(Money("1.2345678901") == nil && Money("-1") == nil && Money("1e3") == nil && Money("") == nil)
        #expect(Money("0.1")! + Money("0.2")! == Money("0.3")!)
        #expect(Money("0.048125")!.perGiB(times: 32 << 30).description == "1.54")
    }

    @Test func adminGuideExampleTwoVersionsInEightUSRegions() async {
        // 1 image × 2 versions × 8 US regions × $1.54 (32 GB standard HDD) = $24.64 per month.
        let size: Int64 = 32 << 30
        let targets = ["eastus2", "westus", "westus2", "westus3", "centralus", "southcentralus", "northcentralus"]
        let images = ["v1", "v2"].map { id in
            (
                Image(
                    name: "galleries/g/images/\(id)", displayName: id, osType: .windows, osState: .generalized,
                    source: .uploaded,
                    sourceLab: nil, sizeBytes: size, sha256: "", region: "eastus", author: "a"),
                targets.map {
                    RegionReplication(
                        region: $0, state: .completed, bytesCopied: size, bytesTotal: size, error: nil, attempts: 1)
                }
            )
        }
        let cost = GalleryCost.compute(gallery: "galleries/g", images: images, sheet: .default)
        #expect(cost.lines.count == 16)
        #expect(cost.lines.allSatisfy { $0.monthlyCost.description == "1.54" })
        #expect(cost.monthlyTotal.description == "24.64")
        #expect(cost.currency == "USD")
        #expect(cost.oneTimeReplicationEgress.description == "8.96", "14 replicas × 32 GiB × $0.02")
    }

    @Test func onlyStoredReplicasAreBilledAndPricesComeFromTheSheet() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prices-\(UUID().uuidString).json")
        try Data(
            #"{"currency": "EUR", "storagePerGiBMonth": "0.10", "egressPerGiB": "0.01", "regions": {"r2": "0.20"}}"#
                .utf8
        ).write(to: dir)
        defer { try? FileManager.default.removeItem(at: dir) }
        let sheet = try PriceSheet(contentsOf: dir)
        let image = Image(
            name: "galleries/g/images/i", displayName: "", osType: .linux, osState: .generalized, source: .uploaded,
            sourceLab: nil, sizeBytes: 1 << 29, sha256: "", region: "r1", author: "a")
        let cost = GalleryCost.compute(
            gallery: "galleries/g",
            images: [
                (
                    image,
                    [
                        RegionReplication(
                            region: "r2", state: .completed, bytesCopied: 0, bytesTotal: 1, error: nil, attempts: 1),
                        RegionReplication(
                            region: "r3", state: .replicating, bytesCopied: 0, bytesTotal: 1, error: nil, attempts: 1),
                        RegionReplication(
                            region: "r4", state: .failed, bytesCopied: 0, bytesTotal: 1, error: "x", attempts: 5),
                    ]
                )
            ], sheet: sheet)
        #expect(cost.lines.map(\.region) == ["r1", "r2"])
        #expect(cost.lines.map(\.monthlyCost.description) == ["0.05", "0.10"])
        #expect(cost.monthlyTotal.description == "0.15")
        #expect(cost.oneTimeReplicationEgress.description == "0.005")
        #expect(cost.currency == "EUR")
        try Data(#"{"storagePerGiBMonth": 0.1}"#.utf8).write(to: dir)
        await expectError(.invalidArgument, field: "price_sheet") { _ = try PriceSheet(contentsOf: dir) }
    }

    @Test func galleryCostUseCase() async throws {
        let x = try await ReplicationFixture(fastReplication())
        let image = try await x.f.upload("galleries/g", "img", bytes: Array(repeating: 1, count: 1 << 20))
        _ = try await x.watchAll(image.name)
        let cost = try await x.f.service.galleryCost(gallery: "galleries/g", sheet: .default, caller: reader)
        #expect(cost.lines.map(\.region) == ["r1", "r2", "r3"])
        #expect(
            cost.lines.allSatisfy {
                $0.sizeBytes == 1 << 20 && $0.monthlyCost == Money("0.048125")!.perGiB(times: 1 << 20)
            })
        await expectError(.notFound) {
            _ = try await x.f.service.galleryCost(gallery: "galleries/none", sheet: .default, caller: reader)
        }
        await x.engine.stop()
    }

    @Test func replicationConfigFile() async throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("repl-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(
            #"{"concurrency": 2, "wan": "on", "defaultLink": {"bandwidthMiBps": 10, "latencyMs": 5}, "regions": {"r2": {"failFirstAttempts": 2, "bandwidthMiBps": 0}}}"#
                .utf8
        ).write(to: url)
        let c = try ReplicationConfiguration(contentsOf: url)
        #expect(c.concurrency == 2)
        #expect(c.link(to: "r3").bandwidthBytesPerSecond == 10 << 20 && c.link(to: "r3").latencyMilliseconds == 5)
        #expect(c.link(to: "r2").bandwidthBytesPerSecond == nil && c.link(to: "r2").failFirstAttempts == 2)
        #expect(ReplicationConfiguration().link(to: "any").bandwidthBytesPerSecond == 40 << 20)
        #expect(
            ReplicationConfiguration(backoffInitial: .seconds(1), backoffMax: .seconds(5)).backoff(afterAttempt: 1)
                == .seconds(1))
        #expect(
            ReplicationConfiguration(backoffInitial: .seconds(1), backoffMax: .seconds(5)).backoff(afterAttempt: 3)
                == .seconds(4))
        #expect(
            ReplicationConfiguration(backoffInitial: .seconds(1), backoffMax: .seconds(5)).backoff(afterAttempt: 9)
                == .seconds(5))
        try Data(#"{"concurrency": 0}"#.utf8).write(to: url)
        await expectError(.invalidArgument, field: "replication_config") {
            _ = try ReplicationConfiguration(contentsOf: url)
        }
    }
}
