import Synchronization

/// One call on the server: the bridge between a transport stream and a handler task.
///
/// The transport feeds it (``receive(_:)``, ``receiveError(_:)``, ``drained(_:)``,
/// ``closed(cancelled:)``); the handler runs in its own task and answers through the
/// ``ServerStreamOutbound`` the call was accepted with. Exactly one of handler completion,
/// deadline expiry and client cancellation settles the call (see `ServerCallState`).
///
/// From its headers on, the call's deadline (`grpc-timeout`) is armed and its head is checked
/// (``ServerHeadInterceptor``); until its handler starts it is pending, within the server's
/// ``ServerCallLimits`` (request timeout, held bytes).
public final class ServerCall: Sendable {
    let context: ServerContext
    let route: Route
    let outbound: any ServerStreamOutbound
    /// Request stream: only for client- and bidirectional-streaming calls.
    let inbound: InboundQueue?
    /// Response back-pressure: only for server- and bidirectional-streaming calls.
    let flow: OutboundFlow?
    private let dispatcher: ServerDispatcher
    private let executor: (any TaskExecutor)?
    /// Start the handler with `Task.immediate` (see `RequestHead.deliversEventsOnExecutor`).
    private let startsInline: Bool
    /// The dispatcher has head interceptors: the handler waits for their checks.
    private let checksHead: Bool
    /// Whether the call is in the dispatcher's pending registry until its handler starts (calls
    /// that wait for their request or their head checks).
    private let tracksPending: Bool
    private let state: Mutex<State>
    /// Request bytes this call holds while pending (see `PendingCalls`; negative once it left).
    let heldBytes = Atomic<Int>(0)
    /// When the headers arrived, and the message payload bytes received and written: what the
    /// observer is told when the call ends.
    private let startedAt = ContinuousClock.now
    private let requestBytes = Atomic<Int>(0)
    private let responseBytes = Atomic<Int>(0)

    private struct State {
        var call: ServerCallState
        var task: Task<Void, Never>? = nil
        var headTask: Task<Void, Never>? = nil
        var deadlineTask: DeadlineTimer? = nil
        /// The status sent (nil until then, or if the stream closed first).
        var status: Status? = nil
        /// The response `grpc-encoding`, declared with the first response message.
        var responseEncoding: CompressionAlgorithm? = nil
    }

    init(
        context: ServerContext, route: Route, outbound: any ServerStreamOutbound, dispatcher: ServerDispatcher,
        executor: (any TaskExecutor)?, startsInline: Bool = false, checksHead: Bool = false
    ) {
        self.executor = executor
        self.startsInline = startsInline
        self.checksHead = checksHead
        self.tracksPending = checksHead || !route.kind.streamsRequests
        self.state = Mutex(
            State(call: ServerCallState(streamsRequests: route.kind.streamsRequests, headAccepted: !checksHead)))
        self.context = context
        self.route = route
        self.outbound = outbound
        self.dispatcher = dispatcher
        // Unary paths allocate neither (one request message is taken whole; one response
        // message needs no back-pressure).
        self.inbound =
            route.kind.streamsRequests ? InboundQueue(onConsume: { [outbound] n in outbound.consume(n) }) : nil
        self.flow = route.kind.streamsResponses ? OutboundFlow() : nil
    }

    /// Whether the transport should count a request message as consumed as soon as it delivered
    /// it (single-request calls take it at once); otherwise the call releases each message with
    /// ``ServerStreamOutbound/consume(_:)`` when the handler reads it.
    public var consumesOnReceipt: Bool { inbound == nil }

    // MARK: transport events

    /// A part of the request stream arrived.
    @inlinable
    public func receive(_ part: RPCRequestPart) {
        switch part {
        case .message(let message): receiveMessage(message)
        case .end: receiveEnd()
        }
    }

    @usableFromInline
    func receiveMessage(_ message: MessageBytes) {
        requestBytes.add(message.count, ordering: .relaxed)
        if let limit = route.maxRequestMessageSize, message.count > limit {
            // Dropped undecoded; a streaming call's window is released (its queue never sees it).
            if inbound != nil { outbound.consume(message.count) }
            fail(
                RPCError(
                    .resourceExhausted,
                    "a request message of \(message.count) bytes exceeds the limit of \(limit) bytes of \(route.descriptor.path)"
                ))
            return
        }
        if let inbound {
            inbound.push(message)
            // Held unread while the head checks run: counted against the budget.
            if checksHead { hold(message.count) }
            return
        }
        switch state.withLock({ $0.call.receiveRequest(message) }) {
        case .stored: hold(message.count)
        case .duplicate: fail(RPCError(.internal, "\(route.descriptor.path) takes one request message, received more"))
        case .ignored: break
        }
    }

    /// Counts `bytes` held by this pending call; ends the oldest pending calls past the budget.
    private func hold(_ bytes: Int) {
        let evicted = dispatcher.pending.hold(self, bytes: bytes)
        for call in evicted {
            call.fail(
                RPCError(
                    .resourceExhausted,
                    "the server holds too many incomplete requests (over \(dispatcher.limits.maxHeldRequestBytes) bytes); this one waited longest"
                ))
        }
    }

    @usableFromInline
    func receiveEnd() {
        if let inbound {
            inbound.finish()
            return
        }
        start(state.withLock { $0.call.requestEnded() })
    }

    /// The inbound message stream is broken (oversized or truncated message, bad flag): the
    /// call ends with `error`.
    public func receiveError(_ error: RPCError) {
        fail(error)
    }

    /// `bytes` of written response data went out (reopens back-pressure).
    public func drained(_ bytes: Int) {
        flow?.drained(bytes)
    }

    /// The stream closed. `cancelled`: before the call finished (RST_STREAM, connection lost).
    public func closed(cancelled: Bool) {
        let (task, headTask, timer, wasPending, ended) = state.withLock { s in
            (s.task, s.headTask, s.deadlineTask, s.call.isPending, s.call.streamClosed())
        }
        timer?.cancel()
        headTask?.cancel()
        if wasPending && tracksPending { dispatcher.pending.remove(self) }
        if inbound != nil || flow != nil {
            let error = RPCError(.cancelled, "the client cancelled the call")
            inbound?.fail(error)
            flow?.close(error)
        }
        if cancelled { task?.cancel() }
        if ended { callEnded() }
    }

    /// The call is over: the observer hears of it, then the server stops counting it.
    private func callEnded() {
        if let observer = dispatcher.observer {
            let status = state.withLock { $0.status } ?? Status(code: .cancelled, message: "the stream closed first")
            observer.callEnded(
                ServerCallSummary(
                    path: route.descriptor.path, peer: context.peer, status: status,
                    duration: ContinuousClock.now - startedAt, requestBytes: requestBytes.load(ordering: .relaxed),
                    responseBytes: responseBytes.load(ordering: .relaxed), context: context))
        }
        dispatcher.callEnded()
    }

    // MARK: lifecycle

    /// The headers arrived (called once, by the dispatcher, before the transport sees the call):
    /// arms the deadline, checks the head, and starts a streaming-request call that has no head
    /// checks.
    func begin() {
        if let deadline = context.deadline {
            // Not on the cooperative pool (see DeadlineTimer): it ends the call on time however
            // busy the pool is.
            let timer = DeadlineTimer(at: deadline) { [weak self] in self?.expire() }
            state.withLock { $0.deadlineTask = timer }
        }
        if tracksPending { dispatcher.pending.add(self) }
        guard checksHead else {
            if route.kind.streamsRequests { start(state.withLock { $0.call.acceptHead() }) }
            return
        }
        let headTask: Task<Void, Never>
        if startsInline, #available(macOS 26.0, *) {
            // A check that does not suspend (a missing token) answers before `accept` returns.
            headTask = Task.immediate(executorPreference: executor) { await self.checkHead() }
        } else {
            headTask = Task(executorPreference: executor) { await self.checkHead() }
        }
        let cancel = state.withLock { s -> Bool in
            s.headTask = headTask
            return s.call.isSettled
        }
        if cancel { headTask.cancel() }
    }

    /// Runs every head interceptor's check; the first failure ends the call, else the handler
    /// may start.
    private func checkHead() async {
        do {
            for interceptor in dispatcher.headInterceptors {
                try await interceptor.checkHead(context: context)
            }
        } catch {
            fail(RPCError.from(error))
            return
        }
        start(state.withLock { $0.call.acceptHead() })
    }

    /// The request was not complete (or the head checks not done) within the request timeout.
    func requestTimedOut(after timeout: Duration) {
        fail(
            RPCError(
                .deadlineExceeded,
                "\(route.descriptor.path) did not start within \(timeout) of its headers: the request was not complete"
            ))
    }

    /// Starts the handler if `decision` says so (once the head is accepted: streaming-request
    /// calls at once, others when the request is complete).
    private func start(_ decision: ServerCallState.Start) {
        let request: MessageBytes?
        switch decision {
        case .none: return
        case .missingRequest:
            fail(RPCError(.internal, "\(route.descriptor.path) takes one request message, received none"))
            return
        case .run(let message): request = message
        }
        if tracksPending { dispatcher.pending.remove(self) }
        let task: Task<Void, Never>
        if startsInline, #available(macOS 26.0, *) {
            // On the executor's thread already: the handler runs here until it first suspends
            // (a unary handler usually answers before returning), no job enqueued for it.
            task = Task.immediate(executorPreference: executor) { await self.run(request) }
        } else {
            task = Task(executorPreference: executor) { await self.run(request) }
        }
        let cancel = state.withLock { s -> Bool in
            if s.call.isEnded { return false }
            s.task = task
            return s.call.isSettled
        }
        if cancel { task.cancel() }
    }

    private func run(_ request: MessageBytes?) async {
        do {
            // Without interceptors, no closure and one async frame less per call.
            if dispatcher.interceptors.isEmpty {
                try await handle(request)
            } else {
                try await dispatcher.intercept(context) { try await self.handle(request) }
            }
        } catch {
            finish(message: nil, error: RPCError.from(error))
        }
        let (timer, ended) = state.withLock { s in (s.deadlineTask, s.call.handlerReturned()) }
        timer?.cancel()
        if ended { callEnded() }
    }

    private func handle(_ request: MessageBytes?) async throws {
        switch route.handler {
        case .unary(let handler):
            let response = try await handler(try takeRequest(request) ?? MessageBytes([]), context)
            finish(message: response, error: nil)
        case .streaming(let handler):
            try await handler(self, try takeRequest(request))
            finish(message: nil, error: nil)
        }
    }

    /// A request message as the handler gets it: inflated (within the method's limit) if it
    /// arrived compressed, noted in the context.
    func takeRequest(_ message: MessageBytes?) throws(RPCError) -> MessageBytes? {
        guard let message else { return nil }
        let compressed = message.isCompressed
        context.storage.lastRequestCompressed.store(compressed, ordering: .relaxed)
        return compressed ? try message.decompressed(limit: route.maxRequestMessageSize) : message
    }

    /// The response `grpc-encoding` for a stream whose headers go out now: the handler's choice,
    /// if the client accepts it.
    private func declaredEncoding() -> CompressionAlgorithm? {
        guard let wanted = context.responseCompression, context.acceptedCompression.contains(wanted) else { return nil }
        return wanted
    }

    private func expire() {
        fail(RPCError(.deadlineExceeded, "the deadline of \(route.descriptor.path) expired before the call completed"))
    }

    /// Ends the call with `error` from outside the handler, and cancels the handler.
    func fail(_ error: RPCError) {
        let (task, headTask) = state.withLock { ($0.task, $0.headTask) }
        finish(message: nil, error: error)
        inbound?.fail(error)
        flow?.close(error)
        task?.cancel()
        headTask?.cancel()
    }

    /// The one place a call's status is sent.
    private func finish(message: [UInt8]?, error: RPCError?) {
        let status = error?.status ?? .ok
        guard
            let (step, timer) = state.withLock({ s in
                s.call.finish().map {
                    s.status = status
                    return ($0, s.deadlineTask)
                }
            })
        else { return }
        if step.callEnded {
            // Ended before its handler started: nothing else stops its timer or registration.
            if tracksPending { dispatcher.pending.remove(self) }
            timer?.cancel()
        }
        let response = context.storage.response.withLock { $0 }
        var outMessage = message.map { MessageBytes($0) }
        if outMessage != nil, context.responseCompression != nil {
            outMessage?.compression =
                step.headersSent ? state.withLock { $0.responseEncoding } : declaredEncoding()
        }
        var trailers = response.trailing
        if let error { trailers.append(contentsOf: error.metadata) }
        if let message { responseBytes.add(message.count, ordering: .relaxed) }
        if step.headersSent {
            if let outMessage {
                outbound.write(.message(outMessage), .status(status, trailers), nil)
            } else {
                outbound.write(.status(status, trailers))
            }
        } else if let outMessage {
            outbound.write(.metadata(response.initial), .message(outMessage), .status(status, trailers))
        } else if response.initial.isEmpty {
            outbound.write(.trailersOnly(status, trailers))
        } else {
            outbound.write(.metadata(response.initial), .status(status, trailers), nil)
        }
        flow?.close(RPCError(.cancelled, "the call is over"))
        if step.callEnded { callEnded() }
    }

    // MARK: handler side

    /// The request stream of a streaming-request call.
    var requests: InboundQueue { inbound! }

    /// Encodes a response message with the transport (into its send memory, if it can).
    func encodeResponse<M: RPCMessage>(_ message: M) throws -> MessageBytes {
        do {
            return try outbound.encode(message)
        } catch let error as RPCError {
            throw error
        } catch {
            throw RPCError(.internal, "could not encode the response message \(M.self): \(error)")
        }
    }

    func writeMessage(_ message: MessageBytes) async throws {
        try await flow?.reserve(message.count)
        let wanted = context.responseCompression
        let declare = wanted == nil ? nil : declaredEncoding()
        guard
            let (first, encoding) = state.withLock({ s -> (Bool, CompressionAlgorithm?)? in
                guard let first = s.call.writeMessage() else { return nil }
                if first { s.responseEncoding = declare }
                return (first, s.responseEncoding)
            })
        else {
            throw RPCError(.cancelled, "the call is already over")
        }
        responseBytes.add(message.count, ordering: .relaxed)
        var message = message
        if wanted != nil { message.compression = encoding }
        if first {
            outbound.write(.metadata(context.storage.response.withLock { $0.initial }), .message(message), nil)
        } else {
            outbound.write(.message(message))
        }
    }
}
