import CLibPQ
import Foundation

/// One libpq connection (`PGconn`): text parameters, prepared statements cached by SQL text,
/// results copied into Swift values and `PQclear`ed at once.
///
/// Blocking: use it only from a thread made for blocking work (``PostgresPool`` hands it to one
/// such thread at a time), never from Swift's cooperative pool.
public final class PostgresConnection {
    private let conn: OpaquePointer
    /// The server, for messages (never the password).
    public let target: PostgresTarget
    /// SQL text → prepared statement name.
    private var prepared: [String: String] = [:]

    /// Connects to `target` (any URL or key=value string libpq accepts); UNAVAILABLE-kind
    /// ``PostgresError`` when the server cannot be reached.
    public init(_ target: PostgresTarget) throws(PostgresError) {
        self.target = target
        guard let conn = PQconnectdb(target.conninfo) else {
            throw PostgresError(kind: .connection, target: target.display, message: "out of memory")
        }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = Self.text(PQerrorMessage(conn))
            PQfinish(conn)
            throw PostgresError(kind: .connection, target: target.display, message: message)
        }
        // Notices ("relation already exists, skipping") would go to stderr: the server logs instead.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        self.conn = conn
    }

    deinit { PQfinish(conn) }

    /// Whether the connection is gone (server restarted, socket closed): the pool drops it.
    public var isBroken: Bool { PQstatus(conn) != CONNECTION_OK }

    /// The connection's socket, to poll(2) for notifications.
    public var socket: Int32 { PQsocket(conn) }

    /// Payloads of the notifications received so far on the channels this connection LISTENs
    /// to (reads what the socket has without blocking).
    public func notifications() throws(PostgresError) -> [String] {
        guard PQconsumeInput(conn) == 1 else {
            throw PostgresError(kind: .connection, target: target.display, message: Self.text(PQerrorMessage(conn)))
        }
        var payloads: [String] = []
        while let notify = PQnotifies(conn) {
            payloads.append(String(cString: notify.pointee.extra))
            PQfreemem(notify)
        }
        return payloads
    }

    /// Runs one or more statements without parameters (transaction control, migrations).
    public func run(_ sql: String) throws(PostgresError) {
        _ = try check(PQexec(conn, sql))
    }

    /// Runs `sql` (placeholders `$1…`) with text parameters (`nil` is NULL) as a prepared
    /// statement, preparing it on first use on this connection.
    @discardableResult
    public func query(_ sql: String, _ parameters: [PostgresValue?] = []) throws(PostgresError) -> PostgresRows {
        let name: String
        if let known = prepared[sql] {
            name = known
        } else {
            name = "lg\(prepared.count)"
            _ = try check(PQprepare(conn, name, sql, Int32(parameters.count), nil))
            prepared[sql] = name
        }
        let texts = parameters.map { $0?.text }
        let result = withCStrings(texts) { pointers in
            PQexecPrepared(conn, name, Int32(pointers.count), pointers, nil, nil, 0)
        }
        return try check(result)
    }

    /// Copies the rows out of `result` and clears it; throws the server's error (with its SQLSTATE)
    /// or a connection error.
    private func check(_ result: OpaquePointer?) throws(PostgresError) -> PostgresRows {
        guard let result else {
            throw PostgresError(
                kind: isBroken ? .connection : .server, target: target.display,
                message: Self.text(PQerrorMessage(conn)))
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return PostgresRows(result)
        default:
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let primary = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
            let message = primary ?? Self.text(PQresultErrorMessage(result))
            // A result without SQLSTATE on a dead socket is libpq's own "server closed the connection".
            if isBroken || state == nil || state!.hasPrefix("08") || state == "57P01" || state == "57P02"
                || state == "57P03"
            {
                throw PostgresError(kind: .connection, target: target.display, message: message, sqlState: state)
            }
            throw PostgresError(kind: .server, target: target.display, message: message, sqlState: state)
        }
    }

    private static func text(_ p: UnsafePointer<CChar>?) -> String {
        guard let p else { return "unknown error" }
        return String(cString: p).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Calls `body` with C strings of `strings` (NULL for `nil`) that live for the call.
private func withCStrings<R>(
    _ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R
) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } }
    defer { for p in copies { free(p) } }
    return body(copies.map { $0.map { UnsafePointer($0) } })
}

/// A parameter sent in text form.
public enum PostgresValue: Sendable, Hashable {
    /// Text.
    case string(String)
    /// An integer.
    case int(Int64)
    /// A boolean.
    case bool(Bool)
    /// A float (e.g. epoch seconds).
    case double(Double)

    var text: String {
        switch self {
        case .string(let s): s
        case .int(let i): String(i)
        case .bool(let b): b ? "t" : "f"
        case .double(let d): String(d)
        }
    }
}

/// A result's rows, copied out of libpq (so the `PGresult` is cleared at once).
public struct PostgresRows: Sendable {
    /// Rows of text values (`nil` is NULL).
    public let rows: [[String?]]
    /// Rows a command affected (`PQcmdTuples`), 0 when it reports none.
    public let affected: Int

    init(_ result: OpaquePointer) {
        let n = PQntuples(result)
        let fields = PQnfields(result)
        rows = (0..<n).map { r in
            (0..<fields).map { f in
                PQgetisnull(result, r, f) != 0 ? nil : String(cString: PQgetvalue(result, r, f))
            }
        }
        affected = Int(String(cString: PQcmdTuples(result))) ?? 0
    }
}

/// Where the database is: the conninfo libpq gets, and a display form without the password.
public struct PostgresTarget: Sendable, Hashable, CustomStringConvertible {
    /// What libpq connects with (may hold a password: never log it).
    public let conninfo: String
    /// `postgresql://HOST:PORT/DB` (or `postgresql:///DB?host=SOCKETDIR`), never a password.
    public let display: String

    /// Parses `url` (`postgresql://…` or `key=value …`, anything libpq accepts); INVALID when
    /// libpq cannot parse it (its message never repeats the URL).
    public init(_ url: String) throws(PostgresError) {
        var err: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &err) else {
            let message = err.map { String(cString: $0).trimmingCharacters(in: .whitespacesAndNewlines) }
            if let err { PQfreemem(err) }
            throw PostgresError(
                kind: .invalidURL, target: "the --database URL", message: message ?? "cannot parse the URL")
        }
        defer { PQconninfoFree(options) }
        var values: [String: String] = [:]
        var p = options
        while let keyword = p.pointee.keyword {
            if let val = p.pointee.val { values[String(cString: keyword)] = String(cString: val) }
            p += 1
        }
        conninfo = url
        let host = values["host"] ?? values["hostaddr"] ?? ""
        let db = values["dbname"] ?? values["user"] ?? ""
        if host.isEmpty || host.hasPrefix("/") {
            display = "postgresql:///\(db)" + (host.isEmpty ? "" : "?host=\(host)")
        } else {
            display = "postgresql://\(host):\(values["port"] ?? "5432")/\(db)"
        }
    }

    /// The display form.
    public var description: String { display }
}

/// A PostgreSQL failure: the server's error (with SQLSTATE), a lost or refused connection, an
/// exhausted pool, or an unparsable URL. Messages never hold SQL text or a password.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, broadly.
    public enum Kind: Sendable {
        /// The server cannot be reached or the connection broke (retrying later may work).
        case connection
        /// Every pooled connection stayed busy past the wait time-out.
        case poolExhausted
        /// The server refused a statement (``PostgresError/sqlState`` says why).
        case server
        /// libpq cannot parse the URL.
        case invalidURL
    }
    /// The kind.
    public var kind: Kind
    /// The server, in display form.
    public var target: String
    /// libpq's or the server's primary message.
    public var message: String
    /// The SQLSTATE, when the server sent one.
    public var sqlState: String?

    /// Creates an error.
    public init(kind: Kind, target: String, message: String, sqlState: String? = nil) {
        self.kind = kind
        self.target = target
        self.message = message
        self.sqlState = sqlState
    }

    /// A serialization failure or deadlock: the whole transaction may be retried.
    public var isRetryable: Bool { sqlState == "40001" || sqlState == "40P01" }

    /// `<target>: <message> [SQLSTATE]`.
    public var description: String { "\(target): \(message)" + (sqlState.map { " [\($0)]" } ?? "") }
}
