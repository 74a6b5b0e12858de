import Foundation
import Testing
@testable import LabGalleryCore

@Suite struct AuthTests {
    @Test func tokensAreRandomPrefixedAndStoredOnlyAsHashes() throws {
        let f = try Fixture()
        let t = try f.service.createToken(principal: "bob", role: .educator)
        #expect(t.plaintext.hasPrefix("lg_") && t.plaintext.count == 3 + 43, "32 random bytes, base64url")
        let other = try f.service.createToken(principal: "bob", role: .educator)
        #expect(other.plaintext != t.plaintext && other.info.id != t.info.id)
        #expect(try f.service.authenticate(token: t.plaintext) == Principal(name: "bob", role: .educator))
        // The secret appears nowhere in the database files.
        for suffix in ["", "-wal"] {
            let data = (try? Data(contentsOf: URL(fileURLWithPath: f.service.layout.databaseURL.path + suffix))) ?? Data()
            #expect(data.range(of: Data(t.plaintext.utf8)) == nil)
        }
        let listed = try f.service.listTokens()
        #expect(listed.map(\.id) == [t.info.id, other.info.id])
        #expect(listed[0].principal == "bob" && listed[0].role == .educator && !listed[0].revoked)
    }

    @Test func revokedUnknownAndMalformedTokensAreUnauthenticated() throws {
        let f = try Fixture()
        let t = try f.service.createToken(principal: "bob", role: .reader)
        try f.service.revokeToken(id: t.info.id)
        expectError(.unauthenticated, contains: ["revoked"]) { _ = try f.service.authenticate(token: t.plaintext) }
        #expect(try f.service.listTokens().first?.revoked == true)
        expectError(.unauthenticated) { _ = try f.service.authenticate(token: "lg_" + String(repeating: "A", count: 43)) }
        expectError(.unauthenticated) { _ = try f.service.authenticate(token: "") }
        expectError(.notFound) { try f.service.revokeToken(id: "tok-nope") }
    }

    @Test func rolesIncludeLowerRoles() throws {
        #expect(Role.admin.includes(.educator) && Role.admin.includes(.reader) && Role.educator.includes(.reader))
        #expect(!Role.reader.includes(.educator) && !Role.educator.includes(.admin))
        try require(.reader, for: admin)
        try require(.educator, for: educator)
        expectError(.permissionDenied, contains: ["admin"]) { try require(.admin, for: educator) }
        expectError(.permissionDenied, contains: ["educator"]) { try require(.educator, for: reader) }
    }

    @Test func useCasesEnforceTheirRoles() throws {
        let f = try Fixture()
        // admin-only
        expectError(.permissionDenied, contains: ["admin"]) { _ = try f.service.createGallery(id: "g1", displayName: "", region: "eastus", caller: educator) }
        expectError(.permissionDenied) { _ = try f.service.createLabAccount(id: "a1", displayName: "", region: "eastus", caller: educator) }
        try f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        expectError(.permissionDenied) {
            _ = try f.service.beginUpload(ImageUploadHeader(gallery: "galleries/g1", imageID: "i", displayName: "", osType: .linux, osState: .generalized), caller: educator)
        }
        try f.upload("galleries/g1", "img")
        expectError(.permissionDenied) { _ = try f.service.detachGallery(labAccount: "labAccounts/a1", confirm: true, caller: educator) }
        expectError(.permissionDenied) { _ = try f.service.setImagesEnabled(labAccount: "labAccounts/a1", images: ["galleries/g1/images/img"], enabled: false, caller: educator) }
        expectError(.permissionDenied) { try f.service.deleteImage(name: "galleries/g1/images/img", caller: educator) }
        // educator
        expectError(.permissionDenied, contains: ["educator"]) {
            _ = try f.service.createLab(labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: "galleries/g1/images/img", caller: reader)
        }
        _ = try f.service.createLab(labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: "galleries/g1/images/img", caller: educator)
        expectError(.permissionDenied) { _ = try f.service.saveLabTemplateImage(lab: "labAccounts/a1/labs/l1", imageID: "s", displayName: "", caller: reader) }
        expectError(.permissionDenied) { try f.service.deleteLab(name: "labAccounts/a1/labs/l1", caller: reader) }
        // reader may read everything
        _ = try f.service.listGalleries(caller: reader)
        _ = try f.service.listLabAccounts(caller: reader)
        _ = try f.service.listImages(gallery: "galleries/g1", caller: reader)
        _ = try f.service.listLabs(labAccount: "labAccounts/a1", caller: reader)
        _ = try f.service.listLabAccountImages(labAccount: "labAccounts/a1", caller: reader)
        _ = try f.service.listRoleAssignments(gallery: "galleries/g1", caller: reader)
        _ = try f.service.replicationStatus(image: "galleries/g1/images/img", caller: reader)
    }

    @Test func bootstrapWritesAdminTokenOnceWithMode0600() throws {
        let f = try Fixture()
        let first = try f.service.bootstrapAdminToken()
        #expect(first.created && first.path == f.dir.appendingPathComponent("admin.token").standardizedFileURL)
        let attrs = try FileManager.default.attributesOfItem(atPath: first.path.path)
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let token = try String(contentsOf: first.path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try f.service.authenticate(token: token) == Principal(name: "admin", role: .admin))
        let second = try f.service.bootstrapAdminToken()
        #expect(!second.created)
        #expect(try f.service.listTokens().count == 1)
    }
}
