import Foundation
import Testing
@testable import LabGalleryCore

@Suite struct PersistenceTests {
    @Test func dataSurvivesReopenAndMigrationsAreIdempotent() throws {
        let f = try Fixture()
        try f.account("a1", gallery: .create(galleryID: "g1", displayName: "G"))
        let image = try f.upload("galleries/g1", "img")
        let reopened = try LabGalleryService.open(dataDirectory: f.dir)
        #expect(try reopened.getImage(name: image.name, caller: reader) == image)
        #expect(try reopened.getLabAccount(name: "labAccounts/a1", caller: reader).attachedGallery == "galleries/g1")
        #expect(try reopened.recoverFiles() == RecoveryReport(removedTempFiles: [], removedOrphanFiles: []))
    }

    /// Crash safety at the SQLite level: a burst of acknowledged write transactions, then a second,
    /// independent DatabasePool on the same file (as a restarted process would) without closing or
    /// checkpointing the first, sees an intact database with every acknowledged write.
    @Test func burstOfWritesIsDurableAndIntactFromSecondPool() async throws {
        let f = try Fixture()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<4 {
                group.addTask {
                    for i in 0..<50 { _ = try f.service.createGallery(id: "g\(w)-\(i)", displayName: "", region: "eastus", caller: admin) }
                }
            }
            try await group.waitForAll()
        }
        let second = try SQLiteStorage(path: f.service.layout.databaseURL.path)
        #expect(try second.journalMode() == "wal")
        #expect(try second.integrityCheck() == "ok")
        let names = try second.read { try $0.galleries(after: nil, limit: nil) }.map(\.name)
        #expect(names.count == 200)
        #expect(Set(names) == Set((0..<4).flatMap { w in (0..<50).map { "galleries/g\(w)-\($0)" } }))
    }

    @Test func failedTransactionRollsBackEverything() throws {
        let f = try Fixture()
        // Fails after inserting the gallery inside the same transaction → nothing remains.
        #expect(throws: LabGalleryError.self) {
            try f.service.storage.write { tx in
                try tx.insertGallery(Gallery(name: "galleries/g1", displayName: "", region: "eastus", geography: "United States"))
                throw LabGalleryError.internal(message: "boom")
            }
        }
        #expect(try f.service.listGalleries(caller: reader).items.isEmpty)
    }

    @Test func startupRecoveryRemovesTempFilesAndOrphanBlobs() throws {
        let f = try Fixture()
        try f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        let image = try f.upload("galleries/g1", "kept")
        _ = try f.service.createLab(labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: image.name, caller: educator)
        let keptBlob = try f.blobPath(image.name)
        let keptTemplate = try #require(f.files(under: "labs").first)

        let planted = ["regions/eastus/tmp/0123.part", "regions/westus/tmp/dead.part", "labs/tmp/beef.part",
                       "regions/eastus/blobs/g1/ghost.00ff.blob", "regions/westus/blobs/g9/replica.blob",
                       "labs/a1/old.1234.template"]
        for p in planted {
            let url = f.dir.appendingPathComponent(p)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data("junk".utf8).write(to: url)
        }
        // An upload interrupted mid-stream (its session never finished) leaves a temp file too.
        let interrupted = try f.service.beginUpload(ImageUploadHeader(gallery: "galleries/g1", imageID: "cut", displayName: "",
                                                                      osType: .linux, osState: .generalized), caller: admin)
        try interrupted.append([1, 2, 3])
        let interruptedTemp = try #require(f.files(under: "regions/eastus/tmp").first { !planted.contains($0) })

        // Simulate a restart: a fresh service on the same data dir runs recovery.
        let restarted = try LabGalleryService.open(dataDirectory: f.dir)
        let report = try restarted.recoverFiles()
        #expect(report.removedTempFiles == ([interruptedTemp] + planted.filter { $0.hasSuffix(".part") }).sorted())
        #expect(report.removedOrphanFiles == planted.filter { !$0.hasSuffix(".part") }.sorted())
        for p in planted { #expect(!FileManager.default.fileExists(atPath: f.dir.appendingPathComponent(p).path), "\(p)") }
        #expect(FileManager.default.fileExists(atPath: keptBlob.path))
        #expect(f.files(under: "labs") == [keptTemplate])
        #expect(try restarted.getImage(name: image.name, caller: reader) == image)
        interrupted.abort()
    }
}
