import Foundation
import GeneratedProtos
import H2RPC
import LabGalleryCore
import LabGalleryServer
import Testing

/// The domain rules of issue 8, item 4, over real sockets with the generated clients:
/// ListLabAccountImages' availability, DetachGallery's `gallery`, and the OS state of saved templates.
@Suite struct TemplateRuleTests {
    // MARK: ListLabAccountImages: available and the reason

    @Test func listedAvailabilityMatchesCreateLab() async throws {
        try await withServer(templateImages: .generalizedOnly) { s in
            let c = try s.admin()
            try await c.standardSetup()  // gallery g (eastus), account a (eastus), generalized image img
            try await c.upload(gallery: "galleries/g", id: "spec", bytes: [9, 9], osState: .specialized)
            try await c.upload(gallery: "galleries/g", id: "off", bytes: [8])
            _ = try await c.images.setImagesEnabled(
                .init(labAccount: "labAccounts/a", images: ["galleries/g/images/off"], enabled: false))
            // An account in another geography with the same gallery attached.
            try await c.createLabAccount("far", region: "westeurope", gallery: .attachGallery("galleries/g"))

            func listed(_ account: String) async throws -> [String: Labgallery_V1_LabAccountImage] {
                let images = try await c.images.listLabAccountImages(.init(labAccount: "labAccounts/\(account)")).images
                return Dictionary(
                    uniqueKeysWithValues: images.map {
                        (String(($0.image?.name ?? "").split(separator: "/").last ?? ""), $0)
                    })
            }
            let a = try await listed("a")
            #expect(a["img"]?.available == true && a["img"]?.unavailableReason == "" && a["img"]?.enabled == true)
            #expect(a["spec"]?.available == false && a["spec"]?.enabled == true)
            #expect(a["spec"]?.unavailableReason.contains("SPECIALIZED") == true)
            #expect(a["off"]?.available == false && a["off"]?.enabled == false)
            #expect(a["off"]?.unavailableReason.contains("disabled") == true)
            let far = try await listed("far")
            #expect(far["img"]?.available == false)
            #expect(far["img"]?.unavailableReason.contains("another geography") == true)

            // CreateLab accepts exactly the available ones, and refuses the others with the listed reason.
            for (account, images) in [("a", a), ("far", far)] {
                for (id, entry) in images.sorted(by: { $0.key < $1.key }) {
                    let request = Labgallery_V1_CreateLabRequest(
                        labAccount: "labAccounts/\(account)", labId: "lab-\(id)",
                        lab: .init(templateImage: "galleries/g/images/\(id)"))
                    if entry.available {
                        _ = try await c.labs.createLab(request)
                    } else {
                        await expectRPC(.failedPrecondition, entry.unavailableReason) {
                            _ = try await c.labs.createLab(request)
                        }
                    }
                }
            }
            #expect(
                try await c.labs.listLabs(.init(labAccount: "labAccounts/a")).labs.map(\.name) == [
                    "labAccounts/a/labs/lab-img"
                ])
            #expect(try await c.labs.listLabs(.init(labAccount: "labAccounts/far")).labs.isEmpty)

            // SetImagesEnabled answers with the same fields.
            let enabled = try await c.images.setImagesEnabled(
                .init(labAccount: "labAccounts/a", images: ["galleries/g/images/off"], enabled: true))
            #expect(enabled.images.map(\.available) == [true] && enabled.images.map(\.unavailableReason) == [""])
        }
    }

    // MARK: DetachGallery with `gallery`

    @Test func detachNamingAnotherGalleryIsFailedPrecondition() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.createGallery("g1")
            try await c.createGallery("g2")
            try await c.createLabAccount("a", gallery: .attachGallery("galleries/g1"))
            func detach(_ gallery: String) async throws -> Labgallery_V1_LabAccount {
                try await c.galleries.detachGallery(.init(labAccount: "labAccounts/a", confirm: true, gallery: gallery))
            }
            await expectRPC(.failedPrecondition, "galleries/g1", "galleries/g2") {
                _ = try await detach("galleries/g2")
            }
            await expectRPC(.invalidArgument, "gallery") { _ = try await detach("g2") }
            #expect(
                try await c.labAccounts.getLabAccount(.init(name: "labAccounts/a")).attachedGallery == "galleries/g1")
            #expect(try await detach("galleries/g1").attachedGallery == "")
            await expectRPC(.failedPrecondition, "no gallery attached") { _ = try await detach("galleries/g1") }
        }
    }

    // MARK: SaveLabTemplateImage's OS state follows the template policy

    /// An educator saves a lab's template; another educator, in another lab account with the same
    /// gallery, sees it available and creates a lab from it.
    func saveAndReuse(_ s: TestServer) async throws -> Labgallery_V1_Image {
        let c = try s.admin()
        try await c.standardSetup()
        try await c.createLabAccount("b", gallery: .attachGallery("galleries/g"))
        let eddie = try await s.connect(as: "eddie", role: .educator)
        let olga = try await s.connect(as: "olga", role: .educator)
        _ = try await eddie.labs.createLab(
            .init(labAccount: "labAccounts/a", labId: "lab1", lab: .init(templateImage: "galleries/g/images/img")))
        let saved = try await eddie.images.saveLabTemplateImage(
            .init(lab: "labAccounts/a/labs/lab1", imageId: "saved", displayName: "Saved"))
        #expect(saved.source == .savedFromLab && saved.author == "eddie")
        #expect(try await olga.images.getImage(.init(name: saved.name)).osState == saved.osState)
        let listed = try await olga.images.listLabAccountImages(.init(labAccount: "labAccounts/b")).images.first {
            $0.image?.name == saved.name
        }
        #expect(listed?.available == true, "\(listed?.unavailableReason ?? "not listed")")
        let lab = try await olga.labs.createLab(
            .init(labAccount: "labAccounts/b", labId: "lab2", lab: .init(templateImage: saved.name)))
        #expect(lab.templateImage == saved.name)
        return saved
    }

    @Test func generalizedOnlySavesGeneralizedTemplatesOthersCanUse() async throws {
        try await withServer(templateImages: .generalizedOnly) { s in
            let saved = try await saveAndReuse(s)
            #expect(saved.osState == .generalized)
        }
    }

    @Test func anySavesSpecializedTemplates() async throws {
        try await withServer(templateImages: .any) { s in
            let saved = try await saveAndReuse(s)
            #expect(saved.osState == .specialized)
        }
    }
}
