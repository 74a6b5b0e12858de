import CH2Shim
import H2RPC
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The HTTP/2 server transport on libnghttp2: h2c (prior knowledge), or h2 over TLS.
///
/// Each shim event loop is one thread that owns its connections; with several loops they
/// share the port (SO_REUSEPORT) and the kernel spreads connections across them. Request
/// events reach the dispatcher on the loop thread; handlers run as Swift tasks, on that
/// loop's thread when `runHandlersOnEventLoop` is set, and responses are posted back.
public final class H2ServerTransport: ServerTransport {
    private let loops: [H2Loop]
    private let executors: [H2LoopExecutor?]
    private let host: String
    private let requestedPort: UInt16
    private let port = Atomic<UInt16>(0)
    private let sides: Mutex<[ServerSide]> = Mutex([])
    private let configuration: H2Configuration
    private let tls: H2TLSServerContext?
    /// Listen on this Unix domain socket instead of `host:port`.
    private let unixPath: String?

    /// Creates a transport that will listen on the Unix domain socket `path` (cleartext; a socket
    /// file left there by an earlier server is replaced). Its first event loop accepts every
    /// connection.
    public convenience init(unixPath path: String, configuration: H2Configuration = H2Configuration()) throws {
        try self.init(host: "", port: 0, unixPath: path, configuration: configuration, tls: nil)
    }

    /// Creates a transport that will listen on `host:port` (port 0 picks a free port; `::`
    /// listens on IPv6 and IPv4 both): cleartext h2c, or TLS with `tls` (ALPN h2 required; a
    /// connection without it is closed and logged).
    public convenience init(
        host: String = "127.0.0.1", port: UInt16, configuration: H2Configuration = H2Configuration(),
        tls: H2TLSServerContext? = nil
    ) throws {
        try self.init(host: host, port: port, unixPath: nil, configuration: configuration, tls: tls)
    }

    private init(
        host: String, port: UInt16, unixPath: String?, configuration: H2Configuration, tls: H2TLSServerContext?
    ) throws {
        let count = max(1, configuration.eventLoops)
        var loops: [H2Loop] = []
        for _ in 0..<count { loops.append(try H2Loop(config: configuration, reusePort: count > 1, loops: count)) }
        for loop in loops.dropFirst() { loop.shareLimits(with: loops[0]) }  // one connection cap for the port
        self.loops = loops
        self.executors = loops.map { configuration.runHandlersOnEventLoop ? H2LoopExecutor(loop: $0) : nil }
        self.host = host
        self.requestedPort = port
        self.unixPath = unixPath
        self.configuration = configuration
        self.tls = tls
    }

    /// The port actually bound (after `start`).
    public var boundPort: Int { Int(port.load(ordering: .relaxed)) }

    /// Listens on every event loop and starts them.
    public func start(acceptor: any ServerCallAcceptor) throws {
        var listenPort = requestedPort
        for (loop, executor) in zip(loops, executors) {
            let side = ServerSide(
                loop: loop, executor: executor, acceptor: loops.count > 1 ? acceptor.makeThreadAcceptor() : acceptor,
                maxReceive: configuration.maxReceiveMessageSize, log: configuration.connectionLog)
            sides.withLock { $0.append(side) }
            loop.setDelegate(side)
            var bound: UInt16 = 0
            if let unixPath {
                if loop === loops[0] {
                    let rc = h2_listen_unix(loop.raw, unixPath)
                    if rc != 0 {
                        stop()
                        throw RPCError(
                            .unavailable, "could not listen on unix:\(unixPath): \(String(cString: strerror(-rc)))")
                    }
                }
                try loop.start()
                continue
            }
            let rc =
                if let tls { h2_listen_tls(loop.raw, host, listenPort, tls.raw, &bound) } else {
                    h2_listen(loop.raw, host, listenPort, &bound)
                }
            if rc != 0 {
                stop()
                throw RPCError(
                    .unavailable, "could not listen on \(host):\(listenPort): \(String(cString: strerror(-rc)))")
            }
            // Port 0 resolves once; the other loops join the port the first one got.
            listenPort = bound
            port.store(bound, ordering: .relaxed)
            try loop.start()
        }
    }

    /// Sends GOAWAY on every connection: no new streams, open ones continue.
    public func beginGracefulShutdown() {
        for loop in loops { h2_loop_goaway(loop.raw) }
    }

    /// Stops the event loops, closing every connection (open streams are cancelled).
    public func stop() {
        for loop in loops { loop.stop() }
    }

    /// Connection and stream counters of the event loops (for tests and diagnostics).
    public var statistics: (connections: Int, streams: Int, inboundBuffered: Int, outboundBuffered: Int) {
        var total = (0, 0, 0, 0)
        for loop in loops {
            let s = loop.stats()
            total.0 += Int(s.connections)
            total.1 += Int(s.streams)
            total.2 += Int(s.inbound_buffered)
            total.3 += Int(s.outbound_buffered)
        }
        return total
    }
}

/// Loop-thread side of the server transport: turns shim events into calls.
private final class ServerSide: H2LoopDelegate, Sendable {
    let loop: H2Loop
    let executor: H2LoopExecutor?
    let acceptor: any ServerCallAcceptor
    let maxReceive: Int
    private let strings = RequestStrings()

    let log: (@Sendable (String) -> Void)?

    init(
        loop: H2Loop, executor: H2LoopExecutor?, acceptor: any ServerCallAcceptor, maxReceive: Int,
        log: (@Sendable (String) -> Void)?
    ) {
        self.loop = loop
        self.executor = executor
        self.acceptor = acceptor
        self.maxReceive = maxReceive
        self.log = log
    }

    func onConnection(_ conn: h2_id, event: Int32, detail: Int32) {}

    func onLog(_ conn: h2_id, message: String) {
        if let log {
            log(message)
        } else {
            let line = "h2 transport: \(message)\n"
            _ = line.withCString { write(2, $0, strlen($0)) }  // standard error, unbuffered
        }
    }

    func onRequest(conn: h2_id, stream: h2_id, _ nv: UnsafePointer<h2_nv>?, _ count: Int, flags: Int32) -> H2StreamUser?
    {
        let handle = H2StreamHandle(loop: loop, id: stream)
        var path = ""
        var isPost = false
        var contentTypeOK = false
        var contentType = ""
        var hasTE = false
        var timeout = RequestHead.Timeout.none
        var encoding: String? = nil
        var accepted: [CompressionAlgorithm] = []
        var metadata = Metadata()
        forEachHeader(nv, count) { h in
            guard let first = h.name.first else { return }
            if first == UInt8(ascii: ":") {
                if h.nameIs(":path") {
                    path = strings.string(h.value)
                } else if h.nameIs(":method") {
                    isPost = h.valueIs("POST")
                }
                return
            }
            switch h.name.count {
            case 2 where h.nameIs("te"):
                hasTE = h.valueIs("trailers")
            case 12 where h.nameIs("content-type"):
                contentTypeOK = isGRPCContentType(h.value)
                if !contentTypeOK { contentType = h.valueString }
            case 12 where h.nameIs("grpc-timeout"):
                timeout = GRPCTimeout.parse(h.value).map { .valid($0) } ?? .malformed(h.valueString)
            case 13 where h.nameIs("grpc-encoding"):
                if !h.valueIs("identity") { encoding = h.valueString }
            case 20 where h.nameIs("grpc-accept-encoding"):
                accepted = parseAcceptEncoding(h.value)
            default:
                if h.nameIsReserved { return }
                let key = strings.string(h.name)
                if h.nameIsBinary {
                    if let entry = Metadata.wireEntry(key: key, value: h.value) { metadata.append(entry) }
                } else {
                    metadata.append(Metadata.Entry(key: key, value: .string(strings.string(h.value))))
                }
            }
        }
        let user = H2ServerStreamUser(
            handle: handle, maxReceive: maxReceive, encoding: encoding.flatMap { CompressionAlgorithm(name: $0) })
        let outbound = H2ServerOutbound(handle: handle, credit: user.credit)
        if !isPost || !contentTypeOK {
            // Not a gRPC request: answer at the HTTP level.
            var block = HeaderBlock()
            if !isPost {
                block.add(":status", "405")
            } else {
                block.add(":status", "415")
                block.add("content-type", "application/grpc")
                block.add("grpc-status", "3")
                block.add(
                    "grpc-message",
                    PercentEncoding.encode(
                        "invalid gRPC request content-type '\(contentType)': expected application/grpc"))
            }
            handle.send(headers: block, message: nil, trailers: nil, end: true)
            return user
        }
        var head = RequestHead(
            path: path, metadata: metadata, timeout: timeout, encoding: encoding,
            hasTE: hasTE, peer: strings.peer(conn, loop: loop.raw))
        head.acceptedCompression = accepted
        head.executor = executor
        // Every request event (this one, its messages, its end) arrives on the loop thread.
        head.deliversEventsOnExecutor = executor != nil
        user.call = acceptor.accept(head, outbound: outbound)
        if flags & Int32(H2_HEADERS_END_STREAM) != 0 { user.call?.receive(.end) }
        return user
    }
}

/// Strings every request would otherwise build again from the same bytes: its method path,
/// metadata names and short values (`user-agent`, …) repeat call after call, as does the peer
/// name of a connection. Longer than 15 bytes (shorter ones are stored inline, without an
/// allocation) and at most 128, they come from a small direct-mapped cache, so a peer sending
/// ever-new strings only replaces slots.
///
/// `@unchecked Sendable`: only the loop thread that owns the `ServerSide` uses it (from the
/// shim's request callbacks).
private final class RequestStrings: @unchecked Sendable {
    private static let slotBits = 8
    private static let slots = 1 << slotBits
    private static let maxCached = 128
    private let table: UnsafeMutablePointer<String?>
    private var lastConn: h2_id = 0
    private var lastPeer = ""

    init() {
        table = .allocate(capacity: Self.slots)
        table.initialize(repeating: nil, count: Self.slots)
    }

    deinit {
        table.deinitialize(count: Self.slots)
        table.deallocate()
    }

    func string(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        guard bytes.count > 15, bytes.count <= Self.maxCached else { return String(decoding: bytes, as: UTF8.self) }
        // The slot from the length and the first and last 8 bytes (a collision only costs a miss).
        let raw = UnsafeRawPointer(bytes.baseAddress!)
        let head = raw.loadUnaligned(as: UInt64.self)
        let tail = raw.loadUnaligned(fromByteOffset: bytes.count - 8, as: UInt64.self)
        let hash = (head ^ (tail &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(bytes.count)) &* 0xFF51_AFD7_ED55_8CCD
        let slot = table + Int(hash >> (64 - Self.slotBits))
        if let cached = slot.pointee, cached.utf8.count == bytes.count,
            cached.utf8.withContiguousStorageIfAvailable({
                memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) == 0
            }) == true
        {
            return cached
        }
        let string = String(decoding: bytes, as: UTF8.self)
        slot.pointee = string
        return string
    }

    /// The peer address of a connection, `ipv4:127.0.0.1:5555` or `ipv6:[::1]:5555` (the
    /// shim's, formatted once per connection at accept); asked again only when the connection
    /// changes, since requests arrive in runs from one connection.
    func peer(_ conn: h2_id, loop: OpaquePointer) -> String {
        if conn != lastConn {
            lastConn = conn
            lastPeer = withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(H2_PEER_NAME_MAX)) { buffer in
                let n = h2_conn_peer(loop, conn, buffer.baseAddress!, buffer.count)
                return n == 0
                    ? "unknown"
                    : String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress!, count: n), as: UTF8.self)
            }
        }
        return lastPeer
    }
}

@inline(__always)
private func isGRPCContentType(_ v: UnsafeBufferPointer<UInt8>) -> Bool {
    // application/grpc, application/grpc+proto, application/grpc;charset=...
    let prefix: StaticString = "application/grpc"
    guard v.count >= prefix.utf8CodeUnitCount,
        memcmp(v.baseAddress!, prefix.utf8Start, prefix.utf8CodeUnitCount) == 0
    else { return false }
    if v.count == prefix.utf8CodeUnitCount { return true }
    let next = v[prefix.utf8CodeUnitCount]
    return next == UInt8(ascii: "+") || next == UInt8(ascii: ";")
}

/// Loop-thread state of one server stream.
private final class H2ServerStreamUser: H2StreamUser {
    let handle: H2StreamHandle
    let maxReceive: Int
    /// The request `grpc-encoding` (nil: identity).
    let encoding: CompressionAlgorithm?
    /// What compressed responses save on the call's back-pressure count.
    let credit = DrainCredit()
    /// `@exclusivity(unchecked)`: only the loop thread touches it, one access at a time.
    @exclusivity(unchecked) var call: ServerCall?

    init(handle: H2StreamHandle, maxReceive: Int, encoding: CompressionAlgorithm?) {
        self.handle = handle
        self.maxReceive = maxReceive
        self.encoding = encoding
        super.init(loop: handle.loop)
    }

    override func onMessage(compressed: Bool, _ data: UnsafeBufferPointer<UInt8>) -> Int {
        if compressed { return receiveCompressed(count: data.count) { CopiedBytes(data) } }
        return receive(count: data.count, MessageBytes(Array(data)))
    }

    override func onMessage(compressed: Bool, _ message: H2MessageBuffer) -> Int {
        if compressed { return receiveCompressed(count: message.count) { message } }
        return receive(count: message.count, MessageBytes(buffer: message))
    }

    /// Returns how many bytes (prefix included) count as consumed now.
    @inline(__always)
    private func receive(count: Int, _ message: @autoclosure () -> MessageBytes) -> Int {
        guard let call else { return count + 5 }
        call.receive(.message(message()))
        return call.consumesOnReceipt ? count + 5 : 0
    }

    /// A message with the compressed flag: kept as it arrived (`wire`), inflated by the call
    /// when its handler takes it, within the method's limit.
    private func receiveCompressed(count: Int, _ wire: () -> any MessageBuffer) -> Int {
        guard let call else { return count + 5 }
        guard let encoding else {
            call.receiveError(
                RPCError(
                    .internal, "a request message has the compressed flag set but the call declared no grpc-encoding"))
            self.call = nil
            return count + 5
        }
        let message = H2CompressedMessage(
            wire(), algorithm: encoding, transportLimit: maxReceive, what: "a request message")
        return receive(count: count, MessageBytes(buffer: message))
    }

    override func onEnd() { call?.receive(.end) }

    override func onStreamError(kind: Int32, detail: Int) {
        guard let call else { return }
        if kind == H2_STREAM_ERR_TOO_LARGE {
            call.receiveError(
                RPCError(
                    .resourceExhausted,
                    "a request message of \(detail) bytes exceeds this server's limit of \(maxReceive) bytes"))
        } else if kind == H2_STREAM_ERR_BUSY {
            call.receiveError(
                RPCError(
                    .resourceExhausted,
                    "the server holds its limit of partially received messages (\(detail) bytes); retry shortly"))
        } else {
            call.receiveError(
                RPCError(
                    .internal,
                    "the request stream ended inside a message (\(detail) bytes of a length-prefixed message received)")
            )
        }
        self.call = nil
    }

    override func onDrain(_ bytes: Int) { call?.drained(credit.adjust(bytes)) }

    override func onClose(code: UInt32) {
        call?.closed(cancelled: code != 0)
        call = nil
    }
}

/// The outbound half of a server stream: posts to the loop.
struct H2ServerOutbound: ServerStreamOutbound {
    let handle: H2StreamHandle
    let credit: DrainCredit

    func write(_ first: RPCResponsePart, _ second: RPCResponsePart?, _ third: RPCResponsePart?) {
        if case .message(let m) = first, m.compression != nil {
            return writeCompressing(first, second, third)
        }
        if case .message(let m)? = second, m.compression != nil {
            return writeCompressing(first, second, third)
        }
        // A streamed message after the first: sent from the memory it was encoded into.
        if case .message(let message) = first, second == nil {
            handle.send(message, end: false)
            return
        }
        // The common unary success: empty metadata, a message, OK without message or trailers:
        // prebuilt header blocks, nothing to build per call.
        if case .metadata(let headers) = first, headers.isEmpty,
            case .message(let message)? = second,
            case .status(let status, let trailers)? = third,
            status.code == .ok, status.message.isEmpty, trailers.isEmpty
        {
            handle.send(
                headers: StaticBlocks.responseHeaders, message: message, trailers: StaticBlocks.okTrailers, end: true)
            return
        }
        var h: HeaderBlock? = nil
        var m: MessageBytes? = nil
        var t: HeaderBlock? = nil
        /// Collects one part; true when it was a Trailers-Only response, sent at once.
        func collect(_ part: RPCResponsePart?) -> Bool {
            switch part {
            case .metadata(let headers)?:
                var block = HeaderBlock.responseHeaders()
                block.add(metadata: headers)
                h = block
            case .message(let message)?:
                m = message
            case .status(let status, let trailers)?:
                var block = HeaderBlock()
                addStatus(&block, status)
                block.add(metadata: trailers)
                t = block
            case .trailersOnly(let status, let trailers)?:
                var block = HeaderBlock.responseHeaders()
                addStatus(&block, status)
                block.add(metadata: trailers)
                handle.send(headers: block, message: nil, trailers: nil, end: true)
                return true
            case nil:
                break
            }
            return false
        }
        if collect(first) || collect(second) || collect(third) { return }
        handle.send(headers: h, message: m, trailers: t, end: t != nil)
    }

    /// A write whose message asks for compression (slow path): the message is compressed here,
    /// on the writing task, and response headers in the same write declare `grpc-encoding`.
    private func writeCompressing(_ first: RPCResponsePart, _ second: RPCResponsePart?, _ third: RPCResponsePart?) {
        var h: HeaderBlock? = nil
        var m: MessageBytes? = nil
        var compressed = false
        var t: HeaderBlock? = nil
        for part in [first, second, third] {
            switch part {
            case .metadata(let headers)?:
                var block = HeaderBlock.responseHeaders()
                block.add(metadata: headers)
                h = block
            case .message(let message)?:
                if let algorithm = message.compression { h?.add("grpc-encoding", algorithm.name) }
                if let packed = compressedForSending(message, credit: credit) {
                    m = packed
                    compressed = true
                } else {
                    m = message
                }
            case .status(let status, let trailers)?:
                var block = HeaderBlock()
                addStatus(&block, status)
                block.add(metadata: trailers)
                t = block
            case .trailersOnly, nil:
                break  // never with a message
            }
        }
        handle.send(headers: h, message: m, trailers: t, end: t != nil, compressed: compressed)
    }

    func reset() { handle.reset() }

    /// Encodes straight into a shim message buffer.
    func encode<M: RPCMessage>(_ message: M) throws -> MessageBytes { try handle.encode(message) }

    /// Adds the 5-byte gRPC prefix the core does not know about.
    func consume(_ bytes: Int) { handle.consume(bytes + 5) }
}

@inline(__always)
private func addStatus(_ block: inout HeaderBlock, _ status: Status) {
    switch status.code {
    case .ok: block.add("grpc-status", "0")
    default: block.add("grpc-status", String(status.code.rawValue))
    }
    if !status.message.isEmpty {
        block.add("grpc-message", PercentEncoding.encode(status.message))
    }
}
