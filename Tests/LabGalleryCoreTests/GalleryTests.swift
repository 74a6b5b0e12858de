import Foundation
import TestSupport
import Testing

@testable import LabGalleryCore

@Suite struct LabAccountAndGalleryTests {
    @Test(arguments: StorageEngine.allCases) func createAccountWithNewGalleryCreatesItInAccountRegionAndAttaches(
        engine: StorageEngine
    ) async throws {
        let f = try await Fixture(engine: engine)
        let a = try await f.account(
            "a1", region: "francecentral", gallery: .create(galleryID: "g1", displayName: "G One"))
        #expect(
            a
                == LabAccount(
                    name: "labAccounts/a1", displayName: "a1", region: "francecentral", attachedGallery: "galleries/g1")
        )
        let g = try await f.service.getGallery(name: "galleries/g1", caller: reader)
        #expect(g == Gallery(name: "galleries/g1", displayName: "G One", region: "francecentral", geography: "France"))
        #expect(
            try await f.service.listRoleAssignments(gallery: "galleries/g1", caller: reader) == [
                .labServicesContributor
            ])
    }

    @Test(arguments: StorageEngine.allCases) func createAccountAttachingExistingGalleryOrNone(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1", region: "westus2")
        let a = try await f.account("a1", region: "eastus", gallery: .attach(gallery: "galleries/g1"))
        #expect(a.attachedGallery == "galleries/g1")
        let b = try await f.account("b1", region: "eastus")
        #expect(b.attachedGallery == nil)
        #expect(try await f.service.getLabAccount(name: "labAccounts/b1", caller: reader).attachedGallery == nil)
        #expect(
            try await f.service.listLabAccounts(caller: reader).items.map(\.name) == [
                "labAccounts/a1", "labAccounts/b1",
            ])
    }

    @Test(arguments: StorageEngine.allCases) func attachingASecondGalleryIsFailedPreconditionSayingDetachFirst(
        engine: StorageEngine
    ) async throws {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        try await f.gallery("g2")
        try await f.account("a1", gallery: .attach(gallery: "galleries/g1"))
        await expectError(.failedPrecondition, contains: ["galleries/g1", "detach", "DetachGallery"]) {
            _ = try await f.service.attachGallery(labAccount: "labAccounts/a1", gallery: "galleries/g2", caller: admin)
        }
        #expect(
            try await f.service.getLabAccount(name: "labAccounts/a1", caller: reader).attachedGallery == "galleries/g1")
        #expect(try await f.service.listRoleAssignments(gallery: "galleries/g2", caller: reader).isEmpty)
    }

    @Test(arguments: StorageEngine.allCases) func detachRequiresConfirm(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        await expectError(.invalidArgument, field: "confirm") {
            _ = try await f.service.detachGallery(labAccount: "labAccounts/a1", confirm: false, caller: admin)
        }
        #expect(
            try await f.service.getLabAccount(name: "labAccounts/a1", caller: reader).attachedGallery == "galleries/g1")
        let a = try await f.service.detachGallery(labAccount: "labAccounts/a1", confirm: true, caller: admin)
        #expect(a.attachedGallery == nil)
        await expectError(.failedPrecondition) {
            _ = try await f.service.detachGallery(labAccount: "labAccounts/a1", confirm: true, caller: admin)
        }
    }

    @Test(arguments: StorageEngine.allCases) func detachNamingTheGalleryDetachesOnlyThatOne(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g2")
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        func detach(_ gallery: String?) async throws -> LabAccount {
            try await f.service.detachGallery(
                labAccount: "labAccounts/a1", confirm: true, gallery: gallery, caller: admin)
        }
        // Another gallery than the attached one: refused, naming both, nothing changed.
        await expectError(
            .failedPrecondition,
            contains: ["labAccounts/a1", "galleries/g1 attached", "not galleries/g2", "nothing was detached"]
        ) {
            _ = try await detach("galleries/g2")
        }
        await expectError(.failedPrecondition, contains: ["not galleries/ghost"]) {
            _ = try await detach("galleries/ghost")
        }
        #expect(
            try await f.service.getLabAccount(name: "labAccounts/a1", caller: reader).attachedGallery == "galleries/g1")
        #expect(
            try await f.service.listRoleAssignments(gallery: "galleries/g1", caller: reader) == [
                .labServicesContributor
            ])
        // Malformed: INVALID_ARGUMENT naming `gallery`.
        await expectError(.invalidArgument, field: "gallery") { _ = try await detach("g1") }
        await expectError(.invalidArgument, field: "gallery") { _ = try await detach("galleries/G1") }
        // The attached one: detached.
        #expect(try await detach("galleries/g1").attachedGallery == nil)
        #expect(try await f.service.listRoleAssignments(gallery: "galleries/g1", caller: reader).isEmpty)
        // Nothing attached: the same answer as without a gallery.
        await expectError(.failedPrecondition, contains: ["labAccounts/a1 has no gallery attached"]) {
            _ = try await detach("galleries/g1")
        }
        // Empty is "not given": whatever is attached is detached.
        _ = try await f.service.attachGallery(labAccount: "labAccounts/a1", gallery: "galleries/g2", caller: admin)
        #expect(try await detach("").attachedGallery == nil)
    }

    @Test(arguments: StorageEngine.allCases) func attachGrantsContributorAndDetachRemovesItOnlyWhenUnused(
        engine: StorageEngine
    ) async throws {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        try await f.account("a1")
        try await f.account("a2")
        #expect(try await f.service.listRoleAssignments(gallery: "galleries/g1", caller: reader).isEmpty)
        _ = try await f.service.attachGallery(labAccount: "labAccounts/a1", gallery: "galleries/g1", caller: admin)
        _ = try await f.service.attachGallery(labAccount: "labAccounts/a2", gallery: "galleries/g1", caller: admin)
        #expect(
            try await f.service.listRoleAssignments(gallery: "galleries/g1", caller: reader)
                == [RoleAssignment(principal: "lab-services", role: "Contributor")])
        _ = try await f.service.detachGallery(labAccount: "labAccounts/a1", confirm: true, caller: admin)
        #expect(
            try await f.service.listRoleAssignments(gallery: "galleries/g1", caller: reader) == [
                .labServicesContributor
            ],
            "a2 still has it attached")
        _ = try await f.service.detachGallery(labAccount: "labAccounts/a2", confirm: true, caller: admin)
        #expect(try await f.service.listRoleAssignments(gallery: "galleries/g1", caller: reader).isEmpty)
    }

    @Test(arguments: StorageEngine.allCases) func deleteGalleryRefusedWhileAttached(engine: StorageEngine) async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        try await f.upload("galleries/g1", "img")
        let blob = try await f.blobPath("galleries/g1/images/img")
        await expectError(.failedPrecondition, contains: ["attached", "detach"]) {
            try await f.service.deleteGallery(name: "galleries/g1", caller: admin)
        }
        _ = try await f.service.detachGallery(labAccount: "labAccounts/a1", confirm: true, caller: admin)
        try await f.service.deleteGallery(name: "galleries/g1", caller: admin)
        await expectError(.notFound) { _ = try await f.service.getGallery(name: "galleries/g1", caller: reader) }
        #expect(!FileManager.default.fileExists(atPath: blob.path), "deleting a gallery deletes its image blobs")
    }

    @Test(arguments: StorageEngine.allCases) func deleteLabAccountRefusedWhileItHasLabsAndDetachesOtherwise(
        engine: StorageEngine
    ) async throws {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        try await f.upload("galleries/g1", "img")
        _ = try await f.service.createLab(
            labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: "galleries/g1/images/img",
            caller: educator)
        await expectError(.failedPrecondition, contains: ["lab", "delete"]) {
            try await f.service.deleteLabAccount(name: "labAccounts/a1", caller: admin)
        }
        try await f.service.deleteLab(name: "labAccounts/a1/labs/l1", caller: educator)
        try await f.service.deleteLabAccount(name: "labAccounts/a1", caller: admin)
        await expectError(.notFound) { _ = try await f.service.getLabAccount(name: "labAccounts/a1", caller: reader) }
        // The gallery survives, no longer attached, and lab-services lost its grant.
        #expect(try await f.service.listRoleAssignments(gallery: "galleries/g1", caller: reader).isEmpty)
        try await f.service.deleteGallery(name: "galleries/g1", caller: admin)
    }
}

@Suite struct RegionCatalogTests {
    @Test(arguments: StorageEngine.allCases) func geographyIsDerivedFromRegion(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        let expected: [String: String] = [
            "eastus": "United States", "westus3": "United States", "northeurope": "Europe",
            "francesouth": "France", "uksouth": "United Kingdom", "japaneast": "Japan",
            "australiaeast": "Australia", "canadacentral": "Canada", "brazilsouth": "Brazil",
            "centralindia": "India", "southeastasia": "Asia Pacific", "germanywestcentral": "Germany",
        ]
        for (i, (region, geo)) in expected.sorted(by: { $0.key < $1.key }).enumerated() {
            #expect(try await f.gallery("g\(i)", region: region).geography == geo)
        }
        #expect(
            RegionCatalog.builtIn.geographies["United States"] == [
                "centralus", "eastus", "eastus2", "northcentralus",
                "southcentralus", "westcentralus", "westus", "westus2", "westus3",
            ])
    }

    @Test(arguments: StorageEngine.allCases) func unknownRegionIsInvalidArgumentListingValidRegions(
        engine: StorageEngine
    ) async throws {
        let f = try await Fixture(engine: engine)
        await expectError(
            .invalidArgument, field: "gallery.region",
            contains: ["mars-1", "built-in region catalog", "centralus", "flag"]
        ) {
            try await f.gallery("g1", region: "mars-1")
        }
        await expectError(.invalidArgument, field: "lab_account.region") { try await f.account("a1", region: "") }
    }

    @Test(arguments: StorageEngine.allCases) func catalogFileOverridesBuiltIn(engine: StorageEngine) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgcat-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("regions.json")
        try Data(#"{"geographies": {"Moon": ["moon-north", "moon-south"], "Solo": ["solo1"]}}"#.utf8).write(to: file)
        let catalog = try RegionCatalog(contentsOf: file)
        #expect(catalog.geography(of: "moon-south") == "Moon")
        #expect(catalog.geography(of: "eastus") == nil)
        let f = try await Fixture(LabGalleryConfiguration(regionCatalog: catalog), engine: engine)
        #expect(try await f.gallery("g1", region: "moon-north").geography == "Moon")
        await expectError(.invalidArgument, field: "gallery.region", contains: [file.path, "moon-north"]) {
            try await f.gallery("g2", region: "eastus")
        }
        // Malformed files and duplicate regions are rejected with the file named.
        try Data("{}".utf8).write(to: file)
        await expectError(.invalidArgument, contains: [file.path]) { _ = try RegionCatalog(contentsOf: file) }
        await expectError(.invalidArgument, field: "geographies") {
            _ = try RegionCatalog(geographies: ["A": ["r1"], "B": ["r1"]])
        }
    }

    @Test func builtInCatalogIsConsistent() async {
        let c = RegionCatalog.builtIn
        #expect(c.geographies.count >= 12)
        #expect(c.regions.count == Set(c.regions).count)
        #expect(c.regions.allSatisfy(ResourceID.isValid))
        #expect(c.siblings(of: "francecentral") == ["francesouth"])
    }
}
