import Foundation
import LabGalleryPostgres
import Synchronization

// PostgreSQL for the tests: `make test` starts one throwaway cluster and exports its superuser
// URL as LABGALLERY_TEST_POSTGRES_URL; a developer running `swift test --filter` without it gets
// a cluster started once per process (Tools/pg-cluster.sh) and stopped at exit. A test never
// skips PostgreSQL: without a cluster, the PostgreSQL cases fail saying how to get one.

/// The storage engines the storage and domain suites run against.
public enum StorageEngine: String, CaseIterable, Sendable, CustomStringConvertible {
    /// SQLite in the data directory (the embedded default).
    case sqlite
    /// PostgreSQL: a fresh database of the test cluster per fixture.
    case postgres

    /// The engine's name, for test names.
    public var description: String { rawValue }
}

/// The repository's root (for Tools/pg-cluster.sh and the built products).
public let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// A cluster of the test process's own (Tools/pg-cluster.sh in a temp directory); `stop` and
/// `start` again keep its data and port (the database-restart tests use one of their own).
public final class TestPostgresCluster: Sendable {
    /// The cluster's directory (data, socket, log).
    public let directory: URL
    /// Its superuser URL.
    public let url: String

    /// Starts a new cluster in a fresh temp directory.
    public init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "labgallery-pg-\(UUID().uuidString.prefix(8))")
        url = try Self.script("start", directory)
    }

    /// Stops the server (fast shutdown, by the PID in postmaster.pid).
    public func stop() throws { _ = try Self.script("stop", directory) }

    /// Starts the stopped server again (same port, same data).
    public func start() throws { _ = try Self.script("start", directory) }

    /// Stops the server and removes its directory.
    public func destroy() {
        _ = try? Self.script("stop", directory)
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs Tools/pg-cluster.sh `command` `dir`; its stdout, trimmed.
    static func script(_ command: String, _ dir: URL) throws -> String {
        // Output goes to files, not pipes: the server the script starts (or a process spawned
        // meanwhile by another test) could inherit a pipe's write end and never let it reach EOF.
        let outURL = FileManager.default.temporaryDirectory.appendingPathComponent("pg-cluster-\(UUID().uuidString)")
        let errURL = outURL.appendingPathExtension("err")
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        // system(3), not Process: Foundation's wait never saw this script end once the server
        // it starts was running (the test hung); a plain fork/wait does.
        let quote = { (s: String) in "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let script = repositoryRoot.appendingPathComponent("Tools/pg-cluster.sh").path
        let status = system(
            "\(quote(script)) \(command) \(quote(dir.path)) </dev/null >\(quote(outURL.path)) 2>\(quote(errURL.path))")
        let output = (try? Data(contentsOf: outURL)) ?? Data()
        let errors = (try? Data(contentsOf: errURL)) ?? Data()
        guard status == 0 else {
            throw TestPostgresError(
                "Tools/pg-cluster.sh \(command) \(dir.path) failed: \(String(decoding: errors, as: UTF8.self))")
        }
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Why no PostgreSQL could be had, with what to do.
public struct TestPostgresError: Error, CustomStringConvertible {
    /// The explanation.
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The process-wide test server: LABGALLERY_TEST_POSTGRES_URL, or a cluster started on first use
/// and stopped at exit.
public enum TestPostgres {
    private static let server = Mutex<Result<String, TestPostgresError>?>(nil)
    private static let ownCluster = Mutex<TestPostgresCluster?>(nil)

    /// The superuser URL; throws (so the test fails) when no cluster can be had.
    public static func superuserURL() throws -> String {
        try server.withLock { cached in
            if let cached { return try cached.get() }
            let result: Result<String, TestPostgresError>
            if let url = ProcessInfo.processInfo.environment["LABGALLERY_TEST_POSTGRES_URL"], !url.isEmpty {
                result = .success(url)
            } else {
                do {
                    let cluster = try TestPostgresCluster()
                    ownCluster.withLock { $0 = cluster }
                    atexit { TestPostgres.stopOwnCluster() }
                    result = .success(cluster.url)
                } catch {
                    result = .failure(
                        TestPostgresError(
                            "no PostgreSQL for the tests: \(error). Run `make deps` (Debian's postgresql and libpq-dev), or start one with `Tools/pg-cluster.sh start DIR` and export LABGALLERY_TEST_POSTGRES_URL=<the URL it prints>"
                        ))
                }
            }
            cached = result
            return try result.get()
        }
    }

    static func stopOwnCluster() {
        ownCluster.withLock { cluster in
            cluster?.destroy()
            cluster = nil
        }
    }

    /// A new empty database on the test server; drop it with ``TestDatabase/drop()``.
    public static func freshDatabase() throws -> TestDatabase {
        try TestDatabase(superuserURL: try superuserURL())
    }
}

/// An empty database `t_<random>` of the test server.
public final class TestDatabase: Sendable {
    /// Its URL (the superuser URL with this database).
    public let url: String
    /// Its name.
    public let name: String
    private let superuserURL: String

    /// Creates `t_<random>` through `superuserURL`.
    public init(superuserURL: String) throws {
        self.superuserURL = superuserURL
        name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        let admin = try PostgresConnection(try PostgresTarget(superuserURL))
        try admin.run("CREATE DATABASE \(name)")
        url = Self.url(superuserURL, database: name)
    }

    /// `url` with its database (path) replaced by `database`.
    public static func url(_ url: String, database: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.path = "/" + database
        return components.string ?? url
    }

    /// Drops the database (closing its sessions).
    public func drop() {
        guard let admin = try? PostgresConnection(try PostgresTarget(superuserURL)) else { return }
        try? admin.run("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }
}
