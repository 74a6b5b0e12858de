import Foundation
import TestSupport
import Testing

@testable import LabGalleryCore

@Suite struct PersistenceTests {
    @Test(arguments: StorageEngine.allCases) func dataSurvivesReopenAndMigrationsAreIdempotent(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: "G"))
        let image = try await f.upload("galleries/g1", "img")
        let reopened = try await f.reopened()
        #expect(try await reopened.getImage(name: image.name, caller: reader) == image)
        #expect(
            try await reopened.getLabAccount(name: "labAccounts/a1", caller: reader).attachedGallery == "galleries/g1")
        #expect(
            try await blocking { try reopened.recoverFiles() }
                == RecoveryReport(removedTempFiles: [], removedBlobs: [], lostAndFound: []))
    }

    /// Crash safety at the SQLite level: a burst of acknowledged write transactions, then a second,
    /// independent DatabasePool on the same file (as a restarted process would) without closing or
    /// checkpointing the first, sees an intact database with every acknowledged write.
    // SQLite only: it reads or removes the SQLite database file itself.
    @Test func burstOfWritesIsDurableAndIntactFromSecondPool() async throws {
        let f = try await Fixture()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<4 {
                group.addTask {
                    for i in 0..<50 {
                        _ = try await f.service.createGallery(
                            id: "g\(w)-\(i)", displayName: "", region: "eastus", caller: admin)
                    }
                }
            }
            try await group.waitForAll()
        }
        let (mode, integrity, names) = try await blocking {
            let second = try SQLiteStorage(path: f.service.layout.databaseURL.path)
            return (
                try second.journalMode(), try second.integrityCheck(),
                try second.read { try $0.galleries(after: nil, limit: nil) }.map(\.name)
            )
        }
        #expect(mode == "wal")
        #expect(integrity == "ok")
        #expect(names.count == 200)
        #expect(Set(names) == Set((0..<4).flatMap { w in (0..<50).map { "galleries/g\(w)-\($0)" } }))
    }

    @Test(arguments: StorageEngine.allCases) func failedTransactionRollsBackEverything(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        // Fails after inserting the gallery inside the same transaction → nothing remains.
        await #expect(throws: LabGalleryError.self) {
            try await blocking {
                try f.service.storage.write { tx in
                    try tx.insertGallery(
                        Gallery(name: "galleries/g1", displayName: "", region: "eastus", geography: "United States"))
                    throw LabGalleryError.internal(message: "boom")
                }
            }
        }
        #expect(try await f.service.listGalleries(caller: reader).items.isEmpty)
    }

    @Test(arguments: StorageEngine.allCases) func startupRecoveryRemovesTempFilesAndMovesUnknownFilesToLostAndFound(
        engine: StorageEngine
    ) async throws {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        let image = try await f.upload("galleries/g1", "kept")
        _ = try await f.service.createLab(
            labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: image.name, caller: educator)
        let keptBlob = try await f.blobPath(image.name)

        let temps = ["regions/eastus/tmp/0123.part", "regions/westus/tmp/dead.part", "labs/tmp/beef.part"]
        let unknown = [
            "regions/eastus/blobs/ab/ghost.00ff.blob", "regions/westus/blobs/g9/replica.blob",
            "regions/westus/partial/g1/x.part", "labs/a1/old.1234.template",
        ]
        for p in temps + unknown {
            let url = f.dir.appendingPathComponent(p)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data("junk \(p)".utf8).write(to: url)
        }
        // An upload interrupted mid-stream (its session never finished) leaves a temp file too.
        let interrupted = try await f.service.beginUpload(
            ImageUploadHeader(
                gallery: "galleries/g1", imageID: "cut", displayName: "",
                osType: .linux, osState: .generalized), caller: admin)
        try await interrupted.append([1, 2, 3])
        let interruptedTemp = try #require(f.files(under: "regions/eastus/tmp").first { !temps.contains($0) })

        // Simulate a restart: a fresh service on the same data dir runs recovery.
        let restarted = try await f.reopened()
        let report = try await blocking { try restarted.recoverFiles() }
        #expect(report.removedTempFiles == ([interruptedTemp] + temps).sorted())
        #expect(report.lostAndFound == unknown.sorted())
        let dir = try #require(report.lostAndFoundDirectory)
        for p in temps {
            #expect(!FileManager.default.fileExists(atPath: f.dir.appendingPathComponent(p).path), "\(p)")
        }
        for p in unknown {
            #expect(!FileManager.default.fileExists(atPath: f.dir.appendingPathComponent(p).path), "\(p)")
            let moved = f.dir.appendingPathComponent("\(dir)/\(p)")
            #expect(try Data(contentsOf: moved) == Data("junk \(p)".utf8), "\(p) is kept in lost+found, never deleted")
        }
        #expect(FileManager.default.fileExists(atPath: keptBlob.path))
        #expect(try await restarted.getImage(name: image.name, caller: reader) == image)
        interrupted.abort()
    }
}
