import Synchronization

/// Outbound back-pressure for one stream: writers wait while more than `highWater`
/// bytes are queued in the transport, and resume when it drains below `lowWater`.
/// This bounds the memory a slow reader can pin to roughly `highWater` + one message.
/// Writers reserve message bytes; a transport reports what it drained, framing included if it
/// cannot tell it apart, so the marks are approximate by a few bytes per message.
final class OutboundFlow: Sendable {
    static let highWater = 256 * 1024
    static let lowWater = 64 * 1024

    private struct State {
        var inFlight = 0
        var closed: RPCError? = nil
        var waiters: [(id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextWaiter = 0
    }
    private let state = Mutex(State())

    /// Counts `bytes` as queued, first waiting while the queue is above the high-water mark.
    func reserve(_ bytes: Int) async throws {
        enum Decision {
            case go, wait
            case closed(RPCError)
        }
        let decision: Decision = state.withLock { s in
            if let err = s.closed { return .closed(err) }
            if s.inFlight <= OutboundFlow.highWater {
                s.inFlight += bytes
                return .go
            }
            return .wait
        }
        switch decision {
        case .go: return
        case .closed(let err): throw err
        case .wait:
            let id = state.withLock { s -> Int in
                s.nextWaiter += 1
                return s.nextWaiter
            }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                    let immediate: (any Error)?? = state.withLock { s in
                        if let err = s.closed { return .some(err) }
                        if Task.isCancelled { return .some(CancellationError()) }
                        if s.inFlight <= OutboundFlow.lowWater { return .some(nil) }
                        s.waiters.append((id, c))
                        return .none
                    }
                    if let immediate {
                        if let err = immediate { c.resume(throwing: err) } else { c.resume() }
                    }
                }
            } onCancel: {
                let c = state.withLock { s -> CheckedContinuation<Void, any Error>? in
                    guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return s.waiters.remove(at: i).continuation
                }
                c?.resume(throwing: CancellationError())
            }
            state.withLock { $0.inFlight += bytes }
        }
    }

    /// The transport handed `bytes` to the socket.
    func drained(_ bytes: Int) {
        let ready = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            s.inFlight = max(0, s.inFlight - bytes)
            guard s.inFlight <= OutboundFlow.lowWater, !s.waiters.isEmpty else { return [] }
            defer { s.waiters.removeAll() }
            return s.waiters.map(\.continuation)
        }
        for c in ready { c.resume() }
    }

    /// The stream ended: wake every writer with `error`.
    func close(_ error: RPCError) {
        let waiting = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            if s.closed == nil { s.closed = error }
            defer { s.waiters.removeAll() }
            return s.waiters.map(\.continuation)
        }
        for c in waiting { c.resume(throwing: error) }
    }
}

/// Inbound messages of one stream, fed by the transport and read by one consumer.
/// Each message taken releases its bytes to the transport (`onConsume`, message bytes without
/// framing), which reopens the peer's flow-control window: a slow reader slows the sender.
final class InboundQueue: Sendable {
    private struct State {
        var messages: [MessageBytes] = []
        var head = 0
        var ended = false
        var error: RPCError? = nil
        var waiter: CheckedContinuation<MessageBytes?, any Error>? = nil

        enum Step {
            case message(MessageBytes)
            case end
            case failed(RPCError)
            case empty
        }

        /// What a reader gets now; a message taken leaves the queue (compacted when drained).
        mutating func take() -> Step {
            if let e = error { return .failed(e) }
            guard head < messages.count else { return ended ? .end : .empty }
            let m = messages[head]
            head += 1
            if head == messages.count {
                messages.removeAll(keepingCapacity: true)
                head = 0
            }
            return .message(m)
        }
    }
    private let state = Mutex(State())
    private let onConsume: @Sendable (Int) -> Void

    init(onConsume: @escaping @Sendable (Int) -> Void) {
        self.onConsume = onConsume
    }

    /// Transport: one message arrived.
    func push(_ message: MessageBytes) {
        enum Outcome {
            case handed(CheckedContinuation<MessageBytes?, any Error>)
            case queued, dropped
        }
        let outcome = state.withLock { s -> Outcome in
            if s.error != nil { return .dropped }
            if let w = s.waiter {
                s.waiter = nil
                return .handed(w)
            }
            s.messages.append(message)
            return .queued
        }
        switch outcome {
        case .handed(let waiter):
            onConsume(message.count)
            waiter.resume(returning: message)
        case .dropped:
            // Nobody will read it: release its window at once instead of holding it.
            onConsume(message.count)
        case .queued:
            break
        }
    }

    /// Transport: the peer half-closed.
    func finish() {
        let waiter = state.withLock { s -> CheckedContinuation<MessageBytes?, any Error>? in
            s.ended = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// Transport or call: the stream failed; the reader gets `error` at once (the call is over).
    func fail(_ error: RPCError) {
        let waiter = state.withLock { s -> CheckedContinuation<MessageBytes?, any Error>? in
            if s.error == nil { s.error = error }
            s.messages.removeAll()
            s.head = 0
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(throwing: error)
    }

    /// The next message, or nil once the peer half-closed.
    func next() async throws -> MessageBytes? {
        switch state.withLock({ $0.take() }) {
        case .message(let m):
            onConsume(m.count)
            return m
        case .end: return nil
        case .failed(let e): throw e
        case .empty:
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (c: CheckedContinuation<MessageBytes?, any Error>) in
                    if Task.isCancelled { return c.resume(throwing: CancellationError()) }
                    // Checked again under the lock that parks the reader, so no push is missed.
                    let step = state.withLock { s -> State.Step? in
                        let step = s.take()
                        if case .empty = step {
                            s.waiter = c
                            return nil
                        }
                        return step
                    }
                    switch step {
                    case .message(let m)?:
                        onConsume(m.count)
                        c.resume(returning: m)
                    case .end?: c.resume(returning: nil)
                    case .failed(let e)?: c.resume(throwing: e)
                    case .empty?, nil: break
                    }
                }
            } onCancel: {
                let w = state.withLock { s -> CheckedContinuation<MessageBytes?, any Error>? in
                    defer { s.waiter = nil }
                    return s.waiter
                }
                w?.resume(throwing: CancellationError())
            }
        }
    }
}
