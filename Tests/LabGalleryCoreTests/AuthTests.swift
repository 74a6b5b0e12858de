import Foundation
import TestSupport
import Testing

@testable import LabGalleryCore

@Suite struct AuthTests {
    // SQLite only: it reads or removes the SQLite database file itself.
    @Test func tokensAreRandomPrefixedAndStoredOnlyAsHashes() async throws {
        let f = try await Fixture()
        let t = try await f.service.createToken(principal: "bob", role: .educator)
        #expect(t.plaintext.hasPrefix("lg_") && t.plaintext.count == 3 + 43, "32 random bytes, base64url")
        let other = try await f.service.createToken(principal: "bob", role: .educator)
        #expect(other.plaintext != t.plaintext && other.info.id != t.info.id)
        #expect(try await f.service.authenticate(token: t.plaintext) == Principal(name: "bob", role: .educator))
        // The secret appears nowhere in the database files.
        for suffix in ["", "-wal"] {
            let data =
                (try? Data(contentsOf: URL(fileURLWithPath: f.service.layout.databaseURL.path + suffix))) ?? Data()
            #expect(data.range(of: Data(t.plaintext.utf8)) == nil)
        }
        let listed = try await f.service.listTokens()
        #expect(listed.map(\.id) == [t.info.id, other.info.id])
        #expect(listed[0].principal == "bob" && listed[0].role == .educator && !listed[0].revoked)
    }

    @Test(arguments: StorageEngine.allCases) func revokedUnknownAndMalformedTokensAreUnauthenticated(
        engine: StorageEngine
    ) async throws {
        let f = try await Fixture(engine: engine)
        let t = try await f.service.createToken(principal: "bob", role: .reader)
        try await f.service.revokeToken(id: t.info.id)
        let revoked = await expectError(.unauthenticated) {
            _ = try await f.service.authenticate(token: t.plaintext)
        }
        #expect(try await f.service.listTokens().first?.revoked == true)
        let unknown = await expectError(.unauthenticated) {
            _ = try await f.service.authenticate(token: "lg_" + String(repeating: "A", count: 43))
        }
        // The same answer for both: a revoked token's id is never named (issue 10, finding 7).
        #expect(revoked != nil && revoked == unknown)
        #expect(revoked?.message.contains(t.info.id) == false)
        await expectError(.unauthenticated) { _ = try await f.service.authenticate(token: "") }
        await expectError(.notFound) { try await f.service.revokeToken(id: "tok-nope") }
    }

    @Test func rolesIncludeLowerRoles() async throws {
        #expect(Role.admin.includes(.educator) && Role.admin.includes(.reader) && Role.educator.includes(.reader))
        #expect(!Role.reader.includes(.educator) && !Role.educator.includes(.admin))
        try require(.reader, for: admin)
        try require(.educator, for: educator)
        await expectError(.permissionDenied, contains: ["admin"]) { try require(.admin, for: educator) }
        await expectError(.permissionDenied, contains: ["educator"]) { try require(.educator, for: reader) }
    }

    @Test(arguments: StorageEngine.allCases) func useCasesEnforceTheirRoles(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        // admin-only
        await expectError(.permissionDenied, contains: ["admin"]) {
            _ = try await f.service.createGallery(id: "g1", displayName: "", region: "eastus", caller: educator)
        }
        await expectError(.permissionDenied) {
            _ = try await f.service.createLabAccount(id: "a1", displayName: "", region: "eastus", caller: educator)
        }
        try await f.account("a1", gallery: .create(galleryID: "g1", displayName: ""))
        await expectError(.permissionDenied) {
            _ = try await f.service.beginUpload(
                ImageUploadHeader(
                    gallery: "galleries/g1", imageID: "i", displayName: "", osType: .linux, osState: .generalized),
                caller: educator)
        }
        try await f.upload("galleries/g1", "img")
        await expectError(.permissionDenied) {
            _ = try await f.service.detachGallery(labAccount: "labAccounts/a1", confirm: true, caller: educator)
        }
        await expectError(.permissionDenied) {
            _ = try await f.service.setImagesEnabled(
                labAccount: "labAccounts/a1", images: ["galleries/g1/images/img"], enabled: false, caller: educator)
        }
        await expectError(.permissionDenied) {
            try await f.service.deleteImage(name: "galleries/g1/images/img", caller: educator)
        }
        // educator
        await expectError(.permissionDenied, contains: ["educator"]) {
            _ = try await f.service.createLab(
                labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: "galleries/g1/images/img",
                caller: reader)
        }
        _ = try await f.service.createLab(
            labAccount: "labAccounts/a1", labID: "l1", displayName: "", templateImage: "galleries/g1/images/img",
            caller: educator)
        await expectError(.permissionDenied) {
            _ = try await f.service.saveLabTemplateImage(
                lab: "labAccounts/a1/labs/l1", imageID: "s", displayName: "", caller: reader)
        }
        await expectError(.permissionDenied) {
            try await f.service.deleteLab(name: "labAccounts/a1/labs/l1", caller: reader)
        }
        // reader may read everything
        _ = try await f.service.listGalleries(caller: reader)
        _ = try await f.service.listLabAccounts(caller: reader)
        _ = try await f.service.listImages(gallery: "galleries/g1", caller: reader)
        _ = try await f.service.listLabs(labAccount: "labAccounts/a1", caller: reader)
        _ = try await f.service.listLabAccountImages(labAccount: "labAccounts/a1", caller: reader)
        _ = try await f.service.listRoleAssignments(gallery: "galleries/g1", caller: reader)
        _ = try await f.service.replicationStatus(image: "galleries/g1/images/img", caller: reader)
    }

    @Test(arguments: StorageEngine.allCases) func bootstrapWritesAdminTokenOnceWithMode0600(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        let first = try f.service.bootstrapAdminToken()
        #expect(first.created && first.path == f.dir.appendingPathComponent("admin.token").standardizedFileURL)
        let attrs = try FileManager.default.attributesOfItem(atPath: first.path.path)
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let token = try String(contentsOf: first.path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await f.service.authenticate(token: token) == Principal(name: "admin", role: .admin))
        let second = try f.service.bootstrapAdminToken()
        #expect(!second.created)
        #expect(try await f.service.listTokens().count == 1)
    }
}
