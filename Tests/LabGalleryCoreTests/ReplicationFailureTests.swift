import Foundation
import TestSupport
import Testing

@testable import LabGalleryCore

/// Failure paths of replication that must keep every byte and always end.
@Suite(.serialized) struct ReplicationFailureTests {
    @Test func aRegionThatAlreadyHoldsTheBytesIsCompletedAtOnce() async throws {
        let x = try await ReplicationFixture(fastReplication())
        let bytes = pattern(300_000, multiplier: 17, offset: 4)
        let a = try await x.f.upload("galleries/g", "a", bytes: bytes)
        #expect(try await x.watchAll(a.name).last?.aggregatedState == .completed)
        let copied = x.engine.bytesCopied
        #expect(copied == 600_000)
        // Same bytes again: every region already holds them, so nothing is copied.
        let b = try await x.f.upload("galleries/g", "b", bytes: bytes)
        let first = try #require(try await x.watchAll(b.name).first)
        #expect(
            first.aggregatedState == .completed
                && first.regions.allSatisfy { $0.state == .completed && $0.attempts == 0 })
        #expect(x.engine.bytesCopied == copied)
        for row in try await x.rows(b.name) {
            #expect(try await row.blobPath == x.rows(a.name).first { $0.record.region == row.record.region }?.blobPath)
        }
        await x.engine.stop()
    }

    @Test func aSavedTemplateWhoseBytesMatchItsSourceIsCompletedEverywhereAtOnce() async throws {
        let x = try await ReplicationFixture(fastReplication())
        try await x.f.account("a1", region: "r1", gallery: .attach(gallery: "galleries/g"))
        let base = try await x.f.upload("galleries/g", "base", bytes: pattern(200_000, multiplier: 19, offset: 1))
        _ = try await x.watchAll(base.name)
        let copied = x.engine.bytesCopied
        _ = try await x.f.service.createLab(
            labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: base.name, caller: educator)
        let saved = try await x.f.service.saveLabTemplateImage(
            lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "", caller: educator)
        let status = try await x.f.service.replicationStatus(image: saved.name, caller: reader)
        #expect(status.aggregatedState == .completed && status.regions.map(\.region) == ["r2", "r3"])
        #expect(x.engine.bytesCopied == copied, "nothing was copied")
        await x.engine.stop()
    }

    @Test func pendingJobsAreAlwaysScheduledWithZeroBackoff() async throws {
        // Every job fails its first three attempts and retries at once: many jobs race their own
        // backoff timers and thread exits; each must still run to COMPLETED.
        let x = try await ReplicationFixture(
            ReplicationConfiguration(
                concurrency: 3, maxAttempts: 10, backoffInitial: .zero, backoffMax: .zero,
                defaultLink: link(fail: 3), chunkSize: 4096, persistEvery: 8192, progressInterval: .milliseconds(1)))
        var names: [String] = []
        for i in 0..<12 {
            names.append(
                try await x.f.upload("galleries/g", "img\(i)", bytes: pattern(20_000, multiplier: 3, offset: i)).name)
        }
        for name in names {
            let last = try #require(try await x.watchAll(name).last)
            #expect(
                last.aggregatedState == .completed && last.regions.allSatisfy { $0.attempts == 4 }, "\(name): \(last)")
        }
        await x.engine.stop()
    }

    @Test func retryingAFailedRegionOverAndOverAlwaysEnds() async throws {
        let x = try await ReplicationFixture(
            fastReplication(["r2": link(unreachable: true)], maxAttempts: 1, backoff: .zero))
        let image = try await x.f.upload("galleries/g", "img", bytes: pattern(10_000, multiplier: 5, offset: 5))
        #expect(try await x.watchAll(image.name).last?.aggregatedState == .failed)
        for _ in 0..<30 {
            // The retry may land while the last attempt's thread is still exiting.
            _ = try await x.f.service.retryReplication(image: image.name, regions: [], caller: admin)
            let last = try #require(try await x.watchAll(image.name).last)
            #expect(last.aggregatedState == .failed && last.regions.first { $0.region == "r2" }?.attempts == 1)
        }
        await x.engine.stop()
    }

    @Test func anImageIsWatchableFromTheMomentItIsStored() async throws {
        let x = try await ReplicationFixture(fastReplication(bandwidth: 1 << 20))
        for i in 0..<25 {
            let image = try await x.f.upload("galleries/g", "img\(i)", bytes: pattern(5_000, multiplier: 7, offset: i))
            let w = try await x.f.service.watchReplication(image: image.name, caller: reader)
            let first = try #require(try await w.next())
            #expect(first.image == image.name)
        }
        await x.engine.stop()
    }

    @Test func aGalleryWatchHearsEachDeletionAndEndsWhenTheGalleryGoes() async throws {
        let x = try await ReplicationFixture(fastReplication())
        let a = try await x.f.upload("galleries/g", "a", bytes: pattern(1000, multiplier: 3, offset: 0))
        let b = try await x.f.upload("galleries/g", "b", bytes: pattern(1000, multiplier: 5, offset: 0))
        _ = try await x.watchAll(a.name)
        _ = try await x.watchAll(b.name)
        let w = try await x.f.service.watchGalleryReplication(gallery: "galleries/g", caller: reader)
        #expect(Set([try await w.next()?.image, try await w.next()?.image]) == [a.name, b.name])
        try await x.f.service.deleteImage(name: a.name, caller: admin)
        let gone = try #require(try await w.next())
        #expect(gone.image == a.name && gone.deleted)
        try await x.f.service.deleteImage(name: b.name, caller: admin)
        try await x.f.service.deleteGallery(name: "galleries/g", caller: admin)
        let goneToo = try #require(try await w.next())
        #expect(goneToo.image == b.name && goneToo.deleted)
        await #expect(
            throws: LabGalleryError.notFound(
                resource: "galleries/g", message: "galleries/g was deleted while being watched")
        ) {
            _ = try await w.next()
        }
        await x.engine.stop()
    }

    @Test func aDatabaseThatRefusesWritesFailsAttemptsButKeepsTheCopy() async throws {
        // A real second process holds SQLite's write lock; the engine's writes give up after 100 ms.
        let f = try await Fixture(LabGalleryConfiguration(regionCatalog: replicationCatalog), busyTimeout: 0.1)
        try await f.gallery("g", region: "r1")
        let engine = ReplicationEngine(
            // Slow enough that the copies are still running when the lock is held, even on a loaded
            // machine (at 512 KiB/s a copy could finish before the lock holder started).
            service: f.service, configuration: fastReplication(bandwidth: 64 * 1024, maxAttempts: 1000))
        try await startEngine(engine)
        let image = try await f.upload("galleries/g", "img", bytes: pattern(600_000, multiplier: 23, offset: 9))
        let w = try await f.service.watchReplication(image: image.name, caller: reader)
        while let s = try await w.next(), !s.regions.allSatisfy({ $0.state == .replicating && $0.bytesCopied > 0 }) {}

        let lock = try DatabaseLockHolder(path: f.service.layout.databaseURL.path)
        try await lock.waitUntilLocked()
        var sawRefusal = false
        while let s = try await w.next() {
            if s.regions.contains(where: { ($0.error ?? "").contains("database") && ($0.error ?? "").contains("busy") })
            {
                sawRefusal = true
                break
            }
        }
        #expect(sawRefusal, "the failed write is a failed attempt with its reason")
        #expect(
            f.files(under: "regions/r2/partial").count + f.files(under: "regions/r2/blobs").count == 1,
            "the copy is kept")
        lock.release()
        var last: ReplicationStatus?
        while let s = try await w.next() { last = s }
        #expect(last?.aggregatedState == .completed)
        for region in ["r2", "r3"] {
            let blob = try #require(f.files(under: "regions/\(region)/blobs").first)
            #expect(try await sha256Hex(of: f.dir.appendingPathComponent(blob)) == image.sha256)
        }
        await engine.stop()
    }
}

/// Holds SQLite's write lock on a database from another process (python3's sqlite3) until released.
final class DatabaseLockHolder: Sendable {
    private let process = Process()
    private let input = Pipe()
    private let output: URL

    init(path: String) throws {
        output = FileManager.default.temporaryDirectory.appendingPathComponent("lock-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c",
            """
            import sqlite3, sys
            c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
            c.execute("BEGIN IMMEDIATE")
            print("locked", flush=True)
            sys.stdin.read()
            c.execute("ROLLBACK")
            """, path,
        ]
        process.standardInput = input
        process.standardOutput = try FileHandle(forWritingTo: output)
        try process.run()
    }

    /// Waits for the lock to be held (the helper prints `locked`).
    func waitUntilLocked() async throws {
        try await eventually("the lock holder") {
            (try? String(contentsOf: output, encoding: .utf8))?.contains("locked") == true
        }
    }

    /// Releases the lock (the helper rolls back and exits).
    func release() {
        try? input.fileHandleForWriting.close()
    }

    deinit {
        release()
        try? FileManager.default.removeItem(at: output)
    }
}
