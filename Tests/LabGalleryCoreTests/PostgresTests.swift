import Foundation
import LabGalleryPostgres
import TestSupport
import Testing

@testable import LabGalleryCore

/// What only PostgreSQL has: several instances (each its own `PostgresStorage`, so its own pool)
/// on one database, and a database that goes away and comes back.
@Suite struct PostgresTests {
    /// Two services on one fresh database, as two server instances sharing a data directory.
    final class TwoInstances: Sendable {
        let database: TestDatabase
        let dir: URL
        let a: LabGalleryService
        let b: LabGalleryService

        init() async throws {
            let database = try await blocking { try TestPostgres.freshDatabase() }
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgpg-\(UUID().uuidString)")
            self.database = database
            self.dir = dir
            (a, b) = try await blocking {
                (
                    try LabGalleryService.open(dataDirectory: dir, storage: try PostgresStorage(url: database.url)),
                    try LabGalleryService.open(dataDirectory: dir, storage: try PostgresStorage(url: database.url))
                )
            }
        }

        deinit {
            try? a.storage.close()
            try? b.storage.close()
            database.drop()
            try? FileManager.default.removeItem(at: dir)
        }
    }

    @Test func concurrentAttachOnTwoInstancesLetsExactlyOneWin() async throws {
        let x = try await TwoInstances()
        for round in 0..<10 {
            let account = "a\(round)"
            _ = try await x.a.createLabAccount(
                id: account, displayName: "", region: "eastus", gallery: .none, caller: admin)
            _ = try await x.a.createGallery(id: "g\(round)a", displayName: "", region: "eastus", caller: admin)
            _ = try await x.b.createGallery(id: "g\(round)b", displayName: "", region: "eastus", caller: admin)
            async let first = failure { () async throws(LabGalleryError) in
                _ = try await x.a.attachGallery(
                    labAccount: "labAccounts/\(account)", gallery: "galleries/g\(round)a", caller: admin)
            }
            async let second = failure { () async throws(LabGalleryError) in
                _ = try await x.b.attachGallery(
                    labAccount: "labAccounts/\(account)", gallery: "galleries/g\(round)b", caller: admin)
            }
            let results = await [first, second]
            let failures = results.compactMap { $0 }
            #expect(failures.count == 1, "round \(round): \(results)")
            #expect(failures.allSatisfy { $0.code == .failedPrecondition }, "round \(round): \(failures)")
            let attached = try await x.b.getLabAccount(name: "labAccounts/\(account)", caller: reader).attachedGallery
            #expect(attached == "galleries/g\(round)a" || attached == "galleries/g\(round)b")
        }
    }

    @Test func concurrentCreateOfOneIdOnTwoInstancesIsAlreadyExistsForTheLoser() async throws {
        let x = try await TwoInstances()
        for round in 0..<10 {
            async let first = failure { () async throws(LabGalleryError) in
                _ = try await x.a.createGallery(id: "g\(round)", displayName: "A", region: "eastus", caller: admin)
            }
            async let second = failure { () async throws(LabGalleryError) in
                _ = try await x.b.createGallery(id: "g\(round)", displayName: "B", region: "eastus", caller: admin)
            }
            let results = await [first, second]
            let failures = results.compactMap { $0 }
            #expect(failures.count == 1, "round \(round): \(results)")
            #expect(failures.allSatisfy { $0.code == .alreadyExists }, "round \(round): \(failures)")
        }
        #expect(try await x.a.listGalleries(caller: reader).items.count == 10)
    }

    @Test func instancesStartingTogetherOnAnEmptyDatabaseMakeOneSchemaAndOneAdminToken() async throws {
        let database = try await blocking { try TestPostgres.freshDatabase() }
        defer { database.drop() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgpg-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Four instances open (migrate) and bootstrap at once, each on a thread of its own.
        let outcomes = try await withThrowingTaskGroup(of: (LabGalleryService, Bool).self) { group in
            for _ in 0..<4 {
                group.addTask {
                    try await blocking {
                        let core = try LabGalleryService.open(
                            dataDirectory: dir, storage: try PostgresStorage(url: database.url))
                        return (core, try core.bootstrapAdminToken().created)
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        defer { for (core, _) in outcomes { try? core.storage.close() } }
        #expect(outcomes.filter(\.1).count == 1, "exactly one instance creates the admin token")
        let tokens = try await outcomes[0].0.listTokens()
        #expect(tokens.count == 1)
        let secret = try String(contentsOf: dir.appendingPathComponent("admin.token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        for (core, _) in outcomes {
            #expect(try await core.authenticate(token: secret) == Principal(name: "admin", role: .admin))
        }
        let attributes = try FileManager.default.attributesOfItem(
            atPath: dir.appendingPathComponent("admin.token").path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let staged = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".admin") }
        #expect(staged.isEmpty, "no staged token file is left behind")
        let versions = try await blocking {
            try PostgresConnection(try PostgresTarget(database.url)).query(
                "SELECT version FROM labgallery_migrations ORDER BY version"
            ).rows
        }
        #expect(versions == [["v1"], ["v2"]], "each migration applied once")
    }

    @Test func aRevokedTokenIsRefusedByEveryInstanceAtOnce() async throws {
        let x = try await TwoInstances()
        let token = try await x.a.createToken(principal: "p", role: .reader)
        #expect(try await x.b.authenticate(token: token.plaintext).name == "p")
        try await x.b.revokeToken(id: token.info.id)
        await expectError(.unauthenticated) { _ = try await x.a.authenticate(token: token.plaintext) }
    }

    /// The database stops mid-run: calls fail UNAVAILABLE naming the server, no SQL, no
    /// password; once it is back, the same services work again (broken connections replaced).
    @Test func aStoppedDatabaseIsUnavailableThenReconnects() async throws {
        let cluster = try await blocking { try TestPostgresCluster() }
        defer { cluster.destroy() }
        let database = try await blocking { try TestDatabase(superuserURL: cluster.url) }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgpg-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let core = try await blocking {
            try LabGalleryService.open(dataDirectory: dir, storage: try PostgresStorage(url: database.url))
        }
        defer { try? core.storage.close() }
        _ = try await core.createGallery(id: "before", displayName: "", region: "eastus", caller: admin)

        try await blocking { try cluster.stop() }
        for call in 0..<3 {
            let error = await expectError(.unavailable, contains: ["database unavailable", "127.0.0.1", "retry"]) {
                if call == 1 {
                    _ = try await core.listGalleries(caller: reader)
                } else {
                    _ = try await core.createGallery(
                        id: "during\(call)", displayName: "", region: "eastus", caller: admin)
                }
            }
            for sql in ["SELECT", "INSERT", "BEGIN", "gallery ("] {
                #expect(error?.message.contains(sql) == false, "\(error?.message ?? "")")
            }
        }

        try await blocking { try cluster.start() }
        _ = try await core.createGallery(id: "after", displayName: "", region: "eastus", caller: admin)
        #expect(
            try await core.listGalleries(caller: reader).items.map(\.name) == ["galleries/after", "galleries/before"])
    }

    @Test func anUnreachableDatabaseIsUnavailableWithoutThePassword() async throws {
        // A port nothing listens on: bind one, close it.
        let url = "postgresql://bob:s3cretpw@127.0.0.1:\(try freePort())/db"
        let error = await expectError(
            .unavailable, contains: ["database unavailable (postgresql://127.0.0.1:", "/db)"]
        ) {
            _ = try await blocking { try PostgresStorage(url: url) }
        }
        #expect(error?.message.contains("s3cretpw") == false)
    }

    @Test func aBusyPoolIsUnavailableAfterItsWait() async throws {
        let database = try await blocking { try TestPostgres.freshDatabase() }
        defer { database.drop() }
        let storage = try await blocking { try PostgresStorage(url: database.url, poolSize: 1, poolWaitTimeout: 0.2) }
        defer { try? storage.close() }
        let error = await expectError(.unavailable, contains: ["database unavailable", "busy", "--database-pool-size"])
        {
            try await blocking {
                // The one connection is held by the outer read; the inner one waits, then gives up.
                try storage.read { _ in try storage.read { _ in () } }
            }
        }
        #expect(error != nil)
        #expect(try await blocking { try storage.read { try $0.countTokens() } } == 0, "the pool works afterwards")
    }
}

/// A loopback port nothing listens on (bound, then closed).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
        }
    }
    guard bound else { throw POSIXError(.EADDRNOTAVAIL) }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// The error `body` throws, or `nil` when it succeeds.
func failure(_ body: () async throws(LabGalleryError) -> Void) async -> LabGalleryError? {
    do {
        try await body()
        return nil
    } catch {
        return error
    }
}
