import Foundation
import LabGalleryCore

/// ``Storage`` on PostgreSQL (libpq), for several server instances sharing one database.
///
/// `write` is `SERIALIZABLE` and runs the whole body again on a serialization failure or
/// deadlock (40001, 40P01) or a unique violation (23505, a concurrent insert of the same id: the
/// use case's own check then answers ALREADY_EXISTS), so check-then-write use cases keep their
/// invariants across instances. `read` is a read-only `REPEATABLE READ` snapshot. Errors leave as
/// ``LabGalleryError``: a lost or refused connection, a full pool or lasting contention is
/// UNAVAILABLE naming the server (never SQL text, never a password).
public final class PostgresStorage: Storage {
    /// The connections.
    public let pool: PostgresPool
    /// Most runs of one write transaction (the first and its retries).
    public let maxAttempts: Int

    /// Connects to `url` (one connection, for the migrations; the pool opens the rest on
    /// demand) and brings the schema up to date under an advisory lock, so instances starting
    /// together create it once. UNAVAILABLE when the server cannot be reached. A transaction
    /// waits up to `poolWaitTimeout` seconds for one of the `poolSize` connections.
    public init(
        url: String, poolSize: Int = PostgresPool.defaultSize, poolWaitTimeout: TimeInterval = 10,
        maxAttempts: Int = 10
    ) throws(LabGalleryError) {
        do {
            pool = PostgresPool(target: try PostgresTarget(url), size: poolSize, waitTimeout: poolWaitTimeout)
        } catch {
            throw Self.domainError(error)
        }
        self.maxAttempts = maxAttempts
        do {
            try pool.withConnection { c in try PostgresMigrations.migrate(c) }
        } catch let e as PostgresError {
            throw Self.domainError(e)
        } catch {
            throw LabGalleryError.internal(message: "database migration failed: \(error)")
        }
    }

    /// Runs `body` in a read-only repeatable-read transaction (one snapshot).
    public func read<T>(_ body: (any StorageTransaction) throws -> T) throws -> T {
        do {
            return try transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", body)
        } catch let e as PostgresError {
            throw Self.domainError(e)
        }
    }

    /// Runs `body` in a serializable transaction, again (after a short jittered pause) while it
    /// fails on a serialization conflict, at most ``maxAttempts`` times.
    public func write<T>(_ body: (any StorageTransaction) throws -> T) throws -> T {
        var attempt = 1
        while true {
            do {
                return try transaction("BEGIN ISOLATION LEVEL SERIALIZABLE", body)
            } catch let e as PostgresError where (e.isRetryable || e.sqlState == "23505") && attempt < maxAttempts {
                // 1–4 ms, doubling per attempt up to ~64 ms, jittered so rivals do not meet again.
                let ceiling = min(64_000, 1_000 << min(attempt, 6))
                usleep(UInt32.random(in: UInt32(ceiling / 4)...UInt32(ceiling)))
                attempt += 1
            } catch let e as PostgresError {
                throw Self.domainError(e)
            }
        }
    }

    /// Closes the idle connections (connections in use close when their transaction ends).
    public func close() throws { pool.close() }

    /// One transaction on one pooled connection: a connection found dead at `BEGIN` (the server
    /// restarted since it was last used) is dropped for a fresh one, since nothing ran yet.
    private func transaction<T>(_ begin: String, _ body: (any StorageTransaction) throws -> T) throws -> T {
        var connection = try pool.checkOut()
        var stale = 0
        while true {
            do {
                try connection.run(begin)
                break
            } catch  where error.kind == .connection && stale < pool.size {
                pool.discard(connection)
                stale += 1
                connection = try pool.checkOut()
            } catch {
                pool.checkIn(connection)
                throw error
            }
        }
        defer { pool.checkIn(connection) }
        do {
            let value = try body(PostgresTransaction(c: connection))
            try connection.run("COMMIT")
            return value
        } catch {
            if !connection.isBroken { try? connection.run("ROLLBACK") }
            throw error
        }
    }

    /// The domain's view of a PostgreSQL failure.
    static func domainError(_ e: PostgresError) -> LabGalleryError {
        e.labGalleryError
    }
}

extension PostgresError: LabGalleryErrorConvertible {
    /// UNAVAILABLE for what a retry may cure (connection, pool, contention, resources),
    /// ALREADY_EXISTS for a unique violation, INTERNAL otherwise; never SQL text.
    public var labGalleryError: LabGalleryError {
        let reason = message.split(separator: "\n").first.map(String.init) ?? message
        switch kind {
        case .connection:
            return .unavailable(message: "database unavailable (\(target)): \(reason); retry")
        case .poolExhausted:
            return .unavailable(
                message:
                    "database unavailable (\(target)): \(reason); retry, or raise --database-pool-size")
        case .invalidURL:
            return .invalidArgument(field: "database", message: "--database: \(reason)")
        case .server:
            break
        }
        let state = sqlState ?? ""
        if isRetryable {
            return .unavailable(
                message: "database busy (\(target)): concurrent changes kept conflicting; retry shortly")
        }
        if state == "23505" {
            return .alreadyExists(
                resource: "", message: "a resource with this id was created concurrently; choose another id")
        }
        // 53: insufficient resources (disk full, too many connections); 57: operator intervention.
        if state.hasPrefix("53") || state.hasPrefix("57") {
            return .unavailable(message: "database unavailable (\(target)): \(reason) [\(state)]; retry")
        }
        return .internal(message: "database error (\(target)) [SQLSTATE \(state)]: \(reason)")
    }
}
