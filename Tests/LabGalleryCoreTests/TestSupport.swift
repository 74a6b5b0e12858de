import Blocking
import Foundation
import LabGalleryPostgres
import TestSupport
import Testing

@testable import LabGalleryCore

let admin = Principal(name: "alice", role: .admin)
let educator = Principal(name: "eddie", role: .educator)
let reader = Principal(name: "rita", role: .reader)

/// A real data directory (blob dirs; the SQLite file with `.sqlite`) in a fresh temp dir, removed
/// on deinit; with `.postgres`, the database is a fresh one of the test cluster, dropped on deinit.
final class Fixture: Sendable {
    let dir: URL
    let service: LabGalleryService
    /// The PostgreSQL database, with `.postgres`.
    let database: TestDatabase?

    init(_ configuration: LabGalleryConfiguration = .init(), dir: URL? = nil, engine: StorageEngine = .sqlite)
        async throws
    {
        let dir = dir ?? FileManager.default.temporaryDirectory.appendingPathComponent("lgcore-\(UUID().uuidString)")
        self.dir = dir
        switch engine {
        case .sqlite:
            database = nil
            service = try await BlockingExecutor.shared.run { () throws(LabGalleryError) in
                try LabGalleryService.open(dataDirectory: dir, configuration: configuration)
            }
        case .postgres:
            let database = try await blocking { try TestPostgres.freshDatabase() }
            self.database = database
            service = try await blocking {
                try LabGalleryService.open(
                    dataDirectory: dir, storage: try PostgresStorage(url: database.url), configuration: configuration)
            }
        }
    }

    /// A fixture whose database gives up on a held write lock after `busyTimeout` seconds (SQLite).
    init(_ configuration: LabGalleryConfiguration, busyTimeout: TimeInterval) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgcore-\(UUID().uuidString)")
        self.dir = dir
        database = nil
        service = try await blocking {
            let layout = DataLayout(root: dir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            return LabGalleryService(
                storage: try SQLiteStorage(path: layout.databaseURL.path, busyTimeout: busyTimeout),
                layout: layout, configuration: configuration)
        }
    }

    /// A second service on the same data directory and database (as a restarted server would
    /// open it: migrations run again and must find nothing to do).
    func reopened() async throws -> LabGalleryService {
        let dir = self.dir
        if let database {
            return try await blocking {
                try LabGalleryService.open(dataDirectory: dir, storage: try PostgresStorage(url: database.url))
            }
        }
        return try await blocking { try LabGalleryService.open(dataDirectory: dir) }
    }

    deinit {
        if let database {
            try? service.storage.close()
            database.drop()
        }
        try? FileManager.default.removeItem(at: dir)
    }

    @discardableResult
    func gallery(_ id: String, region: String = "eastus") async throws -> Gallery {
        try await service.createGallery(id: id, displayName: id.uppercased(), region: region, caller: admin)
    }

    @discardableResult
    func account(_ id: String, region: String = "eastus", gallery: LabAccountGallerySetup = .none) async throws
        -> LabAccount
    {
        try await service.createLabAccount(id: id, displayName: id, region: region, gallery: gallery, caller: admin)
    }

    @discardableResult
    func upload(
        _ gallery: String, _ id: String, bytes: [UInt8] = Array(repeating: 7, count: 1000),
        osType: OSType = .linux, osState: OSState = .generalized, sha256: String? = nil, chunk: Int = 300
    ) async throws -> Image {
        let up = try await service.beginUpload(
            ImageUploadHeader(
                gallery: gallery, imageID: id, displayName: "Image \(id)",
                osType: osType, osState: osState, sha256: sha256), caller: admin)
        var i = 0
        while i < bytes.count {
            try await up.append(bytes[i..<min(i + chunk, bytes.count)])
            i += chunk
        }
        return try await up.finish()
    }

    /// Regular files under `<data-dir>/<relative>`, relative to the data dir, sorted.
    func files(under relative: String) -> [String] {
        FileOps.files(under: dir.appendingPathComponent(relative), relativeTo: dir).sorted()
    }

    func blobPath(_ image: String) async throws -> URL {
        let n = try ImageName(parsing: image, field: "name")
        let stored = try await service.blocking { () throws(LabGalleryError) in try service.read { try $0.image(n) } }
        return dir.appendingPathComponent(try #require(stored).blobPath)
    }
}

/// Runs `body`, expecting a `LabGalleryError` with `code` (and the given field / resource / message fragment).
@discardableResult
func expectError(
    _ code: LabGalleryError.Code, field: String? = nil, resource: String? = nil, contains fragments: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async -> LabGalleryError? {
    do {
        try await body()
        Issue.record("expected \(code), but the call succeeded", sourceLocation: sourceLocation)
        return nil
    } catch let e as LabGalleryError {
        #expect(e.code == code, "got \(e)", sourceLocation: sourceLocation)
        if let field {
            if case .invalidArgument(let f, _) = e {
                #expect(f == field, "got \(e)", sourceLocation: sourceLocation)
            } else {
                Issue.record("expected invalidArgument(\(field)), got \(e)", sourceLocation: sourceLocation)
            }
        }
        if let resource {
            switch e {
            case .notFound(let r, _), .alreadyExists(let r, _):
                #expect(r == resource, "got \(e)", sourceLocation: sourceLocation)
            default: Issue.record("expected a resource error for \(resource), got \(e)", sourceLocation: sourceLocation)
            }
        }
        for f in fragments {
            #expect(e.message.contains(f), "message \"\(e.message)\" lacks \"\(f)\"", sourceLocation: sourceLocation)
        }
        return e
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// SHA-256 of one million "a" (FIPS 180-2 test vector).
let millionASHA256 = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
/// SHA-256 of "abc".
let abcSHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
