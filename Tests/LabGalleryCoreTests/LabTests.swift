import Foundation
import TestSupport
import Testing

@testable import LabGalleryCore

@Suite struct LabTests {
    /// Account a1 with gallery g1 (eastus) holding a generalized and a specialized image.
    func setUp(_ configuration: LabGalleryConfiguration = .init(), engine: StorageEngine) async throws -> Fixture {
        let f = try await Fixture(configuration, engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        try await f.upload("galleries/g1", "gen", bytes: Array("abc".utf8), osType: .windows, osState: .generalized)
        try await f.upload("galleries/g1", "spec", bytes: [1, 2, 3, 4], osState: .specialized)
        return f
    }

    func createLab(_ f: Fixture, _ id: String, template: String) async throws -> Lab {
        try await f.service.createLab(
            labAccount: "labAccounts/a1", labID: id, displayName: "Lab \(id)", templateImage: template, caller: educator
        )
    }

    func templateFile(_ f: Fixture, _ lab: String) async throws -> URL {
        let stored = try await blocking {
            try f.service.storage.read { try $0.lab(LabName(parsing: lab, field: "name")) }
        }
        return f.dir.appendingPathComponent(try #require(stored).templatePath)
    }

    @Test(arguments: StorageEngine.allCases) func createLabReferencesTheImageBlobWithoutCopying(engine: StorageEngine)
        async throws
    {
        let f = try await setUp(engine: engine)
        let before = f.files(under: "regions")
        let lab = try await createLab(f, "l1", template: "galleries/g1/images/gen")
        #expect(
            lab == Lab(name: "labAccounts/a1/labs/l1", displayName: "Lab l1", templateImage: "galleries/g1/images/gen"))
        #expect(try await f.service.getLab(name: lab.name, caller: reader) == lab)
        let template = try await templateFile(f, lab.name)
        #expect(
            try await template.path == f.blobPath("galleries/g1/images/gen").path, "the lab shares the image's blob")
        #expect(try Data(contentsOf: template) == Data("abc".utf8))
        #expect(f.files(under: "regions") == before, "nothing was copied")
        #expect(f.files(under: "labs").isEmpty)
    }

    @Test(arguments: StorageEngine.allCases) func generalizedAndSpecializedTemplatesAcceptedByDefault(
        engine: StorageEngine
    ) async throws {
        let f = try await setUp(engine: engine)
        _ = try await createLab(f, "l1", template: "galleries/g1/images/gen")
        _ = try await createLab(f, "l2", template: "galleries/g1/images/spec")
        #expect(try await f.service.listLabs(labAccount: "labAccounts/a1", caller: reader).items.count == 2)
    }

    @Test(arguments: StorageEngine.allCases) func generalizedOnlySettingRefusesSpecialized(engine: StorageEngine)
        async throws
    {
        let f = try await setUp(LabGalleryConfiguration(templateImages: .generalizedOnly), engine: engine)
        _ = try await createLab(f, "l1", template: "galleries/g1/images/gen")
        await expectError(.failedPrecondition, contains: ["galleries/g1/images/spec", "SPECIALIZED"]) {
            _ = try await createLab(f, "l2", template: "galleries/g1/images/spec")
        }
        #expect(
            try await f.service.listLabs(labAccount: "labAccounts/a1", caller: reader).items.map(\.name) == [
                "labAccounts/a1/labs/l1"
            ])
    }

    @Test(arguments: StorageEngine.allCases) func templateMustBeInAttachedGallery(engine: StorageEngine) async throws {
        let f = try await setUp(engine: engine)
        try await f.gallery("other")
        try await f.upload("galleries/other", "x")
        await expectError(.failedPrecondition, contains: ["galleries/other/images/x", "attached"]) {
            _ = try await createLab(f, "l1", template: "galleries/other/images/x")
        }
        await expectError(.notFound, resource: "galleries/g1/images/ghost") {
            _ = try await createLab(f, "l1", template: "galleries/g1/images/ghost")
        }
        await expectError(.invalidArgument, field: "lab.template_image") {
            _ = try await createLab(f, "l1", template: "ghost")
        }
        _ = try await f.service.detachGallery(labAccount: "labAccounts/a1", confirm: true, caller: admin)
        await expectError(.failedPrecondition, contains: ["no gallery attached"]) {
            _ = try await createLab(f, "l1", template: "galleries/g1/images/gen")
        }
    }

    @Test(arguments: StorageEngine.allCases) func templateMustBeEnabledForTheAccount(engine: StorageEngine) async throws
    {
        let f = try await setUp(engine: engine)
        _ = try await f.service.setImagesEnabled(
            labAccount: "labAccounts/a1", images: ["galleries/g1/images/gen"], enabled: false, caller: admin)
        await expectError(.failedPrecondition, contains: ["galleries/g1/images/gen", "disabled", "SetImagesEnabled"]) {
            _ = try await createLab(f, "l1", template: "galleries/g1/images/gen")
        }
        #expect(try await f.service.listLabs(labAccount: "labAccounts/a1", caller: reader).items.isEmpty)
    }

    @Test(arguments: StorageEngine.allCases) func deleteImageRefusedWhileALabUsesIt(engine: StorageEngine) async throws
    {
        let f = try await setUp(engine: engine)
        _ = try await createLab(f, "l1", template: "galleries/g1/images/gen")
        await expectError(.failedPrecondition, contains: ["labAccounts/a1/labs/l1"]) {
            try await f.service.deleteImage(name: "galleries/g1/images/gen", caller: admin)
        }
        try await f.service.deleteLab(name: "labAccounts/a1/labs/l1", caller: educator)
        try await f.service.deleteImage(name: "galleries/g1/images/gen", caller: admin)
    }

    @Test(arguments: StorageEngine.allCases) func deleteLabKeepsTheBlobItsImageStillUses(engine: StorageEngine)
        async throws
    {
        let f = try await setUp(engine: engine)
        let lab = try await createLab(f, "l1", template: "galleries/g1/images/gen")
        let template = try await templateFile(f, lab.name)
        try await f.service.deleteLab(name: lab.name, caller: educator)
        #expect(FileManager.default.fileExists(atPath: template.path), "the image still references the blob")
        await expectError(.notFound) { _ = try await f.service.getLab(name: lab.name, caller: reader) }
        await expectError(.notFound) { try await f.service.deleteLab(name: lab.name, caller: educator) }
    }
}

@Suite struct SaveTemplateImageTests {
    func setUp(_ configuration: LabGalleryConfiguration = .init(), engine: StorageEngine) async throws -> Fixture {
        let f = try await Fixture(configuration, engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        try await f.upload("galleries/g1", "base", bytes: Array("abc".utf8), osType: .windows, osState: .generalized)
        _ = try await f.service.createLab(
            labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: "galleries/g1/images/base",
            caller: educator)
        return f
    }

    @Test(arguments: StorageEngine.allCases) func savesSpecializedImageWithRealBytesAndReplicationRecords(
        engine: StorageEngine
    ) async throws {
        let f = try await setUp(engine: engine)
        let image = try await f.service.saveLabTemplateImage(
            lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "Saved", caller: educator)
        #expect(
            image
                == Image(
                    name: "galleries/g1/images/saved", displayName: "Saved", osType: .windows, osState: .specialized,
                    source: .savedFromLab, sourceLab: "labAccounts/a1/labs/l1", sizeBytes: 3, sha256: abcSHA256,
                    region: "eastus", author: "eddie"))
        #expect(try await Data(contentsOf: f.blobPath(image.name)) == Data("abc".utf8))
        let status = try await f.service.replicationStatus(image: image.name, caller: reader)
        #expect(status.regions.count == 8 && status.regions.allSatisfy { $0.state == .pending && $0.bytesTotal == 3 })
        await expectError(.alreadyExists) {
            _ = try await f.service.saveLabTemplateImage(
                lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "", caller: educator)
        }
        #expect(f.files(under: "regions/eastus/tmp").isEmpty)
    }

    @Test(arguments: StorageEngine.allCases) func generalizedOnlySavesGeneralizedSoAnotherEducatorCanUseIt(
        engine: StorageEngine
    ) async throws {
        let f = try await setUp(LabGalleryConfiguration(templateImages: .generalizedOnly), engine: engine)
        let image = try await f.service.saveLabTemplateImage(
            lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "Saved", caller: educator)
        #expect(image.osState == .generalized && image.source == .savedFromLab && image.sha256 == abcSHA256)
        #expect(try await f.service.getImage(name: image.name, caller: reader).osState == .generalized)
        // Another educator, in another account with the gallery attached, sees it available and uses it.
        try await f.account("a2", gallery: .attach(gallery: "galleries/g1"))
        let other = Principal(name: "olga", role: .educator)
        let listed = try await f.service.listLabAccountImages(labAccount: "labAccounts/a2", caller: other).first {
            $0.image.name == image.name
        }
        #expect(listed?.available == true && listed?.unavailable == nil)
        let lab = try await f.service.createLab(
            labAccount: "labAccounts/a2", labID: "l2", displayName: "", templateImage: image.name, caller: other)
        #expect(lab.templateImage == image.name)
    }

    @Test(arguments: StorageEngine.allCases) func anySavesSpecialized(engine: StorageEngine) async throws {
        let f = try await setUp(LabGalleryConfiguration(templateImages: .any), engine: engine)
        let image = try await f.service.saveLabTemplateImage(
            lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "", caller: educator)
        #expect(image.osState == .specialized)
        #expect(TemplateImagePolicy.any.savedTemplateOSState == .specialized)
        #expect(TemplateImagePolicy.generalizedOnly.savedTemplateOSState == .generalized)
    }

    @Test(arguments: StorageEngine.allCases) func permissionDeniedWhenLabServicesIsNotContributor(engine: StorageEngine)
        async throws
    {
        let f = try await setUp(engine: engine)
        try await blocking {
            try f.service.storage.write { try $0.revoke(.labServicesContributor, on: GalleryName(id: "g1")) }
        }
        await expectError(.permissionDenied, contains: ["lab-services", "Contributor", "galleries/g1"]) {
            _ = try await f.service.saveLabTemplateImage(
                lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "", caller: educator)
        }
        #expect(f.files(under: "regions/eastus").count == 1, "only the base image blob")
    }

    @Test(arguments: StorageEngine.allCases) func failedPreconditionWhenNoGalleryAttached(engine: StorageEngine)
        async throws
    {
        let f = try await setUp(engine: engine)
        _ = try await f.service.detachGallery(labAccount: "labAccounts/a1", confirm: true, caller: admin)
        await expectError(.failedPrecondition, contains: ["no gallery attached", "AttachGallery"]) {
            _ = try await f.service.saveLabTemplateImage(
                lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "", caller: educator)
        }
        await expectError(.notFound) {
            _ = try await f.service.saveLabTemplateImage(
                lab: "labAccounts/a1/labs/nope", imageID: "saved", displayName: "", caller: educator)
        }
        await expectError(.invalidArgument, field: "lab") {
            _ = try await f.service.saveLabTemplateImage(
                lab: "labs/nope", imageID: "saved", displayName: "", caller: educator)
        }
    }
}
