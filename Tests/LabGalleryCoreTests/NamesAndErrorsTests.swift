import Foundation
import Testing
@testable import LabGalleryCore

@Suite struct NamesAndErrorsTests {
    @Test func idRules() {
        for ok in ["a", "lab-1", "x" + String(repeating: "9", count: 62)] { #expect(ResourceID.isValid(ok), "\(ok)") }
        for bad in ["", "1abc", "-a", "Abc", "a_b", "a.b", "a/b", "ä", "a" + String(repeating: "b", count: 63)] {
            #expect(!ResourceID.isValid(bad), "\(bad)")
        }
    }

    @Test func badIdsNameTheField() throws {
        let f = try Fixture()
        expectError(.invalidArgument, field: "gallery_id") { try f.gallery("Bad_Id") }
        expectError(.invalidArgument, field: "lab_account_id") { try f.account("9lives") }
        expectError(.invalidArgument, field: "create_gallery.gallery_id") {
            try f.account("acct", gallery: .create(galleryID: "", displayName: "x"))
        }
        try f.gallery("g1")
        expectError(.invalidArgument, field: "image_id") { try f.upload("galleries/g1", "UPPER") }
        try f.account("a1", gallery: .attach(gallery: "galleries/g1"))
        try f.upload("galleries/g1", "img")
        expectError(.invalidArgument, field: "lab_id") {
            _ = try f.service.createLab(labAccount: "labAccounts/a1", labID: "lab_1", displayName: "", templateImage: "galleries/g1/images/img", caller: educator)
        }
    }

    @Test func resourceNamesParseExactly() throws {
        #expect(try LabAccountName(parsing: "labAccounts/a1", field: "name").id == "a1")
        #expect(try GalleryName(parsing: "galleries/g1", field: "name").description == "galleries/g1")
        let i = try ImageName(parsing: "galleries/g1/images/i1", field: "name")
        #expect(i.gallery.id == "g1" && i.id == "i1" && i.description == "galleries/g1/images/i1")
        let l = try LabName(parsing: "labAccounts/a1/labs/l1", field: "name")
        #expect(l.labAccount.id == "a1" && l.id == "l1" && l.description == "labAccounts/a1/labs/l1")
        for bad in ["", "galleries/", "galleries/G1", "gallery/g1", "galleries/g1/", "/galleries/g1", "galleries/g1/images/i1"] {
            expectError(.invalidArgument, field: "name") { _ = try GalleryName(parsing: bad, field: "name") }
        }
        expectError(.invalidArgument, field: "name") { _ = try ImageName(parsing: "galleries/g1/imgs/i1", field: "name") }
        expectError(.invalidArgument, field: "name") { _ = try LabName(parsing: "labAccounts/a1/labs", field: "name") }
    }

    @Test func malformedNamesAreInvalidArgumentAndMissingOnesNotFound() throws {
        let f = try Fixture()
        expectError(.invalidArgument, field: "name") { _ = try f.service.getGallery(name: "galleries", caller: reader) }
        expectError(.invalidArgument, field: "name") { _ = try f.service.getLabAccount(name: "labaccounts/a", caller: reader) }
        expectError(.invalidArgument, field: "gallery") { _ = try f.service.listImages(gallery: "g1", caller: reader) }
        expectError(.invalidArgument, field: "attach_gallery") { try f.account("a1", gallery: .attach(gallery: "g1")) }
        expectError(.notFound, resource: "galleries/nope", contains: ["galleries/nope"]) { _ = try f.service.getGallery(name: "galleries/nope", caller: reader) }
        expectError(.notFound, resource: "labAccounts/nope") { _ = try f.service.getLabAccount(name: "labAccounts/nope", caller: reader) }
        expectError(.notFound, resource: "galleries/nope") { _ = try f.service.getImage(name: "galleries/nope/images/i", caller: reader) }
        try f.gallery("g1")
        expectError(.notFound, resource: "galleries/g1/images/i") { _ = try f.service.getImage(name: "galleries/g1/images/i", caller: reader) }
        expectError(.notFound, resource: "labAccounts/a/labs/l") { _ = try f.service.getLab(name: "labAccounts/a/labs/l", caller: reader) }
        expectError(.notFound, resource: "galleries/nope") { try f.account("a2", gallery: .attach(gallery: "galleries/nope")) }
    }

    @Test func duplicatesAreAlreadyExists() throws {
        let f = try Fixture()
        try f.gallery("g1")
        expectError(.alreadyExists, resource: "galleries/g1") { try f.gallery("g1") }
        try f.account("a1", gallery: .attach(gallery: "galleries/g1"))
        expectError(.alreadyExists, resource: "labAccounts/a1") { try f.account("a1") }
        expectError(.alreadyExists, resource: "galleries/g1") { try f.account("a2", gallery: .create(galleryID: "g1", displayName: "")) }
        // The failed create rolled back as a whole: no account a2.
        expectError(.notFound) { _ = try f.service.getLabAccount(name: "labAccounts/a2", caller: reader) }
        try f.upload("galleries/g1", "img")
        expectError(.alreadyExists, resource: "galleries/g1/images/img") { try f.upload("galleries/g1", "img") }
        _ = try f.service.createLab(labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: "galleries/g1/images/img", caller: educator)
        expectError(.alreadyExists, resource: "labAccounts/a1/labs/l1") {
            _ = try f.service.createLab(labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: "galleries/g1/images/img", caller: educator)
        }
    }

    @Test func errorCodesMapToGRPC() {
        #expect(LabGalleryError.notFound(resource: "x", message: "m").code.rawValue == 5)
        #expect(LabGalleryError.alreadyExists(resource: "x", message: "m").code.rawValue == 6)
        #expect(LabGalleryError.invalidArgument(field: "f", message: "m").code.rawValue == 3)
        #expect(LabGalleryError.failedPrecondition(message: "m").code.rawValue == 9)
        #expect(LabGalleryError.permissionDenied(message: "m").code.rawValue == 7)
        #expect(LabGalleryError.unauthenticated(message: "m").code.rawValue == 16)
        #expect(LabGalleryError.internal(message: "m").code.rawValue == 13)
    }
}

@Suite struct PaginationTests {
    @Test func listsPaginateWithOpaqueTokens() throws {
        let f = try Fixture()
        for i in 0..<7 { try f.gallery("g\(i)") }
        var seen: [String] = []
        var token = ""
        repeat {
            let page = try f.service.listGalleries(page: PageRequest(size: 3, token: token), caller: reader)
            #expect(page.items.count <= 3)
            seen += page.items.map(\.name)
            token = page.nextPageToken
        } while !token.isEmpty
        #expect(seen == (0..<7).map { "galleries/g\($0)" })
        // 0 → default (50): everything in one page, no next token.
        let all = try f.service.listGalleries(page: PageRequest(size: 0), caller: reader)
        #expect(all.items.count == 7 && all.nextPageToken.isEmpty)
        // Huge sizes are capped, not rejected.
        #expect(try f.service.listGalleries(page: PageRequest(size: 1_000_000), caller: reader).items.count == 7)
    }

    @Test func badPageSizeAndTokenAreInvalidArgument() throws {
        let f = try Fixture()
        try f.gallery("g1"); try f.gallery("g2")
        try f.account("a1")
        expectError(.invalidArgument, field: "page_size") { _ = try f.service.listGalleries(page: PageRequest(size: -1), caller: reader) }
        expectError(.invalidArgument, field: "page_token") { _ = try f.service.listGalleries(page: PageRequest(token: "!!garbage"), caller: reader) }
        // A token from another list is rejected too.
        let galleryToken = try f.service.listGalleries(page: PageRequest(size: 1), caller: reader).nextPageToken
        #expect(!galleryToken.isEmpty)
        expectError(.invalidArgument, field: "page_token") { _ = try f.service.listLabAccounts(page: PageRequest(token: galleryToken), caller: reader) }
    }

    @Test func imagesAndLabsPaginate() throws {
        let f = try Fixture()
        try f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        for i in 0..<3 { try f.upload("galleries/g1", "i\(i)", bytes: [UInt8(i)]) }
        let p1 = try f.service.listImages(gallery: "galleries/g1", page: PageRequest(size: 2), caller: reader)
        let p2 = try f.service.listImages(gallery: "galleries/g1", page: PageRequest(size: 2, token: p1.nextPageToken), caller: reader)
        #expect((p1.items + p2.items).map(\.name) == ["galleries/g1/images/i0", "galleries/g1/images/i1", "galleries/g1/images/i2"])
        #expect(p2.nextPageToken.isEmpty)
        for i in 0..<3 {
            _ = try f.service.createLab(labAccount: "labAccounts/a1", labID: "l\(i)", displayName: "", templateImage: "galleries/g1/images/i0", caller: educator)
        }
        let l1 = try f.service.listLabs(labAccount: "labAccounts/a1", page: PageRequest(size: 2), caller: reader)
        let l2 = try f.service.listLabs(labAccount: "labAccounts/a1", page: PageRequest(size: 2, token: l1.nextPageToken), caller: reader)
        #expect((l1.items + l2.items).map(\.name) == ["labAccounts/a1/labs/l0", "labAccounts/a1/labs/l1", "labAccounts/a1/labs/l2"])
    }
}
