import Foundation
import TestSupport
import Testing

@testable import LabGalleryCore

@Suite struct UploadTests {
    @Test(arguments: StorageEngine.allCases) func uploadStreamsChunksToABlobAndComputesSHA256(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1", region: "westeurope")
        let bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        let up = try await f.service.beginUpload(
            ImageUploadHeader(
                gallery: "galleries/g1", imageID: "ubuntu", displayName: "Ubuntu",
                osType: .linux, osState: .generalized), caller: admin)
        #expect(up.imageName == "galleries/g1/images/ubuntu")
        // Mixed chunk sizes through both append overloads.
        var i = 0
        var n = 1
        while i < bytes.count {
            let end = min(i + n * 4099, bytes.count)
            if n % 2 == 0 {
                let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: end - i, alignment: 1)
                defer { raw.deallocate() }
                raw.copyBytes(from: bytes[i..<end])
                try await up.append(UnsafeRawBufferPointer(raw))
            } else {
                try await up.append(bytes[i..<end])
            }
            i = end
            n += 1
        }
        #expect(up.bytesReceived == 1_000_000)
        let image = try await up.finish()
        #expect(
            image
                == Image(
                    name: "galleries/g1/images/ubuntu", displayName: "Ubuntu", osType: .linux, osState: .generalized,
                    source: .uploaded, sourceLab: nil, sizeBytes: 1_000_000, sha256: millionASHA256,
                    region: "westeurope", author: "alice"))
        #expect(try await f.service.getImage(name: image.name, caller: reader) == image)
        let blob = try await f.blobPath(image.name)
        #expect(
            blob.path.hasPrefix(f.dir.appendingPathComponent("regions/westeurope/blobs/cd/\(millionASHA256).").path),
            "content-addressed: the region's blob store names it by its SHA-256")
        #expect(try Data(contentsOf: blob) == Data(bytes))
        #expect(f.files(under: "regions/westeurope/tmp").isEmpty)
        await expectError(.failedPrecondition) { try await up.append([1, 2, 3]) }
    }

    @Test(arguments: StorageEngine.allCases) func matchingHeaderChecksumIsAcceptedInAnyCase(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        let image = try await f.upload(
            "galleries/g1", "abc", bytes: Array("abc".utf8), sha256: abcSHA256.uppercased(), chunk: 1)
        #expect(image.sha256 == abcSHA256 && image.sizeBytes == 3)
    }

    @Test(arguments: StorageEngine.allCases) func wrongChecksumStoresNothing(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        await expectError(.invalidArgument, field: "sha256", contains: [abcSHA256]) {
            try await f.upload("galleries/g1", "img", bytes: Array("abd".utf8), sha256: abcSHA256)
        }
        await expectError(.notFound) {
            _ = try await f.service.getImage(name: "galleries/g1/images/img", caller: reader)
        }
        #expect(f.files(under: "regions").isEmpty, "no temp file, no blob")
        await expectError(.invalidArgument, field: "sha256") {
            try await f.upload("galleries/g1", "img", sha256: "xyz")
        }
    }

    @Test(arguments: StorageEngine.allCases) func headerValidation(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        await expectError(.invalidArgument, field: "os_type") {
            _ = try await f.service.beginUpload(
                ImageUploadHeader(
                    gallery: "galleries/g1", imageID: "i", displayName: "", osType: nil, osState: .generalized),
                caller: admin)
        }
        await expectError(.invalidArgument, field: "os_state") {
            _ = try await f.service.beginUpload(
                ImageUploadHeader(
                    gallery: "galleries/g1", imageID: "i", displayName: "", osType: .windows, osState: nil),
                caller: admin)
        }
        await expectError(.invalidArgument, field: "gallery") {
            _ = try await f.service.beginUpload(
                ImageUploadHeader(gallery: "", imageID: "i", displayName: "", osType: .windows, osState: .generalized),
                caller: admin)
        }
        await expectError(.notFound, resource: "galleries/g2") { try await f.upload("galleries/g2", "i") }
        await expectError(.invalidArgument, field: "chunk") { try await f.upload("galleries/g1", "empty", bytes: []) }
        #expect(f.files(under: "regions").isEmpty)
    }

    @Test(arguments: StorageEngine.allCases) func abortedOrDroppedUploadLeavesNoRowAndNoFile(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        let header = ImageUploadHeader(
            gallery: "galleries/g1", imageID: "img", displayName: "", osType: .windows, osState: .specialized)
        let up = try await f.service.beginUpload(header, caller: admin)
        try await up.append([UInt8](repeating: 1, count: 5000))
        #expect(f.files(under: "regions/eastus/tmp").count == 1, "bytes go to a temp file in the home region")
        up.abort()
        up.abort()
        #expect(f.files(under: "regions").isEmpty)
        await expectError(.failedPrecondition) { _ = try await up.finish() }
        do {
            let dropped = try await f.service.beginUpload(header, caller: admin)
            try await dropped.append([1, 2, 3])
        }
        #expect(f.files(under: "regions").isEmpty, "deinit removes the temp file of an unfinished upload")
        await expectError(.notFound) {
            _ = try await f.service.getImage(name: "galleries/g1/images/img", caller: reader)
        }
    }

    @Test(arguments: StorageEngine.allCases) func uploadSessionWorksFromAsyncLoop(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        let up = try await f.service.beginUpload(
            ImageUploadHeader(
                gallery: "galleries/g1", imageID: "img", displayName: "",
                osType: .linux, osState: .generalized), caller: admin)
        let chunks = AsyncStream<[UInt8]> { c in
            for _ in 0..<10 { c.yield([UInt8](repeating: UInt8(ascii: "a"), count: 100_000)) }
            c.finish()
        }
        for await chunk in chunks {
            try await Task.detached { try await up.append(chunk) }.value
        }
        #expect(try await up.finish().sha256 == millionASHA256)
    }

    @Test(arguments: StorageEngine.allCases) func deleteImageRemovesRowAndBlob(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        let image = try await f.upload("galleries/g1", "img")
        let blob = try await f.blobPath(image.name)
        #expect(FileManager.default.fileExists(atPath: blob.path))
        try await f.service.deleteImage(name: image.name, caller: admin)
        #expect(!FileManager.default.fileExists(atPath: blob.path))
        await expectError(.notFound) { try await f.service.deleteImage(name: image.name, caller: admin) }
        await expectError(.notFound) { _ = try await f.service.replicationStatus(image: image.name, caller: reader) }
    }
}

@Suite struct ReplicationRecordTests {
    @Test(arguments: StorageEngine.allCases) func storedImageGetsPendingRecordPerOtherRegionOfGeography(
        engine: StorageEngine
    ) async throws {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1", region: "eastus")
        let image = try await f.upload("galleries/g1", "img", bytes: [UInt8](repeating: 9, count: 4321))
        let status = try await f.service.replicationStatus(image: image.name, caller: reader)
        #expect(status.image == image.name)
        #expect(status.aggregatedState == .replicating)
        #expect(
            status.regions.map(\.region) == [
                "centralus", "eastus2", "northcentralus", "southcentralus", "westcentralus", "westus", "westus2",
                "westus3",
            ])
        for r in status.regions {
            #expect(
                r
                    == RegionReplication(
                        region: r.region, state: .pending, bytesCopied: 0, bytesTotal: 4321, error: nil, attempts: 0))
            #expect(r.progressPercent == 0)
        }
    }

    @Test(arguments: StorageEngine.allCases) func singleRegionGeographyIsCompletedAtOnce(engine: StorageEngine)
        async throws
    {
        let catalog = try RegionCatalog(geographies: ["Solo": ["solo1"], "Pair": ["p1", "p2"]])
        let f = try await Fixture(LabGalleryConfiguration(regionCatalog: catalog), engine: engine)
        try await f.gallery("g1", region: "solo1")
        let image = try await f.upload("galleries/g1", "img")
        let status = try await f.service.replicationStatus(image: image.name, caller: reader)
        #expect(status.regions.isEmpty && status.aggregatedState == .completed)
    }

    @Test func aggregatedStateRules() async {
        func r(_ s: ReplicationState) -> RegionReplication {
            RegionReplication(region: "r", state: s, bytesCopied: 50, bytesTotal: 200, error: nil, attempts: 1)
        }
        #expect(ReplicationStatus.aggregate([]) == .completed)
        #expect(ReplicationStatus.aggregate([r(.completed), r(.pending)]) == .replicating)
        #expect(ReplicationStatus.aggregate([r(.failed), r(.replicating)]) == .replicating)
        #expect(ReplicationStatus.aggregate([r(.failed), r(.completed)]) == .failed)
        #expect(ReplicationStatus.aggregate([r(.completed), r(.completed)]) == .completed)
        #expect(r(.replicating).progressPercent == 25 && r(.completed).progressPercent == 100)
    }
}

@Suite struct LabAccountImageTests {
    @Test(arguments: StorageEngine.allCases) func imagesOfAttachedGalleryAreEnabledByDefault(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        try await f.account("empty")
        try await f.upload("galleries/g1", "i1")
        try await f.upload("galleries/g1", "i2")
        let list = try await f.service.listLabAccountImages(labAccount: "labAccounts/a1", caller: reader)
        #expect(list.map(\.image.name) == ["galleries/g1/images/i1", "galleries/g1/images/i2"])
        #expect(list.allSatisfy { $0.enabled })
        #expect(try await f.service.listLabAccountImages(labAccount: "labAccounts/empty", caller: reader).isEmpty)
    }

    @Test(arguments: StorageEngine.allCases) func setImagesEnabledPerAccount(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        try await f.account("a2", gallery: .attach(gallery: "galleries/g1"))
        try await f.upload("galleries/g1", "i1")
        try await f.upload("galleries/g1", "i2")
        let result = try await f.service.setImagesEnabled(
            labAccount: "labAccounts/a1", images: ["galleries/g1/images/i2"], enabled: false, caller: admin)
        #expect(result.map(\.image.name) == ["galleries/g1/images/i2"] && result.allSatisfy { !$0.enabled })
        #expect(
            try await f.service.listLabAccountImages(labAccount: "labAccounts/a1", caller: reader).map(\.enabled) == [
                true, false,
            ])
        #expect(
            try await f.service.listLabAccountImages(labAccount: "labAccounts/a2", caller: reader).map(\.enabled) == [
                true, true,
            ])
        _ = try await f.service.setImagesEnabled(
            labAccount: "labAccounts/a1", images: ["galleries/g1/images/i2"], enabled: true, caller: admin)
        #expect(
            try await f.service.listLabAccountImages(labAccount: "labAccounts/a1", caller: reader).map(\.enabled) == [
                true, true,
            ])
    }

    @Test(arguments: StorageEngine.allCases) func setImagesEnabledIsAllOrNothing(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        try await f.gallery("other")
        try await f.upload("galleries/g1", "i1")
        try await f.upload("galleries/other", "x")
        await expectError(.notFound, resource: "galleries/g1/images/ghost") {
            _ = try await f.service.setImagesEnabled(
                labAccount: "labAccounts/a1", images: ["galleries/g1/images/i1", "galleries/g1/images/ghost"],
                enabled: false, caller: admin)
        }
        await expectError(.failedPrecondition, contains: ["galleries/other/images/x", "attached"]) {
            _ = try await f.service.setImagesEnabled(
                labAccount: "labAccounts/a1", images: ["galleries/g1/images/i1", "galleries/other/images/x"],
                enabled: false, caller: admin)
        }
        await expectError(.invalidArgument, field: "images") {
            _ = try await f.service.setImagesEnabled(
                labAccount: "labAccounts/a1", images: ["galleries/g1/images/i1", "nonsense"], enabled: false,
                caller: admin)
        }
        #expect(
            try await f.service.listLabAccountImages(labAccount: "labAccounts/a1", caller: reader).allSatisfy {
                $0.enabled
            }, "nothing changed")
    }
}
