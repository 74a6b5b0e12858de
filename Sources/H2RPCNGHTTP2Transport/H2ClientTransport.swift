import Blocking
import CH2Shim
import H2RPC
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The HTTP/2 client transport on libnghttp2: one connection to one server, shared by
/// concurrent calls, re-established on the next call after it drops. Cleartext h2c, or h2 over
/// TLS (ALPN h2, the server's certificate and name verified).
///
/// Finding the server: the name is resolved on a ``BlockingExecutor`` thread of its own (never
/// the cooperative pool or the event loop, and never queued behind file I/O), and every
/// address it returns is tried in order (IPv6 and IPv4 as the resolver orders them;
/// `localhost` is always both loopbacks), moving on after a refusal or `connectTimeout`; over
/// TLS the handshake runs on the address that accepted. A dead connection (keepalive PING
/// unanswered) ends its calls with UNAVAILABLE; the next call reconnects.
public final class H2ClientTransport: ClientTransport {
    /// Where the server is.
    enum Target: Sendable {
        case tcp(host: String, port: UInt16)
        case unix(path: String)
    }

    private let loop: H2Loop
    private let target: Target
    private let authority: String
    /// The server as messages name it: `host:port` or `unix:/path`.
    private let peerName: String
    private let side: ClientSide
    private let tls: H2TLSClientContext?
    private let serverName: String

    /// Creates a transport to `host:port`; connects lazily, on the first call. A `host` of the
    /// form `unix:/path` is a Unix domain socket (`port` is then unused). With `tls` the
    /// connection is TLS (its files are read here: create it off the cooperative pool), and a
    /// certificate or handshake failure ends calls with UNAVAILABLE saying why.
    public init(
        host: String, port: Int, configuration: H2Configuration = H2Configuration(),
        tls: H2TLSClientConfiguration? = nil
    ) throws {
        if host.hasPrefix("unix:") {
            let path = String(host.dropFirst(5))
            guard !path.isEmpty else { throw RPCError(.invalidArgument, "unix: needs a socket path (unix:/path)") }
            target = .unix(path: path)
            authority = "localhost"  // what grpc sends for unix: targets
            peerName = host
        } else {
            guard let p = UInt16(exactly: port) else {
                throw RPCError(.invalidArgument, "port \(port) is out of range 0-65535")
            }
            target = .tcp(host: host, port: p)
            authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            peerName = authority
        }
        self.tls = try tls.map { try H2TLSClientContext($0) }
        self.serverName = tls?.serverNameOverride ?? (host.hasPrefix("unix:") ? "localhost" : host)
        self.loop = try H2Loop(config: configuration)
        self.side = ClientSide(maxReceive: configuration.maxReceiveMessageSize, log: configuration.connectionLog)
        loop.setDelegate(side)
        try loop.start()
    }

    /// The current connection, or a new pending one whose addresses are being resolved.
    private func connection() -> h2_id {
        side.connection.withLock { conn in
            if conn != 0 { return conn }
            conn =
                if let tls { h2_connect_pending_tls(loop.raw, tls.raw, serverName) } else {
                    h2_connect_pending(loop.raw)
                }
            if conn != 0 { resolve(conn) }
            return conn
        }
    }

    /// Threads for name resolution (getaddrinfo blocks on DNS), apart from the shared pool so a
    /// reconnect never waits behind long file work.
    private static let resolver = BlockingExecutor(maxThreads: 4, name: "h2-resolve")

    /// Resolves the target on a blocking thread and hands the addresses to the loop.
    private func resolve(_ conn: h2_id) {
        let (loop, target, side) = (self.loop, self.target, self.side)
        Task(executorPreference: Self.resolver) {
            var err: Int32 = 0
            let addrs: OpaquePointer?
            switch target {
            case .tcp(let host, let port):
                addrs = h2_resolve(host, port, &err)
                if addrs == nil {
                    side.recordFailure(
                        conn,
                        err == ENOENT
                            ? "the name \(host) does not resolve"
                            : "cannot resolve \(host): \(String(cString: strerror(err)))")
                }
            case .unix(let path):
                addrs = h2_addrs_unix(path, &err)
            }
            h2_connect_addrs(loop.raw, conn, addrs, err)
        }
    }

    /// Opens an HTTP/2 stream for the call (connecting first if needed); UNAVAILABLE if the
    /// server cannot be reached.
    public func openStream(_ head: ClientRequestHead, events: ClientCallEvents) -> any ClientStreamOutbound {
        var block = HeaderBlock(capacity: 256)
        block.add(":method", "POST")
        block.add(":scheme", tls == nil ? "http" : "https")
        block.add(":path", head.method.path)
        block.add(":authority", authority)
        block.add("content-type", "application/grpc")
        block.add("te", "trailers")
        block.add("user-agent", "h2rpc-swift/1.0")
        if let timeout = head.timeout { block.add("grpc-timeout", GRPCTimeout.format(timeout)) }
        if let compression = head.compression { block.add("grpc-encoding", compression.name) }
        block.add("grpc-accept-encoding", acceptEncodingValue)
        block.add(metadata: head.metadata)
        let conn = connection()
        if conn == 0 {
            events.receiveUnprocessed(Status(code: .unavailable, message: "could not connect to \(peerName)"))
            return H2ClientOutbound(handle: nil, credit: DrainCredit())
        }
        let user = H2ClientStreamUser(
            events: events, loop: loop, maxReceive: side.maxReceive, authority: peerName, conn: conn, side: side)
        let retained = Unmanaged.passRetained(user as H2StreamUser).toOpaque()
        let id = block.withNV { nv, n in h2_open_stream(loop.raw, conn, retained, nv, n) }
        user.id.store(id, ordering: .releasing)
        let handle = H2StreamHandle(loop: loop, id: id)
        return H2ClientOutbound(handle: handle, credit: user.credit)
    }

    /// Closes the connection; open calls end with UNAVAILABLE. The next call reconnects.
    public func close() {
        let conn = side.connection.withLock { c -> h2_id in
            defer { c = 0 }
            return c
        }
        if conn != 0 { h2_conn_close(loop.raw, conn) }
    }

    deinit {
        loop.stop()
    }
}

private final class ClientSide: H2LoopDelegate, Sendable {
    let connection = Mutex<h2_id>(0)
    let maxReceive: Int
    let log: (@Sendable (String) -> Void)?
    /// The last connection that failed, and why (a name that does not resolve, a refused
    /// connect, a TLS handshake or TLS error): the calls it ends say so.
    private let lastFailure = Mutex<(conn: h2_id, message: String)?>(nil)
    /// The last connections that never got established (connect or TLS handshake failed): their
    /// streams never reached a server. A few, since old ones close while a new one connects.
    private let neverConnected = Mutex<[h2_id]>([])

    init(maxReceive: Int, log: (@Sendable (String) -> Void)?) {
        self.maxReceive = maxReceive
        self.log = log
    }

    func onLog(_ conn: h2_id, message: String) {
        recordFailure(conn, message)
        log?(message)
    }

    /// Notes why `conn` failed (before its streams are closed).
    func recordFailure(_ conn: h2_id, _ message: String) {
        lastFailure.withLock { $0 = (conn, message) }
    }

    /// Why `conn` failed, if known.
    func failure(of conn: h2_id) -> String? {
        lastFailure.withLock { $0?.conn == conn ? $0?.message : nil }
    }

    func onRequest(conn: h2_id, stream: h2_id, _ nv: UnsafePointer<h2_nv>?, _ count: Int, flags: Int32) -> H2StreamUser?
    {
        nil
    }

    /// Whether `conn` failed before it was established.
    func neverConnected(_ conn: h2_id) -> Bool { neverConnected.withLock { $0.contains(conn) } }

    func onConnection(_ conn: h2_id, event: Int32, detail: Int32) {
        if event == Int32(H2_CONN_FAILED) {
            if failure(of: conn) == nil { recordFailure(conn, String(cString: strerror(detail))) }
            neverConnected.withLock { ids in
                ids.append(conn)
                if ids.count > 8 { ids.removeFirst() }
            }
        }
        switch event {
        case Int32(H2_CONN_FAILED), Int32(H2_CONN_GOAWAY), Int32(H2_CONN_CLOSED):
            // The next call opens a fresh connection.
            connection.withLock { if $0 == conn { $0 = 0 } }
        default:
            break
        }
    }
}

/// Loop-thread state of one client stream.
private final class H2ClientStreamUser: H2StreamUser {
    let events: ClientCallEvents
    let maxReceive: Int
    let authority: String
    let conn: h2_id
    let side: ClientSide
    /// The stream token, stored right after `h2_open_stream` returns it.
    let id = Atomic<UInt64>(0)
    /// The response `grpc-encoding` (nil: identity). `@exclusivity(unchecked)`: only the loop
    /// thread touches it.
    @exclusivity(unchecked) var responseEncoding: String? = nil
    /// What compressed requests save on the call's back-pressure count.
    let credit = DrainCredit()

    init(events: ClientCallEvents, loop: H2Loop, maxReceive: Int, authority: String, conn: h2_id, side: ClientSide) {
        self.events = events
        self.maxReceive = maxReceive
        self.authority = authority
        self.conn = conn
        self.side = side
        super.init(loop: loop)
    }

    var handle: H2StreamHandle? {
        let v = id.load(ordering: .acquiring)
        return v == 0 ? nil : H2StreamHandle(loop: loop, id: v)
    }

    override func onHeaders(_ nv: UnsafePointer<h2_nv>?, _ count: Int, flags: Int32) {
        let parsed = parseStatus(nv, count)
        let ended = flags & Int32(H2_HEADERS_END_STREAM) != 0
        if flags & Int32(H2_HEADERS_TRAILERS) == 0 {
            if let http = parsed.httpStatus, http != 200 {
                let status =
                    parsed.status
                    ?? Status(code: statusForHTTP(http), message: "the server answered with HTTP status \(http)")
                events.receive(.status(status, parsed.trailers))
                if !ended { handle?.reset() }
                return
            }
            if ended {
                // Trailers-Only.
                events.receive(
                    .trailersOnly(
                        parsed.status ?? Status(code: .internal, message: "the response ended without grpc-status"),
                        parsed.trailers))
            } else {
                responseEncoding = parsed.encoding
                events.receive(.metadata(parsed.trailers))
            }
            return
        }
        events.receive(
            .status(
                parsed.status ?? Status(code: .internal, message: "the response trailers lack grpc-status"),
                parsed.trailers))
    }

    override func onMessage(compressed: Bool, _ data: UnsafeBufferPointer<UInt8>) -> Int {
        if compressed { return receiveCompressed(count: data.count) { CopiedBytes(data) } }
        events.receive(.message(MessageBytes(Array(data))))
        return 0
    }

    override func onMessage(compressed: Bool, _ message: H2MessageBuffer) -> Int {
        if compressed { return receiveCompressed(count: message.count) { message } }
        events.receive(.message(MessageBytes(buffer: message)))
        return 0
    }

    /// A message with the compressed flag: kept as it arrived (`wire`), inflated by the call
    /// when it is read (see `ClientCallEvents`).
    private func receiveCompressed(count: Int, _ wire: () -> any MessageBuffer) -> Int {
        guard let name = responseEncoding, let algorithm = CompressionAlgorithm(name: name) else {
            let why =
                responseEncoding.map { "the response's grpc-encoding '\($0)' is not supported" }
                ?? "the response declared no grpc-encoding"
            events.receive(
                .status(
                    Status(code: .internal, message: "a response message has the compressed flag set but \(why)"), [:]))
            handle?.reset()
            return count + 5
        }
        let message = H2CompressedMessage(
            wire(), algorithm: algorithm, transportLimit: maxReceive, what: "a response message")
        events.receive(.message(MessageBytes(buffer: message)))
        return 0
    }

    override func onStreamError(kind: Int32, detail: Int) {
        if kind == H2_STREAM_ERR_TOO_LARGE {
            events.receive(
                .status(
                    Status(
                        code: .resourceExhausted,
                        message:
                            "a response message of \(detail) bytes exceeds this client's limit of \(maxReceive) bytes"),
                    [:]))
        } else if kind == H2_STREAM_ERR_BUSY {
            events.receive(
                .status(
                    Status(
                        code: .resourceExhausted,
                        message:
                            "this client holds its limit of partially received messages (\(detail) bytes); retry shortly"
                    ),
                    [:]))
        } else {
            events.receive(.status(Status(code: .internal, message: "the response stream ended inside a message"), [:]))
        }
        handle?.reset()
    }

    override func onDrain(_ bytes: Int) { events.drained(credit.adjust(bytes)) }

    override func onEnd() {}

    override func onClose(code: UInt32) {
        let status: Status
        // Whether no server processed the stream: refused (RFC 9113 §8.7: REFUSED_STREAM means
        // unprocessed; the shim refuses streams it could not open), or its connection never came up.
        var unprocessed = code == 0x7 || code == UInt32(H2_CLOSE_REFUSED)
        switch code {
        case 0: status = Status(code: .internal, message: "the stream closed without a status")
        case UInt32(H2_CLOSE_REFUSED) where side.failure(of: conn) != nil:
            // Opened on a connection that had just failed (a fast refusal or TLS failure): say why.
            status = Status(
                code: .unavailable, message: "could not connect to \(authority): \(side.failure(of: conn)!)")
        case 0x7, UInt32(H2_CLOSE_REFUSED):
            status = Status(code: .unavailable, message: "\(authority) refused the stream; retry later")
        case 0x8: status = Status(code: .cancelled, message: "the stream was cancelled")
        case 0xb:
            status = Status(code: .resourceExhausted, message: "\(authority) asked to calm down (ENHANCE_YOUR_CALM)")
        case UInt32(H2_CLOSE_CONN_LOST):
            // The next call (a re-opened watch, say) must not pick the dead connection.
            side.connection.withLock { if $0 == conn { $0 = 0 } }
            unprocessed = side.neverConnected(conn)
            if let why = side.failure(of: conn) {
                status = Status(code: .unavailable, message: "could not connect to \(authority): \(why)")
            } else {
                status = Status(
                    code: .unavailable,
                    message: "the connection to \(authority) was lost (closed, reset, or no answer to a keepalive PING)"
                )
            }
        case UInt32(H2_CLOSE_SHUTDOWN):
            status = Status(code: .unavailable, message: "the client transport was shut down")
        case UInt32(H2_CLOSE_HEADERS_TOO_LARGE):
            status = Status(
                code: .resourceExhausted,
                message:
                    "the response from \(authority) has a header block over this client's limits (maxHeaderCount, maxHeaderListSize)"
            )
        default: status = Status(code: .internal, message: "the stream was reset with HTTP/2 error code \(code)")
        }
        if unprocessed { events.receiveUnprocessed(status) } else { events.receive(.status(status, [:])) }
    }
}

/// The outbound half of a client stream.
struct H2ClientOutbound: ClientStreamOutbound {
    let handle: H2StreamHandle?
    let credit: DrainCredit

    func write(_ part: RPCRequestPart) {
        switch part {
        case .message(let message):
            // Compressed here, on the sending task (never on the loop thread).
            if let packed = compressedForSending(message, credit: credit) {
                handle?.send(headers: nil, message: packed, trailers: nil, end: false, compressed: true)
            } else {
                handle?.send(message, end: false)
            }
        case .end: handle?.send(headers: nil, message: nil, trailers: nil, end: true)
        }
    }

    func encode<M: RPCMessage>(_ message: M) throws -> MessageBytes {
        guard let handle else { return MessageBytes(try message.serializedBytes()) }
        return try handle.encode(message)
    }

    func cancel() { handle?.reset() }

    /// Adds the 5-byte gRPC prefix the core does not know about.
    func consume(_ bytes: Int) { handle?.consume(bytes + 5) }
}
