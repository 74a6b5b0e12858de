import Synchronization

/// The transport-facing state of one client call. The transport reports what arrives;
/// `ClientCall` reads it.
public final class ClientCallEvents: Sendable {
    private struct State {
        var outbound: (any ClientStreamOutbound)? = nil
        var headers: Metadata? = nil
        var status: (Status, Metadata)? = nil
        var headerWaiters: [CheckedContinuation<Metadata, Never>] = []
        var statusWaiters: [CheckedContinuation<(Status, Metadata), Never>] = []
        var sendClosed = false
        var timer: DeadlineTimer? = nil
        var compression: CompressionAlgorithm? = nil
        var unprocessed = false
    }
    private let state = Mutex(State())
    let inbound: InboundQueue
    let flow = OutboundFlow()
    /// The request compression (set before the stream opens).
    var compression: CompressionAlgorithm? {
        get { state.withLock { $0.compression } }
        set { state.withLock { $0.compression = newValue } }
    }
    /// Whether the response message read last arrived compressed.
    let lastResponseCompressed = Atomic<Bool>(false)

    init() {
        let box = OutboundBox()
        inbound = InboundQueue(onConsume: { n in box.value?.consume(n) })
        outboundBox = box
    }
    private let outboundBox: OutboundBox

    func attach(_ outbound: any ClientStreamOutbound) {
        outboundBox.set(outbound)
        state.withLock { $0.outbound = outbound }
    }

    var outbound: (any ClientStreamOutbound)? { outboundBox.value }

    // MARK: transport events

    /// A part of the response arrived.
    public func receive(_ part: RPCResponsePart) {
        switch part {
        case .metadata(let metadata): receiveHeaders(metadata)
        case .message(let message): inbound.push(message)
        case .status(let status, let trailers), .trailersOnly(let status, let trailers):
            receiveStatus(status, trailers: trailers)
        }
    }

    /// Response headers arrived.
    func receiveHeaders(_ metadata: Metadata) {
        let waiters = state.withLock { s -> [CheckedContinuation<Metadata, Never>] in
            if s.headers == nil { s.headers = metadata }
            defer { s.headerWaiters.removeAll() }
            return s.headerWaiters
        }
        for w in waiters { w.resume(returning: metadata) }
    }

    /// The call ended with `status` before any server processed it (the connection could not be
    /// established, or the stream was refused unprocessed): the error it throws says so
    /// (``RPCError/unprocessed``), so a caller may safely try another server.
    public func receiveUnprocessed(_ status: Status) {
        receiveStatus(status, trailers: [:], unprocessed: true)
    }

    /// The error a call that ended with `status` throws.
    func error(_ status: Status, _ trailers: Metadata) -> RPCError {
        var e = RPCError(status.code == .ok ? .cancelled : status.code, status.message, metadata: trailers)
        e.unprocessed = state.withLock { $0.unprocessed }
        return e
    }

    /// The call ended with `status` (trailers, Trailers-Only, reset, connection loss, local
    /// deadline or cancellation). Only the first status counts.
    func receiveStatus(_ status: Status, trailers: Metadata, unprocessed: Bool = false) {
        typealias Woken = (
            headers: [CheckedContinuation<Metadata, Never>],
            status: [CheckedContinuation<(Status, Metadata), Never>],
            timer: DeadlineTimer?
        )
        let result = state.withLock { s -> Woken? in
            guard s.status == nil else { return nil }
            s.status = (status, trailers)
            s.unprocessed = unprocessed
            if s.headers == nil { s.headers = [:] }
            defer {
                s.headerWaiters.removeAll()
                s.statusWaiters.removeAll()
            }
            return (s.headerWaiters, s.statusWaiters, s.timer)
        }
        guard let result else { return }
        result.timer?.cancel()
        flow.close(error(status, trailers))
        inbound.finish()
        for w in result.headers { w.resume(returning: [:]) }
        for w in result.status { w.resume(returning: (status, trailers)) }
    }

    /// `bytes` of queued request data went out.
    public func drained(_ bytes: Int) { flow.drained(bytes) }

    // MARK: call side

    func startTimer(_ timeout: Duration) {
        // Not on the cooperative pool (see DeadlineTimer): the deadline ends the call on time
        // however busy the pool is.
        let timer = DeadlineTimer(at: .now + timeout) { [weak self] in
            guard let self else { return }
            // Record the status before resetting the stream: the reset's own close event
            // (CANCELLED) must not win the race to be the call's first status.
            self.receiveStatus(
                Status(code: .deadlineExceeded, message: "the call did not complete within its timeout of \(timeout)"),
                trailers: [:])
            self.outbound?.cancel()
        }
        let done = state.withLock { s -> Bool in
            s.timer = timer
            return s.status != nil
        }
        if done { timer.cancel() }
    }

    var isFinished: Bool { state.withLock { $0.status != nil } }

    func cancel(_ message: String = "the call was cancelled by the client") {
        guard !isFinished else { return }
        // Status first, as in `startTimer`: the reset's close event must not replace the message.
        receiveStatus(Status(code: .cancelled, message: message), trailers: [:])
        outbound?.cancel()
    }

    /// Encodes a request for the stream's transport (into its send memory where it can).
    func encode<M: RPCMessage>(_ message: M) throws -> MessageBytes {
        if let outbound { return try outbound.encode(message) }
        return MessageBytes(try message.serializedBytes())
    }

    func send(_ message: MessageBytes) async throws {
        if let (status, trailers) = state.withLock({ $0.status }) {
            if status.code == .ok { throw RPCError(.failedPrecondition, "the call already ended", metadata: trailers) }
            throw error(status, trailers)
        }
        try await flow.reserve(message.count)
        let closed = state.withLock { $0.sendClosed }
        if closed { throw RPCError(.failedPrecondition, "send after finish: the request stream is already closed") }
        outbound?.write(.message(message))
    }

    func finishSending() {
        let first = state.withLock { s -> Bool in
            defer { s.sendClosed = true }
            return !s.sendClosed && s.status == nil
        }
        if first { outbound?.write(.end) }
    }

    func headers() async -> Metadata {
        if let h = state.withLock({ $0.headers }) { return h }
        return await withCheckedContinuation { c in
            let h = state.withLock { s -> Metadata? in
                if let h = s.headers { return h }
                s.headerWaiters.append(c)
                return nil
            }
            if let h { c.resume(returning: h) }
        }
    }

    func status() async -> (Status, Metadata) {
        if let s = state.withLock({ $0.status }) { return s }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { c in
                let st = state.withLock { s -> (Status, Metadata)? in
                    if let st = s.status { return st }
                    s.statusWaiters.append(c)
                    return nil
                }
                if let st { c.resume(returning: st) }
            }
        } onCancel: {
            self.cancel()
        }
    }

    func nextMessage() async throws -> MessageBytes? {
        let received: MessageBytes?
        do {
            received = try await inbound.next()
        } catch is CancellationError {
            cancel()
            throw RPCError(.cancelled, "the task waiting for a response was cancelled")
        }
        guard let received else { return nil }
        lastResponseCompressed.store(received.isCompressed, ordering: .relaxed)
        do {
            return try received.decompressed(limit: nil)
        } catch {
            // Too large once inflated, or corrupt: the call ends with that status, even if the
            // server's OK arrived before the message was read.
            state.withLock { s in
                if let (status, _) = s.status, status.code == .ok { s.status = (error.status, [:]) }
            }
            receiveStatus(error.status, trailers: [:])
            outbound?.cancel()
            throw error
        }
    }
}

/// Holds the outbound half once the transport opened it (read from the consume path).
private final class OutboundBox: Sendable {
    private let storage = Mutex<(any ClientStreamOutbound)?>(nil)
    func set(_ value: any ClientStreamOutbound) { storage.withLock { $0 = value } }
    var value: (any ClientStreamOutbound)? { storage.withLock { $0 } }
}

/// One client call, of any shape.
///
/// Send requests with `send` and `finish`; read responses by iterating the call (an
/// `AsyncSequence` that throws an `RPCError` if the call ends with a status other than
/// OK), or with `response()` for a single one. Cancelling the task that reads cancels the
/// call; so does dropping the last reference to an unfinished call.
public final class ClientCall<Request: RPCMessage, Response: RPCMessage>: AsyncSequence, Sendable {
    /// A decoded response message.
    public typealias Element = Response
    let events: ClientCallEvents

    init(events: ClientCallEvents) {
        self.events = events
    }

    deinit {
        events.cancel("the call was dropped before it finished")
    }

    /// Sends one request message; waits while the server is not reading fast enough. With
    /// `compressed` false the message goes uncompressed even when the call compresses
    /// (``CallOptions/compression``).
    public func send(_ message: Request, compressed: Bool = true) async throws {
        var encoded: MessageBytes
        do { encoded = try events.encode(message) } catch {
            throw RPCError(.internal, "could not encode the request message \(Request.self): \(error)")
        }
        if compressed { encoded.compression = events.compression }
        try await events.send(encoded)
    }

    /// Whether the response message read last arrived compressed (a test of the server's
    /// compression).
    public var lastResponseWasCompressed: Bool { events.lastResponseCompressed.load(ordering: .relaxed) }

    /// Half-closes the request stream: no more requests.
    public func finish() {
        events.finishSending()
    }

    /// Cancels the call (RST_STREAM CANCEL); readers get CANCELLED.
    public func cancel() {
        events.cancel()
    }

    /// The response headers (empty for a Trailers-Only response).
    public func initialMetadata() async -> Metadata {
        await events.headers()
    }

    /// The final status and trailers; waits for the call to end.
    public func status() async -> (status: Status, trailers: Metadata) {
        await events.status()
    }

    /// Reads the single response of a unary or client-streaming call.
    public func response() async throws -> Response {
        guard let first = try await events.nextMessage() else {
            try await throwStatusIfFailed()
            throw RPCError(.internal, "the server ended the call with OK but sent no response message")
        }
        let message = try decode(first)
        let (status, trailers) = await events.status()
        guard status.code == .ok else { throw events.error(status, trailers) }
        return message
    }

    private func throwStatusIfFailed() async throws {
        let (status, trailers) = await events.status()
        if status.code != .ok { throw events.error(status, trailers) }
    }

    private func decode(_ bytes: MessageBytes) throws -> Response {
        do {
            return try bytes.withUnsafeBytes { try Response(serializedBytes: $0) }
        } catch {
            cancel()
            throw RPCError(.internal, "could not decode the response message as \(Response.self): \(error)")
        }
    }

    /// Iterates the response messages.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let call: ClientCall
        /// The next response, or nil at the end of an OK call; throws the status of a failed one.
        public mutating func next() async throws -> Response? {
            if let bytes = try await call.events.nextMessage() { return try call.decode(bytes) }
            try await call.throwStatusIfFailed()
            return nil
        }
    }

    /// The iterator.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(call: self) }
}
