import Foundation
import Testing
@testable import LabGalleryCore

@Suite struct LabTests {
    /// Account a1 with gallery g1 (eastus) holding a generalized and a specialized image.
    func setUp(_ configuration: LabGalleryConfiguration = .init()) throws -> Fixture {
        let f = try Fixture(configuration)
        try f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        try f.upload("galleries/g1", "gen", bytes: Array("abc".utf8), osType: .windows, osState: .generalized)
        try f.upload("galleries/g1", "spec", bytes: [1, 2, 3, 4], osState: .specialized)
        return f
    }

    func createLab(_ f: Fixture, _ id: String, template: String) throws -> Lab {
        try f.service.createLab(labAccount: "labAccounts/a1", labID: id, displayName: "Lab \(id)", templateImage: template, caller: educator)
    }

    func templateFile(_ f: Fixture, _ lab: String) throws -> URL {
        let stored = try f.service.storage.read { try $0.lab(LabName(parsing: lab, field: "name")) }
        return f.dir.appendingPathComponent(try #require(stored).templatePath)
    }

    @Test func createLabCopiesTemplateBytes() throws {
        let f = try setUp()
        let lab = try createLab(f, "l1", template: "galleries/g1/images/gen")
        #expect(lab == Lab(name: "labAccounts/a1/labs/l1", displayName: "Lab l1", templateImage: "galleries/g1/images/gen"))
        #expect(try f.service.getLab(name: lab.name, caller: reader) == lab)
        let copy = try templateFile(f, lab.name)
        #expect(copy.path.hasPrefix(f.dir.appendingPathComponent("labs/a1/").path))
        #expect(try Data(contentsOf: copy) == Data("abc".utf8))
        #expect(try copy.path != f.blobPath("galleries/g1/images/gen").path, "a real copy, not a reference")
        #expect(f.files(under: "labs/tmp").isEmpty)
    }

    @Test func generalizedAndSpecializedTemplatesAcceptedByDefault() throws {
        let f = try setUp()
        _ = try createLab(f, "l1", template: "galleries/g1/images/gen")
        _ = try createLab(f, "l2", template: "galleries/g1/images/spec")
        #expect(try f.service.listLabs(labAccount: "labAccounts/a1", caller: reader).items.count == 2)
    }

    @Test func generalizedOnlySettingRefusesSpecialized() throws {
        let f = try setUp(LabGalleryConfiguration(templateImages: .generalizedOnly))
        _ = try createLab(f, "l1", template: "galleries/g1/images/gen")
        expectError(.failedPrecondition, contains: ["galleries/g1/images/spec", "SPECIALIZED"]) {
            _ = try createLab(f, "l2", template: "galleries/g1/images/spec")
        }
        #expect(f.files(under: "labs").count == 1, "no template copy left behind")
    }

    @Test func templateMustBeInAttachedGallery() throws {
        let f = try setUp()
        try f.gallery("other")
        try f.upload("galleries/other", "x")
        expectError(.failedPrecondition, contains: ["galleries/other/images/x", "attached"]) {
            _ = try createLab(f, "l1", template: "galleries/other/images/x")
        }
        expectError(.notFound, resource: "galleries/g1/images/ghost") { _ = try createLab(f, "l1", template: "galleries/g1/images/ghost") }
        expectError(.invalidArgument, field: "lab.template_image") { _ = try createLab(f, "l1", template: "ghost") }
        _ = try f.service.detachGallery(labAccount: "labAccounts/a1", confirm: true, caller: admin)
        expectError(.failedPrecondition, contains: ["no gallery attached"]) { _ = try createLab(f, "l1", template: "galleries/g1/images/gen") }
    }

    @Test func templateMustBeEnabledForTheAccount() throws {
        let f = try setUp()
        _ = try f.service.setImagesEnabled(labAccount: "labAccounts/a1", images: ["galleries/g1/images/gen"], enabled: false, caller: admin)
        expectError(.failedPrecondition, contains: ["galleries/g1/images/gen", "disabled", "SetImagesEnabled"]) {
            _ = try createLab(f, "l1", template: "galleries/g1/images/gen")
        }
        #expect(f.files(under: "labs").isEmpty)
    }

    @Test func deleteImageRefusedWhileALabUsesIt() throws {
        let f = try setUp()
        _ = try createLab(f, "l1", template: "galleries/g1/images/gen")
        expectError(.failedPrecondition, contains: ["labAccounts/a1/labs/l1"]) {
            try f.service.deleteImage(name: "galleries/g1/images/gen", caller: admin)
        }
        try f.service.deleteLab(name: "labAccounts/a1/labs/l1", caller: educator)
        try f.service.deleteImage(name: "galleries/g1/images/gen", caller: admin)
    }

    @Test func deleteLabRemovesTemplateCopy() throws {
        let f = try setUp()
        let lab = try createLab(f, "l1", template: "galleries/g1/images/gen")
        let copy = try templateFile(f, lab.name)
        try f.service.deleteLab(name: lab.name, caller: educator)
        #expect(!FileManager.default.fileExists(atPath: copy.path))
        expectError(.notFound) { _ = try f.service.getLab(name: lab.name, caller: reader) }
        expectError(.notFound) { try f.service.deleteLab(name: lab.name, caller: educator) }
    }
}

@Suite struct SaveTemplateImageTests {
    func setUp(_ configuration: LabGalleryConfiguration = .init()) throws -> Fixture {
        let f = try Fixture(configuration)
        try f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        try f.upload("galleries/g1", "base", bytes: Array("abc".utf8), osType: .windows, osState: .generalized)
        _ = try f.service.createLab(labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: "galleries/g1/images/base", caller: educator)
        return f
    }

    @Test func savesSpecializedImageWithRealBytesAndReplicationRecords() throws {
        let f = try setUp()
        let image = try f.service.saveLabTemplateImage(lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "Saved", caller: educator)
        #expect(image == Image(name: "galleries/g1/images/saved", displayName: "Saved", osType: .windows, osState: .specialized,
                               source: .savedFromLab, sourceLab: "labAccounts/a1/labs/l1", sizeBytes: 3, sha256: abcSHA256,
                               region: "eastus", author: "eddie"))
        #expect(try Data(contentsOf: f.blobPath(image.name)) == Data("abc".utf8))
        let status = try f.service.replicationStatus(image: image.name, caller: reader)
        #expect(status.regions.count == 8 && status.regions.allSatisfy { $0.state == .pending && $0.bytesTotal == 3 })
        expectError(.alreadyExists) { _ = try f.service.saveLabTemplateImage(lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "", caller: educator) }
        #expect(f.files(under: "regions/eastus/tmp").isEmpty)
    }

    @Test func generalizedOnlySavesGeneralizedSoAnotherEducatorCanUseIt() throws {
        let f = try setUp(LabGalleryConfiguration(templateImages: .generalizedOnly))
        let image = try f.service.saveLabTemplateImage(lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "Saved", caller: educator)
        #expect(image.osState == .generalized && image.source == .savedFromLab && image.sha256 == abcSHA256)
        #expect(try f.service.getImage(name: image.name, caller: reader).osState == .generalized)
        // Another educator, in another account with the gallery attached, sees it available and uses it.
        try f.account("a2", gallery: .attach(gallery: "galleries/g1"))
        let other = Principal(name: "olga", role: .educator)
        let listed = try f.service.listLabAccountImages(labAccount: "labAccounts/a2", caller: other).first { $0.image.name == image.name }
        #expect(listed?.available == true && listed?.unavailable == nil)
        let lab = try f.service.createLab(labAccount: "labAccounts/a2", labID: "l2", displayName: "", templateImage: image.name, caller: other)
        #expect(lab.templateImage == image.name)
    }

    @Test func anySavesSpecialized() throws {
        let f = try setUp(LabGalleryConfiguration(templateImages: .any))
        let image = try f.service.saveLabTemplateImage(lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "", caller: educator)
        #expect(image.osState == .specialized)
        #expect(TemplateImagePolicy.any.savedTemplateOSState == .specialized)
        #expect(TemplateImagePolicy.generalizedOnly.savedTemplateOSState == .generalized)
    }

    @Test func permissionDeniedWhenLabServicesIsNotContributor() throws {
        let f = try setUp()
        try f.service.storage.write { try $0.revoke(.labServicesContributor, on: GalleryName(id: "g1")) }
        expectError(.permissionDenied, contains: ["lab-services", "Contributor", "galleries/g1"]) {
            _ = try f.service.saveLabTemplateImage(lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "", caller: educator)
        }
        #expect(f.files(under: "regions/eastus").count == 1, "only the base image blob")
    }

    @Test func failedPreconditionWhenNoGalleryAttached() throws {
        let f = try setUp()
        _ = try f.service.detachGallery(labAccount: "labAccounts/a1", confirm: true, caller: admin)
        expectError(.failedPrecondition, contains: ["no gallery attached", "AttachGallery"]) {
            _ = try f.service.saveLabTemplateImage(lab: "labAccounts/a1/labs/l1", imageID: "saved", displayName: "", caller: educator)
        }
        expectError(.notFound) { _ = try f.service.saveLabTemplateImage(lab: "labAccounts/a1/labs/nope", imageID: "saved", displayName: "", caller: educator) }
        expectError(.invalidArgument, field: "lab") { _ = try f.service.saveLabTemplateImage(lab: "labs/nope", imageID: "saved", displayName: "", caller: educator) }
    }
}
