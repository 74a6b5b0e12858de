import Foundation

/// A bounded pool of ``PostgresConnection``s to one server.
///
/// Connections open on demand up to ``size``; a caller past it waits (blocking its thread, which
/// must be a blocking-executor thread) up to ``waitTimeout`` for one to come back, then gets an
/// UNAVAILABLE-kind ``PostgresError``. A connection found broken after use (the server restarted)
/// is closed rather than returned, so the next caller connects afresh.
public final class PostgresPool: @unchecked Sendable {
    // @unchecked: `idle` and `open` are only touched under `condition`'s lock; a connection is
    // used by one thread at a time (between `checkOut` and `checkIn`).

    /// The default ``size``.
    public static let defaultSize = 8

    /// The server.
    public let target: PostgresTarget
    /// Most connections open at once.
    public let size: Int
    /// Seconds a caller waits for a free connection before giving up.
    public let waitTimeout: TimeInterval
    private let condition = NSCondition()
    private var idle: [PostgresConnection] = []
    private var open = 0
    private var closed = false

    /// A pool of at most `size` connections to `target`; nothing connects until first use.
    public init(target: PostgresTarget, size: Int = PostgresPool.defaultSize, waitTimeout: TimeInterval = 10) {
        precondition(size >= 1, "a connection pool needs at least one connection")
        self.target = target
        self.size = size
        self.waitTimeout = waitTimeout
    }

    /// Runs `body` with a connection of the pool (blocking until one is free).
    public func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let connection = try checkOut()
        defer { checkIn(connection) }
        return try body(connection)
    }

    /// Takes an idle connection, or opens one while under ``size``, or waits.
    func checkOut() throws(PostgresError) -> PostgresConnection {
        let deadline = Date(timeIntervalSinceNow: waitTimeout)
        condition.lock()
        while true {
            if closed {
                condition.unlock()
                throw PostgresError(kind: .connection, target: target.display, message: "the pool is closed")
            }
            if let connection = idle.popLast() {
                condition.unlock()
                return connection
            }
            if open < size {
                open += 1
                condition.unlock()
                do {
                    return try PostgresConnection(target)
                } catch {
                    condition.lock()
                    open -= 1
                    condition.signal()
                    condition.unlock()
                    throw error
                }
            }
            if !condition.wait(until: deadline) {
                condition.unlock()
                throw PostgresError(
                    kind: .poolExhausted, target: target.display,
                    message: "all \(size) database connections stayed busy for \(String(format: "%g", waitTimeout)) s")
            }
        }
    }

    /// Returns a connection; a broken one is closed instead (its slot frees for a new one).
    func checkIn(_ connection: PostgresConnection) {
        let broken = connection.isBroken
        condition.lock()
        if broken || closed { open -= 1 } else { idle.append(connection) }
        condition.signal()
        condition.unlock()
    }

    /// Drops `connection` (e.g. found dead at `BEGIN`) instead of returning it.
    func discard(_ connection: PostgresConnection) {
        condition.lock()
        open -= 1
        condition.signal()
        condition.unlock()
    }

    /// Closes the idle connections; connections in use close when returned.
    public func close() {
        condition.lock()
        closed = true
        open -= idle.count
        idle.removeAll()
        condition.broadcast()
        condition.unlock()
    }
}
