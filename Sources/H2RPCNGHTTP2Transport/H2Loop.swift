import CH2Shim
import H2RPC
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Per-stream state of the nghttp2 transports, owned by the loop thread: the shim holds a
/// retained pointer to it (the stream's `user`) and releases it in `on_close`.
class H2StreamUser {
    let loop: H2Loop

    init(loop: H2Loop) { self.loop = loop }

    func onHeaders(_ nv: UnsafePointer<h2_nv>?, _ count: Int, flags: Int32) {}
    func onMessage(compressed: Bool, _ data: UnsafeBufferPointer<UInt8>) -> Int { data.count + 5 }
    /// A message the shim assembled, handed over in its buffer: `message` owns it.
    func onMessage(compressed: Bool, _ message: H2MessageBuffer) -> Int {
        onMessage(compressed: compressed, UnsafeBufferPointer(start: message.pointer, count: message.count))
    }
    func onEnd() {}
    func onStreamError(kind: Int32, detail: Int) {}
    func onDrain(_ bytes: Int) {}
    func onClose(code: UInt32) {}
}

/// What a loop's owner handles beyond per-stream events.
protocol H2LoopDelegate: AnyObject {
    /// Server: a new request. Returns the stream's user object, or nil to refuse it.
    func onRequest(conn: h2_id, stream: h2_id, _ nv: UnsafePointer<h2_nv>?, _ count: Int, flags: Int32) -> H2StreamUser?
    /// Client connection events.
    func onConnection(_ conn: h2_id, event: Int32, detail: Int32)
    /// A connection's log line from the shim (TLS handshake failures, ALPN refusals, TLS errors).
    func onLog(_ conn: h2_id, message: String)
}

/// One shim event loop (its own thread, owning every socket and nghttp2 session).
///
/// `@unchecked Sendable`: the only state is the C loop pointer, and the shim's posting
/// functions (`h2_send`, `h2_reset`, `h2_consume`, `h2_open_stream`, `h2_connect`,
/// `h2_conn_close`, `h2_loop_goaway`) are documented thread-safe (mutex + eventfd).
/// Creation, start, stop and destroy are ordered by the owning transport.
final class H2Loop: @unchecked Sendable {
    let raw: OpaquePointer
    private let stopped = Atomic<Bool>(false)
    private let delegateBox: DelegateBox

    final class DelegateBox {
        weak var delegate: (any H2LoopDelegate)?
    }

    /// `loops`: how many loops share `config`'s process-wide budgets (each gets its share).
    init(config: H2Configuration, reusePort: Bool = false, loops: Int = 1) throws {
        var cfg = h2_config()
        h2_config_init(&cfg)
        cfg.max_recv_message = config.maxReceiveMessageSize
        cfg.max_concurrent_streams = config.maxConcurrentStreams
        cfg.reuse_port = reusePort ? 1 : 0
        cfg.initial_window = config.streamWindowSize
        cfg.max_frame_size = config.maxFrameSize
        cfg.connection_window = max(config.connectionWindowSize, config.streamWindowSize)
        cfg.max_header_list_size = config.maxHeaderListSize
        cfg.max_header_count = config.maxHeaderCount
        cfg.rst_burst = config.resetBurst
        cfg.rst_rate = config.resetRate
        // Connection limits.
        cfg.max_connections = UInt32(clamping: max(0, config.maxConnections))
        cfg.max_connections_per_addr = UInt32(clamping: max(0, config.maxConnectionsPerAddress))
        cfg.handshake_timeout_ms = H2Configuration.milliseconds(config.handshakeTimeout)
        cfg.idle_timeout_ms = H2Configuration.milliseconds(config.idleTimeout)
        // Partial messages.
        cfg.max_partial_bytes = max(1, config.maxPartialMessageBytes / max(1, loops))
        cfg.max_partial_bytes_per_conn = max(1, config.maxPartialMessageBytesPerConnection)
        cfg.max_unsent_per_conn = max(1, config.maxUnreadResponseBytesPerConnection)
        cfg.max_unsent = max(1, config.maxUnreadResponseBytes / max(1, loops))
        // Keepalive and connection lifetimes.
        cfg.keepalive_time_ms = H2Configuration.milliseconds(config.keepaliveTime)
        cfg.keepalive_timeout_ms = H2Configuration.milliseconds(config.keepaliveTimeout)
        cfg.min_ping_interval_ms = H2Configuration.milliseconds(config.minPingInterval)
        cfg.max_connection_age_ms = H2Configuration.milliseconds(config.maxConnectionAge)
        cfg.max_connection_age_grace_ms = H2Configuration.milliseconds(config.maxConnectionAgeGrace)
        cfg.connect_timeout_ms = H2Configuration.milliseconds(config.connectTimeout)
        let box = DelegateBox()
        var cb = h2_callbacks()
        cb.ctx = Unmanaged.passUnretained(box).toOpaque()
        cb.on_request = { ctx, conn, stream, nv, count, flags in
            let box = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue()
            guard let user = box.delegate?.onRequest(conn: conn, stream: stream, nv, count, flags: flags) else {
                return nil
            }
            return Unmanaged.passRetained(user).toOpaque()
        }
        cb.on_headers = { _, user, nv, count, flags in
            H2Loop.user(user).onHeaders(nv, count, flags: flags)
        }
        cb.on_message = { _, user, compressed, data, len in
            H2Loop.user(user).onMessage(compressed: compressed != 0, UnsafeBufferPointer(start: data, count: len))
        }
        cb.on_message_buf = { _, user, compressed, buf, len in
            let stream = H2Loop.user(user)
            return stream.onMessage(
                compressed: compressed != 0, H2MessageBuffer(loop: stream.loop, pointer: buf!, count: len))
        }
        cb.on_end = { _, user in H2Loop.user(user).onEnd() }
        cb.on_stream_error = { _, user, kind, detail in H2Loop.user(user).onStreamError(kind: kind, detail: detail) }
        cb.on_drain = { _, user, bytes in H2Loop.user(user).onDrain(bytes) }
        cb.on_close = { _, user, code in
            guard let user else { return }
            let u = Unmanaged<H2StreamUser>.fromOpaque(user)
            u.takeUnretainedValue().onClose(code: code)
            u.release()
        }
        cb.on_conn = { ctx, conn, event, detail in
            let box = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue()
            box.delegate?.onConnection(conn, event: event, detail: detail)
        }
        guard let loop = h2_loop_create(&cfg, &cb) else {
            throw RPCError(.internal, "could not create the HTTP/2 event loop (errno \(errno))")
        }
        _ = h2_loop_set_log(
            loop,
            { ctx, conn, msg in
                let box = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue()
                box.delegate?.onLog(conn, message: String(cString: msg!))
            }, Unmanaged.passUnretained(box).toOpaque())
        raw = loop
        delegateBox = box
    }

    @inline(__always)
    private static func user(_ p: UnsafeMutableRawPointer?) -> H2StreamUser {
        Unmanaged<H2StreamUser>.fromOpaque(p!).takeUnretainedValue()
    }

    /// Counts this loop's connections against `other`'s caps (before either starts): the loops
    /// of one server share one total and one per-address connection cap.
    func shareLimits(with other: H2Loop) {
        _ = h2_loop_share_limits(raw, other.raw)
    }

    func setDelegate(_ delegate: any H2LoopDelegate) {
        delegateBox.delegate = delegate
    }

    func start() throws {
        let rc = h2_loop_start(raw)
        if rc != 0 { throw RPCError(.internal, "could not start the HTTP/2 event loop (errno \(-rc))") }
    }

    /// Stops the thread; every open stream gets `on_close` (releasing its user object).
    func stop() {
        if stopped.exchange(true, ordering: .acquiringAndReleasing) { return }
        h2_loop_stop(raw)
    }

    deinit {
        h2_loop_stop(raw)
        h2_loop_destroy(raw)
    }

    func stats() -> h2_stats {
        var s = h2_stats()
        h2_loop_stats(raw, &s)
        return s
    }
}

/// Settings shared by the nghttp2 server and client transports.
public struct H2Configuration: Sendable {
    /// Largest message accepted, in bytes (default 4 MiB); larger → RESOURCE_EXHAUSTED.
    public var maxReceiveMessageSize: Int
    /// SETTINGS_MAX_CONCURRENT_STREAMS a server advertises (default 1000); excess streams are refused.
    public var maxConcurrentStreams: UInt32
    /// Server: run handler tasks on the event-loop thread (no thread hop per call). Only for
    /// services whose handlers never block a thread; default false (Swift's global executor).
    public var runHandlersOnEventLoop: Bool
    /// Server: event-loop threads sharing the port (default 1). With handlers on the loops,
    /// one per core serves without thread hops.
    public var eventLoops: Int
    /// Where the transport's connection log lines go (TLS handshake failures, a TLS connection
    /// that did not negotiate h2, TLS errors); called on an event-loop thread, so it must not
    /// block. nil (default): standard error.
    public var connectionLog: (@Sendable (String) -> Void)? = nil
    /// Receive window per stream (SETTINGS_INITIAL_WINDOW_SIZE): how much a peer may send
    /// ahead of what the application consumed. Default 4 MiB, so 1 MiB messages stream
    /// without a round trip each.
    public var streamWindowSize: UInt32
    /// Receive window per connection: bounds what one connection can make us buffer. Default 16 MiB.
    public var connectionWindowSize: UInt32
    /// SETTINGS_MAX_FRAME_SIZE: the largest frame a peer may send us (16 KiB - 16 MiB).
    /// Default 256 KiB, so large messages cross in few frames (our transports send DATA frames
    /// of large messages up to 256 KiB when the peer allows it).
    public var maxFrameSize: UInt32

    // MARK: HTTP/2 stream and header limits (set after `init`; 0 = the shim's default)

    /// SETTINGS_MAX_HEADER_LIST_SIZE, advertised and enforced on every received header block:
    /// the sum over its fields of name + value + 32 bytes (RFC 7541). Default 16 KiB (grpc's),
    /// at most 256 KiB. A request over it, or over `maxHeaderCount`, is answered at once with
    /// RESOURCE_EXHAUSTED (its handler never runs); a response over it fails the call with
    /// RESOURCE_EXHAUSTED.
    public var maxHeaderListSize: UInt32 = 16 << 10
    /// Most fields (pseudo-headers included) in one received header block. Default 100.
    public var maxHeaderCount: UInt32 = 100
    /// Server rapid-reset guard (CVE-2023-44487): every RST_STREAM a connection sends takes one
    /// of `resetBurst` tokens, and `resetRate` come back each second; a reset that finds none
    /// gets GOAWAY ENHANCE_YOUR_CALM and the connection closes. Defaults 1000 and 100/s: a
    /// client may cancel as many calls as it can have open at once, then 100 a second.
    public var resetBurst: UInt32 = 1000
    /// See `resetBurst`.
    public var resetRate: UInt32 = 100
    /// Bytes of partially received messages held at once, in all (split between the event
    /// loops). A message larger than its stream's window completes only because the window is
    /// re-opened before the message is whole; past this budget, or past
    /// `maxPartialMessageBytesPerConnection` on one connection, windows stay closed (the
    /// senders wait; one waiting stream at a time may go on, so they never deadlock). Past
    /// twice the budget plus one message, the stream whose bytes arrive fails with
    /// RESOURCE_EXHAUSTED. Default 64 MiB.
    public var maxPartialMessageBytes: Int = 64 << 20
    /// See `maxPartialMessageBytes`. Default 8 MiB.
    public var maxPartialMessageBytesPerConnection: Int = 8 << 20
    /// Server: bytes of responses queued on one connection that its client has not read (its
    /// windows are closed). Past it, a new call on the connection is answered at once with
    /// RESOURCE_EXHAUSTED, so a client that never reads cannot pin finished unary responses
    /// without bound (streams also wait for the client, through `ResponseWriter.write`).
    /// Default 16 MiB.
    public var maxUnreadResponseBytesPerConnection: Int = 16 << 20
    /// Server: bytes of unread responses in all (split between the event loops); past it, a
    /// connection with more than 64 KiB unread has its new calls refused the same way, so
    /// many connections that do not read cannot add up without bound. Default 64 MiB.
    public var maxUnreadResponseBytes: Int = 64 << 20
    // MARK: Connection limits (server; see the README's "Limits: connections")

    /// Most connections served at once, over all event loops; further ones are accepted and
    /// closed at once. 0 (default): automatic, min(10,000, the soft RLIMIT_NOFILE less a
    /// quarter of it, and at least 64 less), so connections cannot take the file descriptors
    /// the database and blob files need.
    public var maxConnections: Int = 0
    /// Most connections from one peer address (an IPv4 address, or an IPv6 /64); 0: no cap.
    /// Default 1000 (many users may share one NAT address).
    public var maxConnectionsPerAddress: Int = 1000
    /// A connection that has not sent the HTTP/2 client preface and its SETTINGS this long
    /// after it was accepted is closed; `.zero`: never. Default 10 s.
    public var handshakeTimeout: Duration = .seconds(10)
    /// A connection without calls for this long is sent GOAWAY (NO_ERROR) and closed;
    /// `.zero`: never. Default 5 minutes.
    public var idleTimeout: Duration = .seconds(300)

    // MARK: Keepalive and connection lifetimes (README "Connections"; `.zero` turns each off)

    /// Nothing received for this long: send an HTTP/2 PING. A server pings every connection, a
    /// client only while it has calls open. Default 2 hours (grpc's server default; the
    /// client library sets its own, see `LabGalleryClient.Configuration.keepaliveTime`).
    public var keepaliveTime: Duration = .seconds(7200)
    /// After a keepalive PING, nothing received for this long: the connection is dead and
    /// closed, its calls end with UNAVAILABLE. Default 20 s.
    public var keepaliveTimeout: Duration = .seconds(20)
    /// Server: a client PING sooner than this after its previous one, with no response data
    /// sent in between, is a strike; the third gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings"
    /// and the connection closes (grpc's policy). Default 5 minutes.
    public var minPingInterval: Duration = .seconds(300)
    /// Server: a connection this old (±10 % jitter) gets GOAWAY (NO_ERROR): clients open a new
    /// one for new calls. Default `.zero`: no limit.
    public var maxConnectionAge: Duration = .zero
    /// Server: after the max-age GOAWAY, the connection closes this much later even with calls
    /// still open. Default `.zero`: calls may take as long as they need.
    public var maxConnectionAgeGrace: Duration = .zero
    /// Client: an address that has not accepted the connection this long is given up and the
    /// next address of the name is tried. Default 2 s.
    public var connectTimeout: Duration = .seconds(2)

    /// Whole milliseconds of `duration` for the shim (negative: 0, too long: the largest).
    static func milliseconds(_ duration: Duration) -> UInt32 {
        let (seconds, attoseconds) = duration.components
        if seconds < 0 { return 0 }
        let ms = seconds.multipliedReportingOverflow(by: 1000)
        if ms.overflow { return UInt32.max }
        return UInt32(clamping: ms.partialValue + attoseconds / 1_000_000_000_000_000)
    }

    /// Creates a configuration.
    public init(
        maxReceiveMessageSize: Int = 4 * 1024 * 1024, maxConcurrentStreams: UInt32 = 1000,
        runHandlersOnEventLoop: Bool = false, eventLoops: Int = 1,
        streamWindowSize: UInt32 = 4 << 20, connectionWindowSize: UInt32 = 16 << 20,
        maxFrameSize: UInt32 = 256 << 10
    ) {
        self.maxReceiveMessageSize = maxReceiveMessageSize
        self.maxConcurrentStreams = maxConcurrentStreams
        self.runHandlersOnEventLoop = runHandlersOnEventLoop
        self.eventLoops = eventLoops
        self.streamWindowSize = streamWindowSize
        self.connectionWindowSize = connectionWindowSize
        self.maxFrameSize = maxFrameSize
    }
}

/// A stream handle for posting to the loop (any thread).
struct H2StreamHandle: Sendable {
    let loop: H2Loop
    let id: h2_id

    /// Sends what is given; `compressed`: the message is compressed (its flag is set).
    func send(
        headers: HeaderBlock?, message: MessageBytes?, trailers: HeaderBlock?, end: Bool, compressed: Bool = false
    ) {
        let h = headers ?? HeaderBlock(capacity: 0)
        let t = trailers ?? HeaderBlock(capacity: 0)
        h.withNV { hp, hn in
            t.withNV { tp, tn in
                send(
                    headers: UnsafeBufferPointer(start: hp, count: hn), message: message,
                    trailers: UnsafeBufferPointer(start: tp, count: tn), end: end, compressed: compressed)
            }
        }
    }

    /// Sends field arrays the caller keeps alive for the call (the shim copies them).
    func send(
        headers: UnsafeBufferPointer<h2_nv>, message: MessageBytes?, trailers: UnsafeBufferPointer<h2_nv>, end: Bool,
        compressed: Bool = false
    ) {
        let flags: Int32 = (end ? Int32(H2_SEND_END) : 0) | (compressed ? Int32(H2_SEND_COMPRESSED) : 0)
        if let message {
            message.withUnsafeBytes { m in
                _ = h2_send(
                    loop.raw, id, headers.baseAddress, headers.count, 1,
                    m.baseAddress?.assumingMemoryBound(to: UInt8.self), m.count,
                    trailers.baseAddress, trailers.count, flags)
            }
        } else {
            _ = h2_send(
                loop.raw, id, headers.baseAddress, headers.count, 0, nil, 0,
                trailers.baseAddress, trailers.count, flags)
        }
    }

    /// Encodes `message` straight into a shim message buffer (no intermediate array, no copy
    /// when it is sent).
    func encode<M: RPCMessage>(_ message: M) throws -> MessageBytes {
        var buffer: H2SendBuffer? = nil
        try message.serialize { size in
            guard let p = h2_buf_alloc(loop.raw, size) else {
                throw RPCError(.resourceExhausted, "could not allocate \(size) bytes for a message")
            }
            let b = H2SendBuffer(loop: loop, pointer: p, count: size)
            buffer = b
            return UnsafeMutableRawBufferPointer(start: p, count: size)
        }
        guard let buffer else { return MessageBytes(try message.serializedBytes()) }
        return MessageBytes(buffer: buffer)
    }

    /// Sends a message from `encode` (its buffer passes to the shim) or an array.
    func send(_ message: MessageBytes, end: Bool) {
        if let buffer = message.buffer as? H2SendBuffer, buffer.loop === loop, let p = buffer.take() {
            _ = h2_send_buf(loop.raw, id, p, buffer.count, end ? Int32(H2_SEND_END) : 0)
        } else {
            send(headers: nil, message: message, trailers: nil, end: end)
        }
    }

    func reset(code: UInt32 = 0x8) { h2_reset(loop.raw, id, code) }

    func consume(_ bytes: Int) { h2_consume(loop.raw, id, bytes) }
}

/// Runs Swift jobs on a loop's thread: handlers scheduled here answer without a thread hop
/// (request events, the handler and the response write share one thread and one flush).
///
/// Only for handlers that never block the thread (no synchronous file or database I/O):
/// while a job runs, the loop serves no socket.
final class H2LoopExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: the only state is the immutable loop reference; `h2_loop_run` is thread-safe.
    let loop: H2Loop

    init(loop: H2Loop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        let ctx = Unmanaged.passUnretained(self).toOpaque()
        let arg = unsafeBitCast(unowned, to: UnsafeMutableRawPointer.self)
        let rc = h2_loop_run(
            loop.raw,
            { ctx, arg, onLoop in
                let executor = Unmanaged<H2LoopExecutor>.fromOpaque(ctx!).takeUnretainedValue()
                let job = unsafeBitCast(arg!, to: UnownedJob.self)
                if onLoop != 0 {
                    job.runSynchronously(on: executor.asUnownedTaskExecutor())
                } else {
                    // The loop stopped first: let the global executor finish the job.
                    globalConcurrentExecutor.enqueue(job)
                }
            }, ctx, arg)
        if rc != 0 { globalConcurrentExecutor.enqueue(unowned) }
    }
}

/// A received message in a shim buffer, handed over by `on_message_buf`: freed (back to the
/// loop's pool) when the last reference goes. Holds the loop, so the shim outlives it.
final class H2MessageBuffer: MessageBuffer {
    let loop: H2Loop
    private let address: UInt
    let count: Int

    init(loop: H2Loop, pointer: UnsafeMutablePointer<UInt8>, count: Int) {
        self.loop = loop
        self.address = UInt(bitPattern: pointer)
        self.count = count
    }

    var pointer: UnsafeMutablePointer<UInt8> { UnsafeMutablePointer(bitPattern: address)! }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }

    deinit { h2_buf_free(loop.raw, pointer) }
}

/// A shim message buffer an outbound message was encoded into (`h2_buf_alloc`): passes to the
/// shim when sent (`take`), or is freed with this object. Holds the loop, so the shim outlives it.
final class H2SendBuffer: MessageBuffer {
    let loop: H2Loop
    private let address: Atomic<UInt>
    let count: Int

    init(loop: H2Loop, pointer: UnsafeMutablePointer<UInt8>, count: Int) {
        self.loop = loop
        self.address = Atomic(UInt(bitPattern: pointer))
        self.count = count
    }

    /// The buffer, once: whoever takes it frees or sends it.
    func take() -> UnsafeMutablePointer<UInt8>? {
        UnsafeMutablePointer(bitPattern: address.exchange(0, ordering: .acquiringAndReleasing))
    }

    /// The encoded bytes (empty once taken).
    var bytes: UnsafeRawBufferPointer {
        guard let p = UnsafeRawPointer(bitPattern: address.load(ordering: .acquiring)) else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: p, count: count)
    }

    deinit {
        if let p = take() { h2_buf_free(loop.raw, p) }
    }
}
