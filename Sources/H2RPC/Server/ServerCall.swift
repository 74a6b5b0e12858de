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
    private let state = Mutex(State())

    private struct State {
        var finished = false
        var headersSent = false
        var started = false
        var single: MessageBytes? = nil
        var received = 0
        var accounted = false
        var task: Task<Void, Never>? = nil
        var deadlineTask: Task<Void, Never>? = nil
    }

    init(context: ServerContext, route: Route, outbound: any ServerStreamOutbound, dispatcher: ServerDispatcher,
         executor: (any TaskExecutor)?) {
        self.executor = executor
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
        } else {
            let ok = state.withLock { $0.received == 1 && !$0.finished }
            if ok {
                start()
            } else if state.withLock({ $0.received == 0 }) {
                fail(RPCError(.internal, "\(route.descriptor.path) takes one request message, received none"))
            }
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
        let (task, timer) = state.withLock { s -> (Task<Void, Never>?, Task<Void, Never>?) in
            s.finished = true
            return (s.task, s.deadlineTask)
        }
        timer?.cancel()
        let error = RPCError(.cancelled, "the client cancelled the call")
        inbound?.fail(error)
        flow?.close(error)
        if cancelled { task?.cancel() }
        endIfNeverStarted()
    }

    /// Tells the dispatcher the call is over, exactly once: from `run` when a handler
    /// started, otherwise when the call finished without one.
    private func markEnded() {
        let first = state.withLock { s -> Bool in
            defer { s.accounted = true }
            return !s.accounted
        }
        if first { dispatcher.callEnded() }
    }

    private func endIfNeverStarted() {
        if state.withLock({ !$0.started }) { markEnded() }
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
        let task = Task(executorPreference: executor) { await self.run() }
        let alreadyDone = state.withLock { s -> Bool in
            s.task = task
            return s.finished
        }
        if alreadyDone { task.cancel() }
    }

    private func run() async {
        do {
            try await dispatcher.intercept(context) {
                switch self.route.handler {
                case .unary(let handler):
                    let request = self.singleRequest()
                    let response = try await handler(request, self.context)
                    self.finish(message: response, error: nil)
                case .streaming(let handler):
                    try await handler(self)
                    self.finish(message: nil, error: nil)
                }
            }
        } catch {
            finish(message: nil, error: RPCError.from(error))
        }
        state.withLock { $0.deadlineTask }?.cancel()
        markEnded()
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
        endIfNeverStarted()
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
        let response = context.response.state.withLock { $0 }
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
        let headers = first ? context.response.state.withLock { $0.initial } : nil
        outbound.send(headers: headers, message: bytes, status: nil, trailers: [:])
    }
}
