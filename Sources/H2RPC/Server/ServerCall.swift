import Synchronization

/// One call on the server: the bridge between a transport stream and a handler task.
///
/// The transport feeds it (`receive`, `receiveEnd`, `receiveError`, `drained`, `closed`);
/// the handler runs in its own task and answers through `ServerStreamOutbound`. Exactly
/// one of handler completion, deadline expiry and client cancellation ends the call.
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
    /// Start the handler with `Task.immediate` (see `RequestHead.startsHandlerInline`).
    private let startsInline: Bool
    private let state = Mutex(State())

    private struct State {
        var finished = false
        var headersSent = false
        var started = false
        var single: MessageBytes? = nil
        var received = 0
        var accounted = false
        /// The handler's task returned (it may have done so before `start` stored it).
        var handlerDone = false
        var task: Task<Void, Never>? = nil
        var deadlineTask: Task<Void, Never>? = nil

        /// Whether the call is over for the dispatcher now: it is when no handler started
        /// (a started handler's `run` accounts for it). True once at most.
        mutating func endIfNeverStarted() -> Bool {
            if started || accounted { return false }
            accounted = true
            return true
        }
    }

    init(context: ServerContext, route: Route, outbound: any ServerStreamOutbound, dispatcher: ServerDispatcher,
         executor: (any TaskExecutor)?, startsInline: Bool = false) {
        self.executor = executor
        self.startsInline = startsInline
        self.context = context
        self.route = route
        self.outbound = outbound
        self.dispatcher = dispatcher
        // Unary paths allocate neither (one request message is taken whole; one response
        // message needs no back-pressure).
        self.inbound = route.kind.streamsRequests ? InboundQueue(onConsume: { [outbound] n in outbound.consume(n) }) : nil
        self.flow = route.kind.streamsResponses ? OutboundFlow() : nil
    }

    /// Whether the transport should count a message as consumed at once (unary requests
    /// are taken by the call immediately; streamed ones when the handler reads them).
    public var consumesOnReceipt: Bool { inbound == nil }

    // MARK: transport events

    /// One request message arrived.
    public func receive(_ message: [UInt8]) {
        receive(MessageBytes(message))
    }

    /// One request message arrived (possibly in transport memory, not copied).
    func receive(_ message: MessageBytes) {
        if let inbound {
            inbound.push(message)
            return
        }
        let duplicate = state.withLock { s -> Bool in
            s.received += 1
            if s.received == 1 { s.single = message; return false }
            return true
        }
        if duplicate {
            fail(RPCError(.internal, "\(route.descriptor.path) takes one request message, received more"))
        }
    }

    /// The client half-closed.
    public func receiveEnd() {
        if let inbound {
            inbound.finish()
            return
        }
        switch state.withLock({ $0.finished ? nil : $0.received }) {
        case 1?: start()
        case 0?: fail(RPCError(.internal, "\(route.descriptor.path) takes one request message, received none"))
        default: break  // over already (more than one message failed it)
        }
    }

    /// The inbound message stream is broken (oversized or truncated message, bad flag).
    public func receiveError(_ error: RPCError) {
        fail(error)
    }

    /// `bytes` of queued response data went out.
    public func drained(_ bytes: Int) {
        flow?.drained(bytes)
    }

    /// The stream closed. `cancelled`: before the call finished (RST_STREAM, connection lost).
    public func closed(cancelled: Bool) {
        let (task, timer, ended) = state.withLock { s -> (Task<Void, Never>?, Task<Void, Never>?, Bool) in
            s.finished = true
            return (s.task, s.deadlineTask, s.endIfNeverStarted())
        }
        timer?.cancel()
        if inbound != nil || flow != nil {
            let error = RPCError(.cancelled, "the client cancelled the call")
            inbound?.fail(error)
            flow?.close(error)
        }
        if cancelled { task?.cancel() }
        if ended { dispatcher.callEnded() }
    }

    // MARK: lifecycle

    /// Starts the handler (streaming-request calls at once; others when the request is complete).
    func start() {
        let go = state.withLock { s -> Bool in
            if s.started || s.finished { return false }
            s.started = true
            return true
        }
        guard go else { return }
        if let deadline = context.deadline {
            let timer = Task { [weak self] in
                try? await Task.sleep(until: deadline, clock: .continuous)
                guard !Task.isCancelled else { return }
                self?.expire()
            }
            state.withLock { $0.deadlineTask = timer }
        }
        let task: Task<Void, Never>
        if startsInline, #available(macOS 26.0, *) {
            // On the executor's thread already: the handler runs here until it first suspends
            // (a unary handler usually answers before returning), no job enqueued for it.
            task = Task.immediate(executorPreference: executor) { await self.run() }
        } else {
            task = Task(executorPreference: executor) { await self.run() }
        }
        let cancel = state.withLock { s -> Bool in
            if s.handlerDone { return false }
            s.task = task
            return s.finished
        }
        if cancel { task.cancel() }
    }

    private func run() async {
        do {
            // Without interceptors, no closure and one async frame less per call.
            if dispatcher.interceptors.isEmpty {
                try await handle()
            } else {
                try await dispatcher.intercept(context) { try await self.handle() }
            }
        } catch {
            finish(message: nil, error: RPCError.from(error))
        }
        // The call is over for the dispatcher, exactly once: here when a handler started
        // (see `State.endIfNeverStarted` otherwise).
        let (timer, ended) = state.withLock { s -> (Task<Void, Never>?, Bool) in
            s.handlerDone = true
            defer { s.accounted = true }
            return (s.deadlineTask, !s.accounted)
        }
        timer?.cancel()
        if ended { dispatcher.callEnded() }
    }

    private func handle() async throws {
        switch route.handler {
        case .unary(let handler):
            let response = try await handler(singleRequest(), context)
            finish(message: response, error: nil)
        case .streaming(let handler):
            try await handler(self)
            finish(message: nil, error: nil)
        }
    }

    private func expire() {
        fail(RPCError(.deadlineExceeded, "the deadline of \(route.descriptor.path) expired before the call completed"))
    }

    /// Ends the call with `error` from outside the handler, and cancels the handler.
    func fail(_ error: RPCError) {
        let task = state.withLock { $0.task }
        finish(message: nil, error: error)
        inbound?.fail(error)
        flow?.close(error)
        task?.cancel()
        if state.withLock({ $0.endIfNeverStarted() }) { dispatcher.callEnded() }
    }

    /// The one place a call's status is sent.
    private func finish(message: [UInt8]?, error: RPCError?) {
        let headersWereSent: Bool? = state.withLock { s in
            if s.finished { return nil }
            s.finished = true
            defer { s.headersSent = true }
            return s.headersSent
        }
        guard let headersWereSent else { return }
        let response = context.storage.response.withLock { $0 }
        var trailers = response.trailing
        let status: Status
        if let error {
            trailers.append(contentsOf: error.metadata)
            status = error.status
        } else {
            status = .ok
        }
        if !headersWereSent && message == nil && response.initial.isEmpty {
            outbound.sendTrailersOnly(status: status, trailers: trailers)
        } else {
            outbound.send(headers: headersWereSent ? nil : response.initial, message: message, status: status, trailers: trailers)
        }
        flow?.close(RPCError(.cancelled, "the call is over"))
    }

    // MARK: handler side

    /// The request stream of a streaming-request call.
    var requests: InboundQueue { inbound! }

    func singleRequest() -> MessageBytes {
        state.withLock { $0.single } ?? MessageBytes([])
    }

    func writeMessage(_ bytes: [UInt8]) async throws {
        try await flow?.reserve(bytes.count + 5)
        let first: Bool? = state.withLock { s in
            if s.finished { return nil }
            defer { s.headersSent = true }
            return !s.headersSent
        }
        guard let first else { throw RPCError(.cancelled, "the call is already over") }
        let headers = first ? context.storage.response.withLock { $0.initial } : nil
        outbound.send(headers: headers, message: bytes, status: nil, trailers: [:])
    }
}
