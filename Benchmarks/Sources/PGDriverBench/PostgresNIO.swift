import PostgresNIO

/// postgres-nio as its users use it: `PostgresClient`'s pool with async/await, the statements
/// as `PostgresPreparedStatement`s (prepared once per connection, then executed by name).
struct NIOSession: Session {
    let client: PostgresClient
    /// Errors only: per-query debug logging costs nothing then, as with `PostgresClient`'s own default.
    private static let logger = {
        var logger = Logger(label: "pg-driver-bench")
        logger.logLevel = .error
        return logger
    }()

    /// Runs `client.run()` for `body`'s lifetime, with at most (and at least) `connections`.
    static func with(
        _ target: DatabaseURL, connections: Int, _ body: (any Session) async throws -> Load.Result
    ) async throws -> Load.Result {
        var configuration = clientConfiguration(target)
        configuration.options.minimumConnections = connections
        configuration.options.maximumConnections = connections
        configuration.options.keepAliveBehavior = nil
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Load.Result?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            let result = try await body(NIOSession(client: client))
            group.cancelAll()
            return result
        }
    }

    static func memory(_ target: DatabaseURL, connections: Int) async throws -> MemoryResult {
        let configuration = connectionConfiguration(target)
        var opened: [PostgresConnection] = []
        func open() async throws {
            let connection = try await PostgresConnection.connect(
                configuration: configuration, id: opened.count, logger: logger)
            for try await _ in try await connection.execute(SelectOne(), logger: logger) {}
            opened.append(connection)
        }
        let before = MemoryResult.rssKiB()
        try await open()
        let afterFirst = MemoryResult.rssKiB()
        for _ in 1..<connections { try await open() }
        let result = MemoryResult(
            connections: connections, before: before, afterFirst: afterFirst, afterAll: MemoryResult.rssKiB())
        for connection in opened { try await connection.close() }
        return result
    }

    /// Every statement's rows are drained, even BEGIN's none: 1.33.2's `execute` overload that
    /// returns the command tag (for `Row == ()`) hits a precondition failure here ("commandTag may
    /// only be called if all rows have been consumed").
    func attach(account: Int64, gallery: Int64) async throws -> Int {
        try await client.withConnection { connection in
            var retries = 0
            while true {
                do {
                    for try await _ in try await connection.execute(Begin(), logger: Self.logger) {}
                    for try await _ in try await connection.execute(LockAccount(id: account), logger: Self.logger) {}
                    for try await _ in try await connection.execute(ReadGallery(id: gallery), logger: Self.logger) {}
                    for try await _ in try await connection.execute(
                        Attach(account: account, gallery: gallery), logger: Self.logger)
                    {}
                    for try await _ in try await connection.execute(Commit(), logger: Self.logger) {}
                    return retries
                } catch let error as PSQLError where Self.retryable(error) {
                    try await connection.query("ROLLBACK", logger: Self.logger)
                    retries += 1
                }
            }
        }
    }

    private static func retryable(_ error: PSQLError) -> Bool {
        error.serverInfo?[.sqlState].map(Schema.retryable.contains) ?? false
    }

    func selectOne() async throws {
        for try await _ in try await client.execute(SelectOne()) {}
    }

    private static func clientConfiguration(_ target: DatabaseURL) -> PostgresClient.Configuration {
        if let directory = target.socketDirectory {
            return .init(
                unixSocketPath: "\(directory)/.s.PGSQL.\(target.port)", username: target.user, password: nil,
                database: target.database)
        }
        return .init(
            host: target.host, port: target.port, username: target.user, password: nil,
            database: target.database, tls: .disable)
    }

    private static func connectionConfiguration(_ target: DatabaseURL) -> PostgresConnection.Configuration {
        if let directory = target.socketDirectory {
            return .init(
                unixSocketPath: "\(directory)/.s.PGSQL.\(target.port)", username: target.user, password: nil,
                database: target.database)
        }
        return .init(
            host: target.host, port: target.port, username: target.user, password: nil,
            database: target.database, tls: .disable)
    }
}

/// A statement without parameters or rows (BEGIN, COMMIT).
protocol PlainStatement: PostgresPreparedStatement where Row == () {}

extension PlainStatement {
    func makeBindings() -> PostgresBindings { PostgresBindings() }
    func decodeRow(_ row: PostgresRow) throws {}
}

struct Begin: PlainStatement {
    static let sql = Schema.begin
}

struct Commit: PlainStatement {
    static let sql = Schema.commit
}

struct LockAccount: PostgresPreparedStatement {
    static let sql = Schema.lockAccount
    typealias Row = (Int64, Int64?)
    var id: Int64

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings()
        bindings.append(id)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

struct ReadGallery: PostgresPreparedStatement {
    static let sql = Schema.readGallery
    typealias Row = (Int64, String)
    var id: Int64

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings()
        bindings.append(id)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

struct Attach: PostgresPreparedStatement {
    static let sql = Schema.attach
    typealias Row = ()
    var account: Int64
    var gallery: Int64

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings()
        bindings.append(account)
        bindings.append(gallery)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws {}
}

struct SelectOne: PostgresPreparedStatement {
    static let sql = Schema.selectOne
    typealias Row = Int32

    func makeBindings() -> PostgresBindings { PostgresBindings() }
    func decodeRow(_ row: PostgresRow) throws -> Int32 { try row.decode(Int32.self) }
}
