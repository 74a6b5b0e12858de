import Foundation
import GeneratedProtos
import H2RPC
import LabGalleryCore
import LabGalleryServer
import Testing

/// Bearer-token authentication and role rules over the wire.
@Suite struct AuthTests {
    @Test func callsWithoutAValidTokenAreUnauthenticated() async throws {
        try await withServer { s in
            let anonymous = try s.connect(token: nil)
            await expectRPC(.unauthenticated, "authorization", "Bearer") {
                _ = try await anonymous.galleries.listGalleries(.init())
            }
            await expectRPC(.unauthenticated, "authorization") {
                try await anonymous.upload(gallery: "galleries/g", id: "x", bytes: [1])
            }
            await expectRPC(.unauthenticated, "unknown token") {
                _ = try await s.connect(token: "lg_nope").galleries.listGalleries(.init())
            }
            await expectRPC(.unauthenticated, "malformed", "Bearer") {
                _ = try await s.connect(authorization: "Basic YWRtaW4=").galleries.listGalleries(.init())
            }
            await expectRPC(.unauthenticated, "malformed") {
                _ = try await s.connect(token: "not-a-token").galleries.listGalleries(.init())
            }
            // The scheme is case-insensitive.
            _ = try await s.connect(authorization: "bearer \(s.adminToken)").galleries.listGalleries(.init())
            let created = try await s.server.core.createToken(principal: "temp", role: .admin)
            let temp = try s.connect(token: created.plaintext)
            _ = try await temp.galleries.listGalleries(.init())
            try await s.server.core.revokeToken(id: created.info.id)
            // The same answer as an unknown token: the revoked token's id is never named.
            await expectRPC(.unauthenticated, "unknown token") { _ = try await temp.galleries.listGalleries(.init()) }
        }
    }

    @Test func healthNeedsNoToken() async throws {
        try await withServer { s in
            let anonymous = try s.connect(token: nil)
            #expect(try await anonymous.health.check(.init(service: "")).status == .serving)
            #expect(try await anonymous.health.check(.init(service: "labgallery.v1.GalleryService")).status == .serving)
        }
    }

    @Test func rolesArePermissionDeniedNamingTheRoleNeeded() async throws {
        try await withServer { s in
            let admin = try s.admin()
            try await admin.standardSetup()
            let reader = try await s.connect(as: "rita", role: .reader)
            let educator = try await s.connect(as: "eddie", role: .educator)
            // Readers read.
            #expect(try await reader.galleries.listGalleries(.init()).galleries.map(\.name) == ["galleries/g"])
            #expect(
                try await reader.images.getImage(.init(name: "galleries/g/images/img")).name == "galleries/g/images/img"
            )
            // Admin things need admin.
            await expectRPC(.permissionDenied, "rita", "reader", "needs role admin") {
                try await reader.createGallery("x")
            }
            await expectRPC(.permissionDenied, "eddie", "needs role admin") { try await educator.createGallery("x") }
            await expectRPC(.permissionDenied, "needs role admin") {
                try await educator.upload(gallery: "galleries/g", id: "x", bytes: [1])
            }
            await expectRPC(.permissionDenied, "needs role admin") {
                _ = try await educator.galleries.detachGallery(.init(labAccount: "labAccounts/a", confirm: true))
            }
            // Educator things need educator; admins include them.
            await expectRPC(.permissionDenied, "needs role educator") {
                _ = try await reader.labs.createLab(
                    .init(labAccount: "labAccounts/a", labId: "l", lab: .init(templateImage: "galleries/g/images/img")))
            }
            _ = try await educator.labs.createLab(
                .init(labAccount: "labAccounts/a", labId: "l", lab: .init(templateImage: "galleries/g/images/img")))
            _ = try await admin.labs.createLab(
                .init(labAccount: "labAccounts/a", labId: "l2", lab: .init(templateImage: "galleries/g/images/img")))
            #expect(s.files(under: "regions/eastus").count == 1, "the refused upload stored nothing")
        }
    }
}
