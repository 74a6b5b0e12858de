import ArgumentParser
import Foundation

/// The PostgreSQL driver comparison of issue 12: the gallery's typical transaction (an attach)
/// and a one-statement floor, through libpq (blocking connections on threads made for blocking
/// work, as the product uses it) or postgres-nio (`PostgresClient`'s pool, async/await), with
/// prepared statements in both. `pg_drivers.sh` runs both drivers side by side.
@main
struct PGDriverBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pg-driver-bench",
        abstract: "The gallery's attach transaction on PostgreSQL through libpq or postgres-nio.")

    @Option(help: "libpq or postgres-nio.")
    var driver: DriverName

    @Option(help: "postgresql://USER@HOST:PORT/DB (TCP; ?host=/dir for a unix socket).")
    var url: String

    @Option(help: "Pool size: connections to the database.")
    var connections = 8

    @Option(help: "Concurrent callers (async tasks), each running transactions one after another.")
    var concurrency = 8

    @Option(help: "Measured transactions in all (after the warm-up).")
    var transactions = 20000

    @Option(help: "Unmeasured transactions first (connections open, statements prepared, caches warm).")
    var warmup = 1000

    @Option(help: "attach (the five-statement serializable transaction) or select1 (the floor).")
    var workload: Workload = .attach

    @Flag(help: "Instead of a load: client RSS before and after opening 1, then --connections, connections.")
    var memory = false

    func validate() throws {
        guard connections >= 1, concurrency >= 1, transactions >= 1, warmup >= 0 else {
            throw ValidationError("--connections, --concurrency and --transactions must be at least 1")
        }
        guard concurrency <= Schema.accounts else {
            throw ValidationError("--concurrency: at most \(Schema.accounts) (one account of its own per caller)")
        }
    }

    func run() async throws {
        let target = try DatabaseURL(url)
        if memory {
            print(try await driver.memory(target, connections: connections).line(driver))
            return
        }
        try LibPQConnection(target).createSchema()
        let result = try await driver.load(target, connections: connections) { session in
            try await Load.run(
                workload: workload, session: session, concurrency: concurrency,
                warmup: warmup, transactions: transactions)
        }
        print(result.line(driver: driver, workload: workload, connections: connections, concurrency: concurrency))
    }
}

/// The two drivers under test.
enum DriverName: String, ExpressibleByArgument, CaseIterable {
    case libpq
    case postgresNIO = "postgres-nio"

    /// Opens a pool of `connections`, runs `body` with it and closes it.
    func load(
        _ target: DatabaseURL, connections: Int, _ body: (any Session) async throws -> Load.Result
    ) async throws -> Load.Result {
        switch self {
        case .libpq: return try await LibPQSession.with(target, connections: connections, body)
        case .postgresNIO: return try await NIOSession.with(target, connections: connections, body)
        }
    }

    /// Client RSS around opening connections one by one (each runs one `SELECT 1`).
    func memory(_ target: DatabaseURL, connections: Int) async throws -> MemoryResult {
        switch self {
        case .libpq: return try LibPQSession.memory(target, connections: connections)
        case .postgresNIO: return try await NIOSession.memory(target, connections: connections)
        }
    }
}

/// What one measured call does.
enum Workload: String, ExpressibleByArgument {
    /// BEGIN SERIALIZABLE; lock the account; read the gallery; update the account; COMMIT.
    case attach
    /// One prepared `SELECT 1`: the driver's and the server's round-trip floor.
    case select1
}

/// A driver's pool, as the load sees it: both calls are made from async tasks.
protocol Session: Sendable {
    /// The attach transaction, retried on a serialization failure; returns the retries.
    func attach(account: Int64, gallery: Int64) async throws -> Int
    /// One prepared `SELECT 1`.
    func selectOne() async throws
}

/// The benchmark schema: the two tables an attach touches, seeded once.
enum Schema {
    static let accounts: Int64 = 10000
    static let galleries: Int64 = 10000
    static let create = """
        CREATE TABLE IF NOT EXISTS lab_accounts (
            id BIGINT PRIMARY KEY, name TEXT NOT NULL, attached_gallery BIGINT);
        CREATE TABLE IF NOT EXISTS galleries (
            id BIGINT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL);
        INSERT INTO lab_accounts SELECT i, 'lab-' || i, NULL FROM generate_series(1, \(accounts)) i
            ON CONFLICT DO NOTHING;
        INSERT INTO galleries SELECT i, 'gallery-' || i, 'owner-' || i FROM generate_series(1, \(galleries)) i
            ON CONFLICT DO NOTHING;
        ANALYZE lab_accounts; ANALYZE galleries;
        """
    static let begin = "BEGIN ISOLATION LEVEL SERIALIZABLE"
    static let lockAccount = "SELECT id, attached_gallery FROM lab_accounts WHERE id = $1 FOR UPDATE"
    static let readGallery = "SELECT id, name FROM galleries WHERE id = $1"
    static let attach = "UPDATE lab_accounts SET attached_gallery = $2 WHERE id = $1"
    static let commit = "COMMIT"
    static let selectOne = "SELECT 1"
    /// SQLSTATEs after which the transaction is retried (serialization failure, deadlock).
    static let retryable: Set<String> = ["40001", "40P01"]
}

/// `postgresql://USER@HOST:PORT/DB`, optionally `?host=/dir` for a unix socket in `/dir`.
struct DatabaseURL: Sendable {
    var user: String
    var host: String
    var port: Int
    var database: String
    /// The directory of the server's unix socket, when connecting through one.
    var socketDirectory: String?

    init(_ text: String) throws {
        guard let parts = URLComponents(string: text), parts.scheme == "postgresql" || parts.scheme == "postgres",
            let user = parts.user
        else { throw ValidationError("--url: expected postgresql://USER@HOST:PORT/DB, got \(text)") }
        self.user = user
        host = parts.host ?? "127.0.0.1"
        port = parts.port ?? 5432
        database = String(parts.path.dropFirst())
        if database.isEmpty { database = user }
        socketDirectory = parts.queryItems?.first { $0.name == "host" }?.value
    }

    /// The libpq keyword/value form.
    var conninfo: String {
        "host=\(socketDirectory ?? host) port=\(port) user=\(user) dbname=\(database) sslmode=disable"
    }
}

/// Client RSS around opening connections.
struct MemoryResult {
    var connections: Int
    var before: Int
    var afterFirst: Int
    var afterAll: Int

    func line(_ driver: DriverName) -> String {
        let further = connections > 1 ? (afterAll - afterFirst) / (connections - 1) : 0
        return "memory driver=\(driver.rawValue) connections=\(connections) rss_before_kib=\(before) "
            + "first_connection_kib=\(afterFirst - before) per_further_connection_kib=\(further) "
            + "rss_after_kib=\(afterAll)"
    }

    /// This process's resident set size in KiB (VmRSS).
    static func rssKiB() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return 0 }
        return Int(line.split(separator: " ")[1]) ?? 0
    }
}
