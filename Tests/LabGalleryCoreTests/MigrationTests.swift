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
        let files = [
            "regions/eastus/blobs/g/img.aa.blob", "regions/westus/blobs/g/img.bb.blob", "labs/a/l.cc.template",
        ]
        try await blocking {
            for f in files {
                try FileManager.default.createDirectory(
                    at: layout.url(f).deletingLastPathComponent(), withIntermediateDirectories: true)
                try bytes.write(to: layout.url(f))
            }
            let pool = try DatabasePool(path: layout.databaseURL.path)
            try SQLiteStorage.migrator.migrate(pool, upTo: "v2")
            try pool.write { db in
                try db.execute(
                    sql: """
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
        #expect(
            blobs.first { $0.path == files[2] }?.region == "eastus", "a lab template is a blob of its account's region")
        #expect(try await service.getImage(name: "galleries/g/images/img", caller: reader).sha256 == sha)
        #expect(
            try await service.getLab(name: "labAccounts/a/labs/l", caller: reader).templateImage
                == "galleries/g/images/img")
        // Deleting the lab, then the image, removes each file once nothing references it.
        try await service.deleteLab(name: "labAccounts/a/labs/l", caller: educator)
        #expect(!FileManager.default.fileExists(atPath: layout.url(files[2]).path))
        try await service.deleteImage(name: "galleries/g/images/img", caller: admin)
        #expect(!FileManager.default.fileExists(atPath: layout.url(files[0]).path))
        #expect(!FileManager.default.fileExists(atPath: layout.url(files[1]).path))
    }

    /// An old database (schema v2) opens under the current schema with every row of every table,
    /// and its foreign keys cascade: deleting an image or a gallery takes the replication rows,
    /// overrides and role assignments with it (the storage deletes nothing by hand).
    @Test func aVersion2DatabaseKeepsItsRowsAndItsForeignKeysCascade() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgcore-v2c-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let layout = DataLayout(root: dir)
        let sha = String(repeating: "ab", count: 32)
        try await blocking {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let pool = try DatabasePool(path: layout.databaseURL.path)
            try SQLiteStorage.migrator.migrate(pool, upTo: "v2")
            try pool.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO gallery VALUES ('g', 'G', 'eastus', 'United States');
                        INSERT INTO labAccount VALUES ('a', 'A', 'eastus', 'g');
                        INSERT INTO roleAssignment VALUES ('g', 'lab-services', 'Contributor');
                        INSERT INTO image (galleryId, id, displayName, osType, osState, source, sourceLab, sizeBytes, sha256, region, author, blobPath)
                            VALUES ('g', 'one', 'One', 'LINUX', 'GENERALIZED', 'UPLOADED', NULL, 10, '\(sha)', 'eastus', 'alice', 'regions/eastus/blobs/g/one.blob'),
                                   ('g', 'two', 'Two', 'WINDOWS', 'SPECIALIZED', 'UPLOADED', NULL, 20, '\(sha)', 'eastus', 'bob', 'regions/eastus/blobs/g/two.blob');
                        INSERT INTO replication (galleryId, imageId, region, state, bytesCopied, bytesTotal, error, attempts, blobPath, partialPath)
                            VALUES ('g', 'one', 'westus', 'REPLICATING', 4, 10, NULL, 1, NULL, 'regions/westus/partial/g/one.x.part'),
                                   ('g', 'two', 'westus', 'FAILED', 0, 20, 'link down', 5, NULL, NULL);
                        INSERT INTO imageDisabled VALUES ('a', 'g', 'one'), ('a', 'g', 'two');
                        """)
            }
            try pool.close()
        }
        let storage = try await blocking { try SQLiteStorage(path: layout.databaseURL.path) }
        defer { try? storage.close() }
        let one = ImageName(gallery: GalleryName(id: "g"), id: "one")
        let two = ImageName(gallery: GalleryName(id: "g"), id: "two")
        try await blocking {
            try storage.read { (tx) throws in
                let rows = try tx.allReplicationRows()
                #expect(rows.map(\.record.state) == [.replicating, .failed])
                #expect(rows[0].partialPath == "regions/westus/partial/g/one.x.part" && rows[0].record.bytesCopied == 4)
                #expect(rows[1].record.error == "link down" && rows[1].record.attempts == 5)
                #expect(try tx.disabledImages(for: LabAccountName(id: "a")) == [one, two])
                #expect(
                    try tx.roleAssignments(on: GalleryName(id: "g")) == [
                        RoleAssignment(principal: "lab-services", role: "Contributor")
                    ])
                #expect(
                    try tx.images(in: GalleryName(id: "g"), after: nil, limit: nil).map(\.image.author) == [
                        "alice", "bob",
                    ])
            }
            let cascades = try storage.pool.read { db in
                try Row.fetchAll(
                    db,
                    sql: """
                        SELECT m.name AS child, f."table" AS parent, f.on_delete AS onDelete
                        FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f
                        WHERE m.type = 'table' GROUP BY m.name, f.id ORDER BY m.name, f."table"
                        """
                ).map { "\($0["child"] as String)→\($0["parent"] as String) \($0["onDelete"] as String)" }
            }
            for edge in [
                "image→gallery CASCADE", "imageDisabled→image CASCADE", "imageDisabled→labAccount CASCADE",
                "replication→image CASCADE", "roleAssignment→gallery CASCADE",
            ] {
                #expect(cascades.contains(edge), "\(edge) in \(cascades)")
            }
            #expect(try storage.pool.read { db in try Row.fetchAll(db, sql: "PRAGMA foreign_key_check") }.isEmpty)

            try storage.write { tx in try tx.deleteImage(one) }
            try storage.read { (tx) throws in
                #expect(try tx.replicationRows(of: one).isEmpty)
                #expect(try tx.replicationRows(of: two).count == 1)
                #expect(try tx.disabledImages(for: LabAccountName(id: "a")) == [two])
            }
            try storage.write { (tx) throws in
                try tx.setAttachedGallery(nil, of: LabAccountName(id: "a"))
                try tx.deleteGallery(GalleryName(id: "g"))
            }
            try storage.read { (tx) throws in
                #expect(try tx.allReplicationRows().isEmpty)
                #expect(try tx.disabledImages(for: LabAccountName(id: "a")).isEmpty)
                #expect(try tx.roleAssignments(on: GalleryName(id: "g")).isEmpty)
                #expect(try tx.labAccount(LabAccountName(id: "a")) != nil, "the account stays")
            }
        }
    }
}
