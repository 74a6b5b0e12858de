/// The life of one server call as one value: which phase it is in, and what each event does to
/// it. ``ServerCall`` keeps it under its lock; every transition is a pure function of the phase,
/// so it is unit-tested directly.
///
/// A call's handler starts once its head is accepted (the interceptors' head checks passed; at
/// once when there are none) and, for a unary or server-streaming call, its request ended.
/// A call is over ("ended", counted out of the server's active calls) when its outcome is
/// settled (status sent, or the stream closed) and its handler never started or returned.
/// Exactly one transition reports `callEnded == true`, whatever the order of events.
struct ServerCallState {
    /// A call whose handler has not started.
    struct Pending {
        /// The request message of a single-request call (nil until it arrives).
        var message: MessageBytes? = nil
        /// The client half-closed the request stream.
        var requestEnded = false
        /// The head checks passed.
        var headAccepted: Bool
    }

    /// Where the call is.
    enum Phase {
        /// The handler has not started: the head is being checked, or a unary or
        /// server-streaming call is collecting its one request message.
        case pending(Pending)
        /// The handler runs and the call is open; `headersSent`: the response headers went out.
        case running(headersSent: Bool)
        /// The outcome is settled (status sent, or the stream closed), the handler still runs.
        case closing
        /// Over, and accounted for once.
        case ended
    }

    /// The current phase.
    private(set) var phase: Phase
    /// Whether the handler starts before the request stream ends (client and bidi streaming).
    let streamsRequests: Bool

    /// A call of a method that streams its requests or not, whose head is accepted already (no
    /// head checks) or not.
    init(streamsRequests: Bool = false, headAccepted: Bool = true) {
        self.streamsRequests = streamsRequests
        phase = .pending(Pending(headAccepted: headAccepted))
    }

    /// What a received request message of a single-request call did.
    enum Received: Equatable {
        /// Kept for the handler.
        case stored
        /// A second message: the call must fail.
        case duplicate
        /// The call is already past collecting its request.
        case ignored
    }

    /// A request message arrived (calls that take one request).
    mutating func receiveRequest(_ message: MessageBytes) -> Received {
        switch phase {
        case .pending(var p):
            if p.message != nil { return .duplicate }
            p.message = message
            phase = .pending(p)
            return .stored
        case .running, .closing, .ended:
            return .ignored
        }
    }

    /// What a start attempt decided.
    enum Start {
        /// Run the handler (with the request message, if the call took one).
        case run(MessageBytes?)
        /// The request stream ended without the message the call needs: the call must fail.
        case missingRequest
        /// Nothing to start (not yet, started already, or over).
        case none
    }

    /// The client half-closed the request stream: a single-request call whose head is accepted
    /// starts.
    mutating func requestEnded() -> Start {
        guard case .pending(var p) = phase else { return .none }
        p.requestEnded = true
        phase = .pending(p)
        return startIfReady()
    }

    /// The head checks passed: a streaming-request call starts, a single-request call starts if
    /// its request ended already.
    mutating func acceptHead() -> Start {
        guard case .pending(var p) = phase else { return .none }
        p.headAccepted = true
        phase = .pending(p)
        return startIfReady()
    }

    private mutating func startIfReady() -> Start {
        guard case .pending(let p) = phase, p.headAccepted, streamsRequests || p.requestEnded else { return .none }
        if !streamsRequests && p.message == nil { return .missingRequest }
        phase = .running(headersSent: false)
        return .run(p.message)
    }

    /// Whether the handler has not started yet (and the call is not over).
    var isPending: Bool {
        if case .pending = phase { return true }
        return false
    }

    /// A response message is to be written: nil if the call is over, else whether the response
    /// headers must go first.
    mutating func writeMessage() -> Bool? {
        guard case .running(let headersSent) = phase else { return nil }
        phase = .running(headersSent: true)
        return !headersSent
    }

    /// What `finish` decided.
    struct Finish: Equatable {
        /// Whether the response headers went out before (else they go with the status, or the
        /// answer is Trailers-Only).
        var headersSent: Bool
        /// Whether the call is over now.
        var callEnded: Bool
    }

    /// The call's status is to be sent: nil if its outcome is settled already.
    mutating func finish() -> Finish? {
        switch phase {
        case .pending:
            phase = .ended
            return Finish(headersSent: false, callEnded: true)
        case .running(let headersSent):
            phase = .closing
            return Finish(headersSent: headersSent, callEnded: false)
        case .closing, .ended:
            return nil
        }
    }

    /// The stream closed (the call's status went out, or the peer reset it, or the connection
    /// was lost). Returns whether the call is over now.
    mutating func streamClosed() -> Bool {
        switch phase {
        case .pending:
            phase = .ended
            return true
        case .running:
            phase = .closing
            return false
        case .closing, .ended:
            return false
        }
    }

    /// The handler returned. Returns whether the call is over now.
    mutating func handlerReturned() -> Bool {
        switch phase {
        case .running, .closing:
            phase = .ended
            return true
        case .pending, .ended:
            return false
        }
    }

    /// Whether the call is past sending its status (settled or over).
    var isSettled: Bool {
        switch phase {
        case .closing, .ended: return true
        case .pending, .running: return false
        }
    }

    /// Whether the call is over.
    var isEnded: Bool {
        if case .ended = phase { return true }
        return false
    }
}
