import Foundation
import TestSupport
import Testing

@testable import LabGalleryCore

/// Content-addressed blobs: identical bytes are stored once per region and shared by images,
/// replicas and lab templates; a blob goes with its last reference.
@Suite struct BlobTests {
    @Test(arguments: StorageEngine.allCases) func identicalBytesAreStoredOncePerRegionAndGoWithTheirLastReference(
        engine: StorageEngine
    ) async throws {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        let bytes = pattern(200_000, multiplier: 3, offset: 1)
        let a = try await f.upload("galleries/g1", "a", bytes: bytes, chunk: 50_000)
        let b = try await f.upload("galleries/g1", "b", bytes: bytes, chunk: 70_000)
        #expect(a.sha256 == b.sha256)
        #expect(try await f.blobPath(a.name) == f.blobPath(b.name), "both images reference one blob")
        #expect(f.files(under: "regions/eastus/blobs").count == 1)
        let cost = try await f.service.galleryCost(gallery: "galleries/g1", sheet: .default, caller: reader)
        #expect(cost.billedBytes == 400_000 && cost.storedBytes == 200_000, "billed per image, stored once")

        try await f.service.deleteImage(name: a.name, caller: admin)
        #expect(f.files(under: "regions/eastus/blobs").count == 1, "b still references the blob")
        #expect(try await Data(contentsOf: f.blobPath(b.name)) == Data(bytes))
        try await f.service.deleteImage(name: b.name, caller: admin)
        #expect(f.files(under: "regions/eastus/blobs").isEmpty, "the last reference took the blob")
        #expect(try await blocking { try f.service.storage.read { try $0.blobs() } }.isEmpty)
    }

    @Test(arguments: StorageEngine.allCases) func labsShareTheBlobAndKeepItAfterTheImageRowIsGone(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        let image = try await f.upload("galleries/g1", "img", bytes: pattern(10_000, multiplier: 5, offset: 2))
        _ = try await f.service.createLab(
            labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: image.name, caller: educator)
        _ = try await f.service.createLab(
            labAccount: "labAccounts/a1", labID: "l2", displayName: "", templateImage: image.name, caller: educator)
        #expect(
            f.files(under: "regions/eastus/blobs").count == 1 && f.files(under: "labs").isEmpty, "no template copies")
        try await f.service.deleteLab(name: "labAccounts/a1/labs/l1", caller: educator)
        try await f.service.deleteLab(name: "labAccounts/a1/labs/l2", caller: educator)
        #expect(f.files(under: "regions/eastus/blobs").count == 1, "the image still references it")
        try await f.service.deleteImage(name: image.name, caller: admin)
        #expect(f.files(under: "regions/eastus/blobs").isEmpty)
    }

    @Test(arguments: StorageEngine.allCases) func savingAnUnchangedTemplateCopiesNothing(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        let base = try await f.upload("galleries/g1", "base", bytes: pattern(50_000, multiplier: 7, offset: 0))
        _ = try await f.service.createLab(
            labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: base.name, caller: educator)
        let blobs = f.files(under: "regions")
        let saved = try await f.service.saveLabTemplateImage(
            lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "", caller: educator)
        #expect(saved.sha256 == base.sha256 && saved.sizeBytes == base.sizeBytes)
        #expect(f.files(under: "regions") == blobs, "no new file: the saved image shares the blob")
        #expect(try await f.blobPath(saved.name) == f.blobPath(base.name))
    }

    @Test(arguments: StorageEngine.allCases) func aBlobTheDatabaseVouchesForButIsGoneIsDataLossAndFsckSaysSo(
        engine: StorageEngine
    ) async throws {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        let gone = try await f.upload("galleries/g1", "gone", bytes: pattern(20_000, multiplier: 9, offset: 1))
        let bad = try await f.upload("galleries/g1", "bad", bytes: pattern(20_000, multiplier: 11, offset: 1))
        #expect(try await blocking { try f.service.fsck() }.isClean)
        let gonePath = try await f.blobPath(gone.name)
        try FileManager.default.removeItem(at: gonePath)
        let badPath = try await f.blobPath(bad.name)
        let handle = try FileHandle(forWritingTo: badPath)
        try handle.write(contentsOf: Data([0xFF]))
        try handle.close()

        let lost = await expectError(.dataLoss, contains: ["missing", "fsck"]) {
            _ = try await f.service.createLab(
                labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: gone.name, caller: educator)
        }
        #expect(lost?.message.contains(f.dir.path) == false, "a client never sees the server's absolute paths")
        let listed = try await f.service.listLabAccountImages(labAccount: "labAccounts/a1", caller: reader)
        #expect(listed.first { $0.image.name == gone.name }?.unavailable?.reason == .dataLoss)
        let report = try await blocking { try f.service.fsck() }
        #expect(!report.isClean)
        #expect(report.problems.contains { $0.contains("missing blob") && $0.contains(gonePath.lastPathComponent) })
        #expect(report.problems.contains { $0.contains("corrupt blob") && $0.contains(badPath.lastPathComponent) })
    }

    // SQLite only: it reads or removes the SQLite database file itself.
    @Test func aDataDirectoryWithBlobsButNoDatabaseRefusesToOpen() async throws {
        let f = try await Fixture()
        try await f.gallery("g1")
        try await f.upload("galleries/g1", "img")
        for suffix in ["", "-wal", "-shm"] {
            try? FileManager.default.removeItem(atPath: f.service.layout.databaseURL.path + suffix)
        }
        await expectError(.failedPrecondition, contains: ["no database", "Restore", "Nothing was changed"]) {
            _ = try await blocking { try LabGalleryService.open(dataDirectory: f.dir) }
        }
        #expect(f.files(under: "regions/eastus/blobs").count == 1, "nothing was deleted")
        #expect(
            !FileManager.default.fileExists(atPath: f.service.layout.databaseURL.path), "no empty database was created")
    }

    @Test func theCatalogIsReconciledAtStart() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgcore-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        func open(_ geographies: [String: [String]]) async throws -> LabGalleryService {
            let catalog = try RegionCatalog(geographies: geographies)
            return try await blocking {
                try LabGalleryService.open(
                    dataDirectory: dir, configuration: LabGalleryConfiguration(regionCatalog: catalog))
            }
        }
        let first = try await open(["Test": ["r1", "r2"]])
        _ = try await first.createGallery(id: "g", displayName: "", region: "r1", caller: admin)
        let up = try await first.beginUpload(
            ImageUploadHeader(
                gallery: "galleries/g", imageID: "img", displayName: "", osType: .linux, osState: .generalized),
            caller: admin)
        try await up.append([1, 2, 3])
        let image = try await up.finish()
        #expect(try await first.replicationStatus(image: image.name, caller: reader).regions.map(\.region) == ["r2"])

        // A region joins the geography: the image gets a PENDING job there.
        let grown = try await open(["Test": ["r1", "r2", "r3"]])
        let added = try await blocking { try grown.reconcileCatalog() }
        #expect(added.added.map { "\($0.image) \($0.region)" } == ["\(image.name) r3"])
        let status = try await grown.replicationStatus(image: image.name, caller: reader)
        #expect(status.regions.map(\.region) == ["r2", "r3"] && status.regions.last?.state == .pending)
        #expect(try await blocking { try grown.reconcileCatalog() }.added.isEmpty, "idempotent")

        // The home region leaves the catalog: reported (start-up log, fsck), never COMPLETED silently.
        let shrunk = try await open(["Test": ["r2", "r3"]])
        #expect(try await blocking { try shrunk.reconcileCatalog() }.imagesOutsideCatalog == [image.name])
        let report = try await blocking { try shrunk.fsck() }
        #expect(report.problems.contains { $0.contains(image.name) && $0.contains("not in the region catalog") })
        await expectError(.failedPrecondition, contains: ["r1", "not in the server's region catalog"]) {
            let u = try await shrunk.beginUpload(
                ImageUploadHeader(
                    gallery: "galleries/g", imageID: "more", displayName: "", osType: .linux, osState: .generalized),
                caller: admin)
            try await u.append([4])
            _ = try await u.finish()
        }
    }
}
