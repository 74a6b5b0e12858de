import Foundation
import GRDB
import TestSupport
import Testing
@testable import LabGalleryCore

/// A data directory from before content-addressed blobs (schema v2: one file per image, replica and
/// lab template) opens under v3 with every row, file and reference intact.
@Suite struct MigrationTests {
    @Test func aVersion2DataDirectoryKeepsEveryImageReplicaAndLab() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgcore-v2-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let layout = DataLayout(root: dir)
        let bytes = Data(pattern(5_000, multiplier: 13, offset: 7))
        let sha = "6b1c4f3a" + String(repeating: "0", count: 56)
        let files = ["regions/eastus/blobs/g/img.aa.blob", "regions/westus/blobs/g/img.bb.blob", "labs/a/l.cc.template"]
        try await blocking {
            for f in files {
                try FileManager.default.createDirectory(at: layout.url(f).deletingLastPathComponent(), withIntermediateDirectories: true)
                try bytes.write(to: layout.url(f))
            }
            let pool = try DatabasePool(path: layout.databaseURL.path)
            try SQLiteStorage.migrator.migrate(pool, upTo: "v2")
            try pool.write { db in
                try db.execute(sql: """
                    INSERT INTO gallery VALUES ('g', 'G', 'eastus', 'United States');
                    INSERT INTO labAccount VALUES ('a', 'A', 'eastus', 'g');
                    INSERT INTO image (galleryId, id, displayName, osType, osState, source, sourceLab, sizeBytes, sha256, region, author, blobPath)
                        VALUES ('g', 'img', 'Img', 'LINUX', 'GENERALIZED', 'UPLOADED', NULL, 5000, '\(sha)', 'eastus', 'alice', '\(files[0])');
                    INSERT INTO replication (galleryId, imageId, region, state, bytesCopied, bytesTotal, error, attempts, blobPath, partialPath)
                        VALUES ('g', 'img', 'westus', 'COMPLETED', 5000, 5000, NULL, 1, '\(files[1])', NULL);
                    INSERT INTO lab VALUES ('a', 'l', 'L', 'g', 'img', 'LINUX', '\(files[2])');
                    """)
            }
            try pool.close()
        }
        let service = try await blocking { try LabGalleryService.open(dataDirectory: dir) }
        let report = try await blocking { try service.recoverFiles() }
        #expect(report.lostAndFound.isEmpty && report.removedBlobs.isEmpty, "every old file is a known blob")
        let blobs = try await blocking { try service.storage.read { try $0.blobs() } }
        #expect(blobs.map(\.path) == files.sorted())
        #expect(blobs.allSatisfy { $0.state == .live && $0.sha256 == sha && $0.sizeBytes == 5000 })
        #expect(blobs.first { $0.path == files[2] }?.region == "eastus", "a lab template is a blob of its account's region")
        #expect(try await service.getImage(name: "galleries/g/images/img", caller: reader).sha256 == sha)
        #expect(try await service.getLab(name: "labAccounts/a/labs/l", caller: reader).templateImage == "galleries/g/images/img")
        // Deleting the lab, then the image, removes each file once nothing references it.
        try await service.deleteLab(name: "labAccounts/a/labs/l", caller: educator)
        #expect(!FileManager.default.fileExists(atPath: layout.url(files[2]).path))
        try await service.deleteImage(name: "galleries/g/images/img", caller: admin)
        #expect(!FileManager.default.fileExists(atPath: layout.url(files[0]).path))
        #expect(!FileManager.default.fileExists(atPath: layout.url(files[1]).path))
    }
}
