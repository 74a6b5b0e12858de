import Foundation
import TestSupport
import Testing

@testable import LabGalleryCore

@Suite struct NamesAndErrorsTests {
    @Test func idRules() async {
        for ok in ["a", "lab-1", "x" + String(repeating: "9", count: 62)] { #expect(ResourceID.isValid(ok), "\(ok)") }
        for bad in ["", "1abc", "-a", "Abc", "a_b", "a.b", "a/b", "ä", "a" + String(repeating: "b", count: 63)] {
            #expect(!ResourceID.isValid(bad), "\(bad)")
        }
    }

    @Test(arguments: StorageEngine.allCases) func badIdsNameTheField(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        await expectError(.invalidArgument, field: "gallery_id") { try await f.gallery("Bad_Id") }
        await expectError(.invalidArgument, field: "lab_account_id") { try await f.account("9lives") }
        await expectError(.invalidArgument, field: "create_gallery.gallery_id") {
            try await f.account("acct", gallery: .create(galleryID: "", displayName: "x"))
        }
        try await f.gallery("g1")
        await expectError(.invalidArgument, field: "image_id") { try await f.upload("galleries/g1", "UPPER") }
        try await f.account("a1", gallery: .attach(gallery: "galleries/g1"))
        try await f.upload("galleries/g1", "img")
        await expectError(.invalidArgument, field: "lab_id") {
            _ = try await f.service.createLab(
                labAccount: "labAccounts/a1", labID: "lab_1", displayName: "", templateImage: "galleries/g1/images/img",
                caller: educator)
        }
    }

    @Test func resourceNamesParseExactly() async throws {
        #expect(try LabAccountName(parsing: "labAccounts/a1", field: "name").id == "a1")
        #expect(try GalleryName(parsing: "galleries/g1", field: "name").description == "galleries/g1")
        let i = try ImageName(parsing: "galleries/g1/images/i1", field: "name")
        #expect(i.gallery.id == "g1" && i.id == "i1" && i.description == "galleries/g1/images/i1")
        let l = try LabName(parsing: "labAccounts/a1/labs/l1", field: "name")
        #expect(l.labAccount.id == "a1" && l.id == "l1" && l.description == "labAccounts/a1/labs/l1")
        for bad in [
            "", "galleries/", "galleries/G1", "gallery/g1", "galleries/g1/", "/galleries/g1", "galleries/g1/images/i1",
        ] {
            await expectError(.invalidArgument, field: "name") { _ = try GalleryName(parsing: bad, field: "name") }
        }
        await expectError(.invalidArgument, field: "name") {
            _ = try ImageName(parsing: "galleries/g1/imgs/i1", field: "name")
        }
        await expectError(.invalidArgument, field: "name") {
            _ = try LabName(parsing: "labAccounts/a1/labs", field: "name")
        }
    }

    @Test(arguments: StorageEngine.allCases) func malformedNamesAreInvalidArgumentAndMissingOnesNotFound(
        engine: StorageEngine
    ) async throws {
        let f = try await Fixture(engine: engine)
        await expectError(.invalidArgument, field: "name") {
            _ = try await f.service.getGallery(name: "galleries", caller: reader)
        }
        await expectError(.invalidArgument, field: "name") {
            _ = try await f.service.getLabAccount(name: "labaccounts/a", caller: reader)
        }
        await expectError(.invalidArgument, field: "gallery") {
            _ = try await f.service.listImages(gallery: "g1", caller: reader)
        }
        await expectError(.invalidArgument, field: "attach_gallery") {
            try await f.account("a1", gallery: .attach(gallery: "g1"))
        }
        await expectError(.notFound, resource: "galleries/nope", contains: ["galleries/nope"]) {
            _ = try await f.service.getGallery(name: "galleries/nope", caller: reader)
        }
        await expectError(.notFound, resource: "labAccounts/nope") {
            _ = try await f.service.getLabAccount(name: "labAccounts/nope", caller: reader)
        }
        await expectError(.notFound, resource: "galleries/nope") {
            _ = try await f.service.getImage(name: "galleries/nope/images/i", caller: reader)
        }
        try await f.gallery("g1")
        await expectError(.notFound, resource: "galleries/g1/images/i") {
            _ = try await f.service.getImage(name: "galleries/g1/images/i", caller: reader)
        }
        await expectError(.notFound, resource: "labAccounts/a/labs/l") {
            _ = try await f.service.getLab(name: "labAccounts/a/labs/l", caller: reader)
        }
        await expectError(.notFound, resource: "galleries/nope") {
            try await f.account("a2", gallery: .attach(gallery: "galleries/nope"))
        }
    }

    @Test(arguments: StorageEngine.allCases) func duplicatesAreAlreadyExists(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        await expectError(.alreadyExists, resource: "galleries/g1") { try await f.gallery("g1") }
        try await f.account("a1", gallery: .attach(gallery: "galleries/g1"))
        await expectError(.alreadyExists, resource: "labAccounts/a1") { try await f.account("a1") }
        await expectError(.alreadyExists, resource: "galleries/g1") {
            try await f.account("a2", gallery: .create(galleryID: "g1", displayName: ""))
        }
        // The failed create rolled back as a whole: no account a2.
        await expectError(.notFound) { _ = try await f.service.getLabAccount(name: "labAccounts/a2", caller: reader) }
        try await f.upload("galleries/g1", "img")
        await expectError(.alreadyExists, resource: "galleries/g1/images/img") {
            try await f.upload("galleries/g1", "img")
        }
        _ = try await f.service.createLab(
            labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: "galleries/g1/images/img",
            caller: educator)
        await expectError(.alreadyExists, resource: "labAccounts/a1/labs/l1") {
            _ = try await f.service.createLab(
                labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: "galleries/g1/images/img",
                caller: educator)
        }
    }

    @Test func everyErrorHasItsDomainCode() async {
        #expect(LabGalleryError.notFound(resource: "x", message: "m").code == .notFound)
        #expect(LabGalleryError.alreadyExists(resource: "x", message: "m").code == .alreadyExists)
        #expect(LabGalleryError.invalidArgument(field: "f", message: "m").code == .invalidArgument)
        #expect(LabGalleryError.failedPrecondition(message: "m").code == .failedPrecondition)
        #expect(LabGalleryError.permissionDenied(message: "m").code == .permissionDenied)
        #expect(LabGalleryError.unauthenticated(message: "m").code == .unauthenticated)
        #expect(LabGalleryError.internal(message: "m").code == .internal)
        #expect(LabGalleryError.dataLoss(message: "m").code == .dataLoss)
        #expect(LabGalleryError.unavailable(message: "m").code == .unavailable)
        #expect(LabGalleryError.cancelled(message: "m").code == .cancelled)
    }
}

@Suite struct PaginationTests {
    @Test(arguments: StorageEngine.allCases) func listsPaginateWithOpaqueTokens(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        for i in 0..<7 { try await f.gallery("g\(i)") }
        var seen: [String] = []
        var token = ""
        repeat {
            let page = try await f.service.listGalleries(page: PageRequest(size: 3, token: token), caller: reader)
            #expect(page.items.count <= 3)
            seen += page.items.map(\.name)
            token = page.nextPageToken
        } while !token.isEmpty
        #expect(seen == (0..<7).map { "galleries/g\($0)" })
        // 0 → default (50): everything in one page, no next token.
        let all = try await f.service.listGalleries(page: PageRequest(size: 0), caller: reader)
        #expect(all.items.count == 7 && all.nextPageToken.isEmpty)
        // Huge sizes are capped, not rejected.
        #expect(try await f.service.listGalleries(page: PageRequest(size: 1_000_000), caller: reader).items.count == 7)
    }

    @Test(arguments: StorageEngine.allCases) func badPageSizeAndTokenAreInvalidArgument(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        try await f.gallery("g2")
        try await f.account("a1")
        await expectError(.invalidArgument, field: "page_size") {
            _ = try await f.service.listGalleries(page: PageRequest(size: -1), caller: reader)
        }
        await expectError(.invalidArgument, field: "page_token") {
            _ = try await f.service.listGalleries(page: PageRequest(token: "!!garbage"), caller: reader)
        }
        // A token from another list is rejected too.
        let galleryToken = try await f.service.listGalleries(page: PageRequest(size: 1), caller: reader).nextPageToken
        #expect(!galleryToken.isEmpty)
        await expectError(.invalidArgument, field: "page_token") {
            _ = try await f.service.listLabAccounts(page: PageRequest(token: galleryToken), caller: reader)
        }
    }

    @Test(arguments: StorageEngine.allCases) func imagesAndLabsPaginate(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        for i in 0..<3 { try await f.upload("galleries/g1", "i\(i)", bytes: [UInt8(i)]) }
        let p1 = try await f.service.listImages(gallery: "galleries/g1", page: PageRequest(size: 2), caller: reader)
        let p2 = try await f.service.listImages(
            gallery: "galleries/g1", page: PageRequest(size: 2, token: p1.nextPageToken), caller: reader)
        #expect(
            (p1.items + p2.items).map(\.name) == [
                "galleries/g1/images/i0", "galleries/g1/images/i1", "galleries/g1/images/i2",
            ])
        #expect(p2.nextPageToken.isEmpty)
        for i in 0..<3 {
            _ = try await f.service.createLab(
                labAccount: "labAccounts/a1", labID: "l\(i)", displayName: "", templateImage: "galleries/g1/images/i0",
                caller: educator)
        }
        let l1 = try await f.service.listLabs(labAccount: "labAccounts/a1", page: PageRequest(size: 2), caller: reader)
        let l2 = try await f.service.listLabs(
            labAccount: "labAccounts/a1", page: PageRequest(size: 2, token: l1.nextPageToken), caller: reader)
        #expect(
            (l1.items + l2.items).map(\.name) == [
                "labAccounts/a1/labs/l0", "labAccounts/a1/labs/l1", "labAccounts/a1/labs/l2",
            ])
    }
}
