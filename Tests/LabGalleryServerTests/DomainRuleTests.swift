import Foundation
import GeneratedProtos
import H2RPC
import LabGalleryCore
import LabGalleryServer
import TestSupport
import Testing

/// One test per domain rule of issue 3, each over real sockets with the generated clients.
@Suite struct DomainRuleTests {
    // MARK: Lab accounts and galleries

    @Test func labAccountCreatedWithNewGalleryExistingGalleryOrNone() async throws {
        try await withServer { s in
            let c = try s.admin()
            let bare = try await c.createLabAccount("bare", region: "westeurope")
            #expect(bare.attachedGallery == "" && bare.region == "westeurope")

            let withNew = try await c.createLabAccount(
                "fresh", region: "westus2",
                gallery: .createGallery(.init(galleryId: "fresh-g", displayName: "Fresh")))
            #expect(withNew.attachedGallery == "galleries/fresh-g")
            let created = try await c.galleries.getGallery(.init(name: "galleries/fresh-g"))
            #expect(created.region == "westus2", "the new gallery is created in the account's region")
            #expect(created.geography == "United States")

            try await c.createGallery("shared", region: "northeurope")
            let attached = try await c.createLabAccount(
                "joiner", region: "westeurope", gallery: .attachGallery("galleries/shared"))
            #expect(attached.attachedGallery == "galleries/shared")
            #expect(try await c.labAccounts.getLabAccount(.init(name: "labAccounts/joiner")) == attached)
            // Attaching at creation grants lab-services Contributor, like AttachGallery.
            let roles = try await c.galleries.listRoleAssignments(.init(gallery: "galleries/shared")).roleAssignments
            #expect(roles == [.init(principal: "lab-services", role: "Contributor")])
        }
    }

    @Test func secondAttachIsFailedPreconditionSayingToDetach() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.createGallery("g1")
            try await c.createGallery("g2")
            try await c.createLabAccount("a", gallery: .attachGallery("galleries/g1"))
            await expectRPC(.failedPrecondition, "galleries/g1", "detach it first", "DetachGallery") {
                _ = try await c.galleries.attachGallery(.init(labAccount: "labAccounts/a", gallery: "galleries/g2"))
            }
            #expect(
                try await c.labAccounts.getLabAccount(.init(name: "labAccounts/a")).attachedGallery == "galleries/g1")
        }
    }

    @Test func detachWithoutConfirmIsInvalidArgumentNamingConfirm() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.createLabAccount("a", gallery: .createGallery(.init(galleryId: "g")))
            await expectRPC(.invalidArgument, "confirm") {
                _ = try await c.galleries.detachGallery(.init(labAccount: "labAccounts/a", confirm: false))
            }
            #expect(
                try await c.labAccounts.getLabAccount(.init(name: "labAccounts/a")).attachedGallery == "galleries/g")
            let detached = try await c.galleries.detachGallery(.init(labAccount: "labAccounts/a", confirm: true))
            #expect(detached.attachedGallery == "")
        }
    }

    @Test func attachGrantsContributorAndLastDetachRemovesIt() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.createGallery("g")
            try await c.createLabAccount("a1")
            try await c.createLabAccount("a2")
            let roles = { try await c.galleries.listRoleAssignments(.init(gallery: "galleries/g")).roleAssignments }
            #expect(try await roles().isEmpty)
            _ = try await c.galleries.attachGallery(.init(labAccount: "labAccounts/a1", gallery: "galleries/g"))
            _ = try await c.galleries.attachGallery(.init(labAccount: "labAccounts/a2", gallery: "galleries/g"))
            #expect(try await roles() == [.init(principal: "lab-services", role: "Contributor")])
            _ = try await c.galleries.detachGallery(.init(labAccount: "labAccounts/a1", confirm: true))
            #expect(
                try await roles() == [.init(principal: "lab-services", role: "Contributor")], "a2 still has it attached"
            )
            _ = try await c.galleries.detachGallery(.init(labAccount: "labAccounts/a2", confirm: true))
            #expect(try await roles().isEmpty)
        }
    }

    @Test func geographyIsDerivedAndUnknownRegionIsInvalidArgument() async throws {
        try await withServer { s in
            let c = try s.admin()
            #expect(try await c.createGallery("fr", region: "francesouth").geography == "France")
            #expect(try await c.createGallery("eu", region: "northeurope").geography == "Europe")
            await expectRPC(.invalidArgument, "gallery.region", "atlantis", "region catalog") {
                try await c.createGallery("x", region: "atlantis")
            }
            await expectRPC(.invalidArgument, "lab_account.region", "region catalog") {
                try await c.createLabAccount("x", region: "atlantis")
            }
        }
        // --regions-file replaces the built-in catalog.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("regions-\(UUID().uuidString).json")
        try Data(#"{"geographies": {"Moon": ["mare-a", "mare-b"]}}"#.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        try await withServer(regionsFile: file) { s in
            let c = try s.admin()
            #expect(try await c.createGallery("m", region: "mare-a").geography == "Moon")
            await expectRPC(.invalidArgument, "gallery.region", file.path) {
                try await c.createGallery("e", region: "eastus")
            }
        }
    }

    // MARK: Uploads

    @Test func uploadStreamsChunksAndVerifiesChecksum() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.createGallery("g", region: "eastus")
            let bytes = testBytes(300_000)
            let sha = try await sha256Hex(bytes)
            let image = try await c.upload(
                gallery: "galleries/g", id: "img", bytes: bytes, chunkSize: 64 * 1024,
                osType: .windows, osState: .specialized, sha256: sha.uppercased())
            #expect(image.name == "galleries/g/images/img")
            #expect(image.sizeBytes == 300_000 && image.sha256 == sha)
            #expect(image.osType == .windows && image.osState == .specialized && image.source == .uploaded)
            #expect(image.region == "eastus" && image.author == "admin" && image.sourceLab == "")
            #expect(try await c.images.getImage(.init(name: image.name)) == image)
            // The stored blob holds exactly the streamed bytes, and no temp file is left.
            let blobs = s.files(under: "regions/eastus/blobs")
            #expect(blobs.count == 1)
            #expect(
                try Array(Data(contentsOf: s.dataDir.appendingPathComponent("regions/eastus/blobs/\(blobs[0])")))
                    == bytes)
            #expect(s.files(under: "regions/eastus/tmp").isEmpty)
            // Every image gets a replication record per other region of its geography (the engine then copies it).
            let status = try await c.replication.getReplicationStatus(.init(image: image.name))
            #expect(
                status.regions.map(\.region) == [
                    "centralus", "eastus2", "northcentralus", "southcentralus",
                    "westcentralus", "westus", "westus2", "westus3",
                ])
            #expect(status.regions.allSatisfy { $0.bytesTotal == 300_000 })
        }
    }

    @Test func uploadWithWrongChecksumStoresNothing() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.createGallery("g")
            let bytes = testBytes(100_000)
            await expectRPC(.invalidArgument, "sha256", "mismatch", "nothing was stored") {
                try await c.upload(
                    gallery: "galleries/g", id: "img", bytes: bytes, chunkSize: 10_000,
                    sha256: try await sha256Hex(Array("other".utf8)))
            }
            await expectRPC(.notFound, "galleries/g/images/img") {
                _ = try await c.images.getImage(.init(name: "galleries/g/images/img"))
            }
            #expect(s.files(under: "regions").isEmpty, "no blob and no temp file")
        }
    }

    @Test func uploadHeaderMissingOrNotFirstIsInvalidArgument() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.createGallery("g")
            let header = Labgallery_V1_UploadImageRequest(
                data: .header(
                    .init(
                        gallery: "galleries/g", imageId: "img",
                        osType: .linux, osState: .generalized)))
            let chunk = Labgallery_V1_UploadImageRequest(data: .chunk(Array("bytes".utf8)))
            await expectRPC(.invalidArgument, "header must be the first message") {
                _ = try await c.uploadRaw([chunk, header])
            }
            await expectRPC(.invalidArgument, "header must be the first message") { _ = try await c.uploadRaw([]) }
            await expectRPC(.invalidArgument, "header", "only the first message") {
                _ = try await c.uploadRaw([header, chunk, header])
            }
            await expectRPC(.invalidArgument, "chunk") { _ = try await c.uploadRaw([header]) }
            await expectRPC(.invalidArgument, "os_type") {
                _ = try await c.uploadRaw([
                    .init(data: .header(.init(gallery: "galleries/g", imageId: "img", osState: .generalized))), chunk,
                ])
            }
            #expect(try await c.images.listImages(.init(gallery: "galleries/g")).images.isEmpty)
            #expect(s.files(under: "regions").isEmpty)
        }
    }

    @Test func cancelledUploadLeavesNoImageAndNoFile() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.createGallery("g")
            let call = c.images.uploadImage()
            try await call.send(
                .init(
                    data: .header(.init(gallery: "galleries/g", imageId: "img", osType: .linux, osState: .generalized)))
            )
            try await call.send(.init(data: .chunk(testBytes(50_000))))
            // Wait until the server has the temp file open, then cut the stream.
            try await eventually("the upload's temp file") { !s.files(under: "regions/eastus/tmp").isEmpty }
            #expect(s.files(under: "regions/eastus/tmp").count == 1)
            call.cancel()
            try await eventually("the aborted upload's temp file to go") { s.files(under: "regions").isEmpty }
            #expect(s.files(under: "regions").isEmpty, "the aborted upload's temp file is removed")
            await expectRPC(.notFound) { _ = try await c.images.getImage(.init(name: "galleries/g/images/img")) }
        }
    }

    @Test func oversizedChunkIsResourceExhausted() async throws {
        // The message size limit is the HTTP/2 transport's.
        try await withServer(maxMessageSize: 64 * 1024, transport: .sockets) { s in
            let c = try s.admin()
            try await c.createGallery("g")
            await expectRPC(.resourceExhausted) {
                try await c.upload(gallery: "galleries/g", id: "big", bytes: testBytes(200_000), chunkSize: 100_000)
            }
            // Chunks under the limit stream any total size.
            let image = try await c.upload(
                gallery: "galleries/g", id: "ok", bytes: testBytes(200_000), chunkSize: 32 * 1024)
            #expect(image.sizeBytes == 200_000)
            try await eventually("the failed upload's temp file to go") { s.files(under: "regions/eastus/tmp").isEmpty }
            #expect(s.files(under: "regions/eastus/tmp").isEmpty)
        }
    }

    // MARK: Lab account images

    @Test func labAccountImagesAreTheAttachedGallerysEnabledByDefault() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.standardSetup()
            try await c.upload(gallery: "galleries/g", id: "img2", bytes: [1, 2, 3])
            try await c.createGallery("other")
            try await c.upload(gallery: "galleries/other", id: "elsewhere", bytes: [4])
            let images = try await c.images.listLabAccountImages(.init(labAccount: "labAccounts/a")).images
            #expect(images.map { $0.image?.name ?? "" } == ["galleries/g/images/img", "galleries/g/images/img2"])
            #expect(images.allSatisfy { $0.enabled })
            try await c.createLabAccount("none")
            #expect(try await c.images.listLabAccountImages(.init(labAccount: "labAccounts/none")).images.isEmpty)
        }
    }

    @Test func setImagesEnabledIsAllOrNothing() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.standardSetup()
            await expectRPC(.notFound, "galleries/g/images/missing") {
                _ = try await c.images.setImagesEnabled(
                    .init(
                        labAccount: "labAccounts/a",
                        images: ["galleries/g/images/img", "galleries/g/images/missing"], enabled: false))
            }
            await expectRPC(.invalidArgument, "images") {
                _ = try await c.images.setImagesEnabled(
                    .init(labAccount: "labAccounts/a", images: ["galleries/g/images/img", "nonsense"], enabled: false))
            }
            #expect(
                try await c.images.listLabAccountImages(.init(labAccount: "labAccounts/a")).images.allSatisfy {
                    $0.enabled
                },
                "nothing changed")
            let result = try await c.images.setImagesEnabled(
                .init(labAccount: "labAccounts/a", images: ["galleries/g/images/img"], enabled: false))
            #expect(
                result.images.map(\.enabled) == [false] && result.images.first?.image?.name == "galleries/g/images/img")
            #expect(
                try await c.images.listLabAccountImages(.init(labAccount: "labAccounts/a")).images.map(\.enabled) == [
                    false
                ])
        }
    }

    // MARK: Labs and template images

    @Test func saveLabTemplateImageStoresARealSpecializedCopy() async throws {
        try await withServer { s in
            let c = try s.admin()
            let bytes = testBytes(70_000)
            try await c.standardSetup(image: bytes)
            let educator = try await s.connect(as: "eddie", role: .educator)
            _ = try await educator.labs.createLab(
                .init(
                    labAccount: "labAccounts/a", labId: "lab1",
                    lab: .init(displayName: "Lab 1", templateImage: "galleries/g/images/img")))
            let saved = try await educator.images.saveLabTemplateImage(
                .init(lab: "labAccounts/a/labs/lab1", imageId: "saved", displayName: "Saved"))
            #expect(saved.name == "galleries/g/images/saved" && saved.osState == .specialized)
            #expect(saved.source == .savedFromLab && saved.sourceLab == "labAccounts/a/labs/lab1")
            let sha = try await sha256Hex(bytes)
            #expect(saved.sizeBytes == 70_000 && saved.sha256 == sha && saved.author == "eddie")
            #expect(try await c.images.listLabAccountImages(.init(labAccount: "labAccounts/a")).images.count == 2)
            // PERMISSION_DENIED once lab-services is not Contributor on the gallery (not reachable
            // through the API while attached, so the grant is removed behind the server's back).
            try s.server.core.storage.write { try $0.revoke(.labServicesContributor, on: GalleryName(id: "g")) }
            await expectRPC(.permissionDenied, "lab-services", "Contributor") {
                _ = try await educator.images.saveLabTemplateImage(
                    .init(lab: "labAccounts/a/labs/lab1", imageId: "again"))
            }
            // FAILED_PRECONDITION without an attached gallery.
            _ = try await c.galleries.detachGallery(.init(labAccount: "labAccounts/a", confirm: true))
            await expectRPC(.failedPrecondition, "no gallery attached", "AttachGallery") {
                _ = try await educator.images.saveLabTemplateImage(
                    .init(lab: "labAccounts/a/labs/lab1", imageId: "again"))
            }
        }
    }

    @Test func createLabNeedsAnEnabledImageOfTheAttachedGallery() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.standardSetup()
            try await c.upload(gallery: "galleries/g", id: "spec", bytes: [9, 9], osState: .specialized)
            try await c.createGallery("other")
            try await c.upload(gallery: "galleries/other", id: "foreign", bytes: [1])
            func create(_ id: String, _ image: String) async throws -> Labgallery_V1_Lab {
                try await c.labs.createLab(
                    .init(labAccount: "labAccounts/a", labId: id, lab: .init(displayName: id, templateImage: image)))
            }
            await expectRPC(.failedPrecondition, "galleries/other/images/foreign", "attached gallery") {
                _ = try await create("l0", "galleries/other/images/foreign")
            }
            _ = try await c.images.setImagesEnabled(
                .init(labAccount: "labAccounts/a", images: ["galleries/g/images/img"], enabled: false))
            await expectRPC(.failedPrecondition, "galleries/g/images/img", "disabled", "SetImagesEnabled") {
                _ = try await create("l1", "galleries/g/images/img")
            }
            _ = try await c.images.setImagesEnabled(
                .init(labAccount: "labAccounts/a", images: ["galleries/g/images/img"], enabled: true))
            // Generalized and specialized are both accepted by default.
            #expect(try await create("l1", "galleries/g/images/img").templateImage == "galleries/g/images/img")
            #expect(try await create("l2", "galleries/g/images/spec").name == "labAccounts/a/labs/l2")
            #expect(
                try await c.labs.listLabs(.init(labAccount: "labAccounts/a")).labs.map(\.name) == [
                    "labAccounts/a/labs/l1", "labAccounts/a/labs/l2",
                ])
            // Labs reference the images' blobs: no template copy is made.
            #expect(s.files(under: "labs").isEmpty)
            #expect(
                s.files(under: "regions/eastus/blobs").count == 3,
                "one blob per distinct image content (img, spec, foreign)")
            _ = try await c.labs.deleteLab(.init(name: "labAccounts/a/labs/l2"))
            await expectRPC(.notFound) { _ = try await c.labs.getLab(.init(name: "labAccounts/a/labs/l2")) }
        }
    }

    @Test func generalizedOnlySettingRefusesSpecializedTemplates() async throws {
        try await withServer(templateImages: .generalizedOnly) { s in
            let c = try s.admin()
            try await c.standardSetup()
            try await c.upload(gallery: "galleries/g", id: "spec", bytes: [9, 9], osState: .specialized)
            await expectRPC(.failedPrecondition, "galleries/g/images/spec", "SPECIALIZED", "GENERALIZED") {
                _ = try await c.labs.createLab(
                    .init(
                        labAccount: "labAccounts/a", labId: "l1", lab: .init(templateImage: "galleries/g/images/spec")))
            }
            _ = try await c.labs.createLab(
                .init(labAccount: "labAccounts/a", labId: "l1", lab: .init(templateImage: "galleries/g/images/img")))
        }
    }

    // MARK: Deletion rules

    @Test func deleteGalleryIsRefusedWhileAttached() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.createLabAccount("a", gallery: .createGallery(.init(galleryId: "g")))
            await expectRPC(.failedPrecondition, "attached", "DetachGallery") {
                _ = try await c.galleries.deleteGallery(.init(name: "galleries/g"))
            }
            _ = try await c.galleries.detachGallery(.init(labAccount: "labAccounts/a", confirm: true))
            _ = try await c.galleries.deleteGallery(.init(name: "galleries/g"))
            await expectRPC(.notFound) { _ = try await c.galleries.getGallery(.init(name: "galleries/g")) }
        }
    }

    @Test func deleteImageIsRefusedWhileALabUsesIt() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.standardSetup()
            _ = try await c.labs.createLab(
                .init(labAccount: "labAccounts/a", labId: "l1", lab: .init(templateImage: "galleries/g/images/img")))
            await expectRPC(.failedPrecondition, "labAccounts/a/labs/l1") {
                _ = try await c.images.deleteImage(.init(name: "galleries/g/images/img"))
            }
            _ = try await c.labs.deleteLab(.init(name: "labAccounts/a/labs/l1"))
            _ = try await c.images.deleteImage(.init(name: "galleries/g/images/img"))
            #expect(s.files(under: "regions/eastus/blobs").isEmpty)
        }
    }

    // MARK: Ids, duplicates, pagination

    @Test func badIdsAreInvalidArgumentNamingTheField() async throws {
        try await withServer { s in
            let c = try s.admin()
            await expectRPC(.invalidArgument, "gallery_id", "1–63") { try await c.createGallery("Bad_Id") }
            await expectRPC(.invalidArgument, "lab_account_id") { try await c.createLabAccount("9starts-with-digit") }
            await expectRPC(.invalidArgument, "create_gallery.gallery_id") {
                try await c.createLabAccount("a", gallery: .createGallery(.init(galleryId: "")))
            }
            await expectRPC(.invalidArgument, "attach_gallery") {
                try await c.createLabAccount("a", gallery: .attachGallery("g"))
            }
            await expectRPC(.invalidArgument, "name") {
                _ = try await c.galleries.getGallery(.init(name: "galleries/"))
            }
            await expectRPC(.invalidArgument, "lab_account") {
                _ = try await c.galleries.attachGallery(.init(labAccount: "accounts/a", gallery: "galleries/g"))
            }
            try await c.standardSetup()
            await expectRPC(.invalidArgument, "image_id") {
                try await c.upload(gallery: "galleries/g", id: String(repeating: "x", count: 64), bytes: [1])
            }
            await expectRPC(.invalidArgument, "gallery") { try await c.upload(gallery: "g", id: "x", bytes: [1]) }
            await expectRPC(.invalidArgument, "lab_id") {
                _ = try await c.labs.createLab(
                    .init(labAccount: "labAccounts/a", labId: "-x", lab: .init(templateImage: "galleries/g/images/img"))
                )
            }
            await expectRPC(.invalidArgument, "lab.template_image") {
                _ = try await c.labs.createLab(
                    .init(labAccount: "labAccounts/a", labId: "x", lab: .init(templateImage: "img")))
            }
        }
    }

    @Test func duplicatesAreAlreadyExists() async throws {
        try await withServer { s in
            let c = try s.admin()
            try await c.standardSetup()
            await expectRPC(.alreadyExists, "galleries/g") { try await c.createGallery("g") }
            await expectRPC(.alreadyExists, "labAccounts/a") { try await c.createLabAccount("a") }
            await expectRPC(.alreadyExists, "galleries/g") {
                try await c.createLabAccount("b", gallery: .createGallery(.init(galleryId: "g")))
            }
            await expectRPC(.alreadyExists, "galleries/g/images/img") {
                try await c.upload(gallery: "galleries/g", id: "img", bytes: [1])
            }
            _ = try await c.labs.createLab(
                .init(labAccount: "labAccounts/a", labId: "l", lab: .init(templateImage: "galleries/g/images/img")))
            await expectRPC(.alreadyExists, "labAccounts/a/labs/l") {
                _ = try await c.labs.createLab(
                    .init(labAccount: "labAccounts/a", labId: "l", lab: .init(templateImage: "galleries/g/images/img")))
            }
        }
    }

    @Test func listsPaginateWithOpaqueTokens() async throws {
        try await withServer { s in
            let c = try s.admin()
            for i in 1...5 { try await c.createGallery("g\(i)") }
            var names: [String] = []
            var token = ""
            var pages = 0
            repeat {
                let page = try await c.galleries.listGalleries(.init(pageSize: 2, pageToken: token))
                names += page.galleries.map(\.name)
                token = page.nextPageToken
                pages += 1
            } while !token.isEmpty
            #expect(pages == 3 && names == (1...5).map { "galleries/g\($0)" })
            #expect(try await c.galleries.listGalleries(.init()).galleries.count == 5, "default page size is 50")
            await expectRPC(.invalidArgument, "page_token") {
                _ = try await c.galleries.listGalleries(.init(pageToken: "garbage"))
            }
            await expectRPC(.invalidArgument, "page_size") {
                _ = try await c.galleries.listGalleries(.init(pageSize: -1))
            }
            // A token of one list is not valid for another.
            let first = try await c.galleries.listGalleries(.init(pageSize: 1))
            await expectRPC(.invalidArgument, "page_token") {
                _ = try await c.labAccounts.listLabAccounts(.init(pageToken: first.nextPageToken))
            }
            for i in 1...3 { try await c.createLabAccount("a\(i)") }
            let accounts = try await c.labAccounts.listLabAccounts(.init(pageSize: 2))
            #expect(accounts.labAccounts.count == 2 && !accounts.nextPageToken.isEmpty)
            #expect(
                try await c.labAccounts.listLabAccounts(.init(pageSize: 2, pageToken: accounts.nextPageToken))
                    .labAccounts.map(\.name) == ["labAccounts/a3"])
        }
    }
}
