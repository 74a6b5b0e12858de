import CLibPQBench
import Foundation

/// A failed libpq call: the server's SQLSTATE (when it sent one) and libpq's message.
struct PQError: Error, CustomStringConvertible {
    var sqlState: String?
    var message: String
    var description: String { "\(sqlState ?? "-----"): \(message)" }
}

/// One blocking libpq connection with the benchmark's statements prepared on it. Used by one
/// thread at a time (the pool hands it out).
final class LibPQConnection {
    private let conn: OpaquePointer

    /// Statement name → SQL, prepared on every connection.
    static let statements: [(String, String)] = [
        ("begin", Schema.begin), ("lock_account", Schema.lockAccount), ("read_gallery", Schema.readGallery),
        ("attach", Schema.attach), ("commit", Schema.commit), ("select1", Schema.selectOne),
    ]

    init(_ target: DatabaseURL) throws {
        guard let conn = PQconnectdb(target.conninfo) else { throw PQError(message: "PQconnectdb: out of memory") }
        self.conn = conn
        guard PQstatus(conn) == CONNECTION_OK else {
            defer { PQfinish(conn) }
            throw PQError(message: String(cString: PQerrorMessage(conn)))
        }
        // The server's notices (ROLLBACK after a failed COMMIT: "no transaction in progress")
        // would go to stderr; postgres-nio drops them too.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
    }

    deinit { PQfinish(conn) }

    /// Prepares every statement of ``statements``.
    func prepareAll() throws {
        for (name, sql) in Self.statements {
            try check(PQprepare(conn, name, sql, 0, nil), PGRES_COMMAND_OK)
        }
    }

    /// Creates and seeds the benchmark schema (simple-query protocol, several statements).
    func createSchema() throws {
        try check(PQexec(conn, Schema.create), PGRES_COMMAND_OK)
    }

    /// Runs prepared statement `name` with text parameters; returns the rows it returned.
    @discardableResult
    func exec(_ name: String, _ params: [String] = []) throws -> Int {
        let result = withTextParameters(params) { values in
            PQexecPrepared(conn, name, Int32(params.count), values, nil, nil, 0)
        }
        return try check(result, nil)
    }

    /// Runs `sql` without preparing it (ROLLBACK after a failure).
    func simple(_ sql: String) throws {
        try check(PQexec(conn, sql), PGRES_COMMAND_OK)
    }

    /// Clears `result`; throws unless its status is `expected` (or, when nil, a success).
    @discardableResult
    private func check(_ result: OpaquePointer?, _ expected: ExecStatusType?) throws -> Int {
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        let ok = expected.map { status == $0 } ?? (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        guard ok else {
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw PQError(sqlState: state, message: String(cString: PQerrorMessage(conn)))
        }
        return Int(PQntuples(result))
    }

    private func withTextParameters<T>(
        _ params: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> T
    ) -> T {
        let copies = params.map { strdup($0) }
        defer { for copy in copies { free(copy) } }
        let pointers = copies.map { UnsafePointer($0) }
        return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}

/// A bounded pool of libpq connections: a caller takes one or waits until one is returned.
final class LibPQPool: @unchecked Sendable {
    // @unchecked: `free` is only touched under `condition`'s lock.
    private let condition = NSCondition()
    private var free: [LibPQConnection]

    init(_ connections: [LibPQConnection]) { free = connections }

    /// Runs `body` with a connection of its own, waiting (blocking this thread) for one if needed.
    func withConnection<T>(_ body: (LibPQConnection) throws -> T) throws -> T {
        condition.lock()
        while free.isEmpty { condition.wait() }
        let connection = free.removeLast()
        condition.unlock()
        defer {
            condition.lock()
            free.append(connection)
            condition.signal()
            condition.unlock()
        }
        return try body(connection)
    }
}

/// A fixed set of threads made for blocking work, a `TaskExecutor` as the product's
/// `BlockingExecutor` (Sources/Blocking): ``run(_:)`` moves the calling task onto one of its
/// threads for the blocking body, so Swift's cooperative pool never blocks.
final class BlockingThreads: TaskExecutor, @unchecked Sendable {
    // @unchecked: `queue` is only touched under `condition`'s lock.
    private let condition = NSCondition()
    private var queue: [UnownedJob] = []

    init(count: Int) {
        for i in 0..<count {
            let thread = Thread { [self] in work() }
            thread.name = "blocking \(i)"
            thread.start()
        }
    }

    /// Runs `body` on one of the threads, in the calling task.
    func run<T>(_ body: () throws -> T) async throws -> T {
        try await withTaskExecutorPreference(self) { try body() }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        queue.append(unowned)
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while queue.isEmpty { condition.wait() }
            let job = queue.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// libpq as the product uses it: async callers hop to a blocking thread, take a pooled
/// connection and run the transaction's prepared statements synchronously.
struct LibPQSession: Session {
    let pool: LibPQPool
    let threads: BlockingThreads

    /// Opens `connections` connections with the statements prepared, runs `body`, closes them.
    /// The threads are as many as the product's default blocking pool (4 per core, at least 8).
    static func with(
        _ target: DatabaseURL, connections: Int, _ body: (any Session) async throws -> Load.Result
    ) async throws -> Load.Result {
        let opened = try (0..<connections).map { _ in
            let connection = try LibPQConnection(target)
            try connection.prepareAll()
            return connection
        }
        let threads = BlockingThreads(count: max(8, 4 * ProcessInfo.processInfo.activeProcessorCount))
        return try await body(LibPQSession(pool: LibPQPool(opened), threads: threads))
    }

    static func memory(_ target: DatabaseURL, connections: Int) throws -> MemoryResult {
        var opened: [LibPQConnection] = []
        func open() throws {
            let connection = try LibPQConnection(target)
            try connection.prepareAll()
            try connection.exec("select1")
            opened.append(connection)
        }
        let before = MemoryResult.rssKiB()
        try open()
        let afterFirst = MemoryResult.rssKiB()
        for _ in 1..<connections { try open() }
        return MemoryResult(
            connections: connections, before: before, afterFirst: afterFirst, afterAll: MemoryResult.rssKiB())
    }

    func attach(account: Int64, gallery: Int64) async throws -> Int {
        try await threads.run {
            try pool.withConnection { connection in
                var retries = 0
                while true {
                    do {
                        try connection.exec("begin")
                        try connection.exec("lock_account", [String(account)])
                        try connection.exec("read_gallery", [String(gallery)])
                        try connection.exec("attach", [String(account), String(gallery)])
                        try connection.exec("commit")
                        return retries
                    } catch let error as PQError where error.sqlState.map(Schema.retryable.contains) == true {
                        try connection.simple("ROLLBACK")
                        retries += 1
                    }
                }
            }
        }
    }

    func selectOne() async throws {
        _ = try await threads.run { try pool.withConnection { try $0.exec("select1") } }
    }
}
