/// The life of one server call as one value: which phase it is in, and what each event does to
/// it. ``ServerCall`` keeps it under its lock; every transition is a pure function of the phase,
/// so it is unit-tested directly.
///
/// A call is over ("ended", counted out of the server's active calls) when its outcome is
/// settled (status sent, or the stream closed) and its handler never started or returned.
/// Exactly one transition reports `callEnded == true`, whatever the order of events.
struct ServerCallState {
    /// Where the call is.
    enum Phase {
        /// The handler has not started: a unary or server-streaming call collecting its one
        /// request message (nil until it arrives).
        case awaitingRequest(MessageBytes?)
        /// The handler runs and the call is open; `headersSent`: the response headers went out.
        case running(headersSent: Bool)
        /// The outcome is settled (status sent, or the stream closed), the handler still runs.
        case closing
        /// Over, and accounted for once.
        case ended
    }

    /// The current phase.
    private(set) var phase: Phase = .awaitingRequest(nil)

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
        case .awaitingRequest(nil):
            phase = .awaitingRequest(message)
            return .stored
        case .awaitingRequest(.some):
            return .duplicate
        case .running, .closing, .ended:
            return .ignored
        }
    }

    /// What `start` decided.
    enum Start {
        /// Run the handler (with the request message, if the call took one).
        case run(MessageBytes?)
        /// The request stream ended without the message the call needs: the call must fail.
        case missingRequest
        /// Nothing to start (started already, or over).
        case none
    }

    /// The handler is to start: at once for streaming-request calls, at the end of the request
    /// stream for the others (`requiresRequest`).
    mutating func start(requiresRequest: Bool) -> Start {
        guard case .awaitingRequest(let message) = phase else { return .none }
        if requiresRequest && message == nil { return .missingRequest }
        phase = .running(headersSent: false)
        return .run(message)
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
        case .awaitingRequest:
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
        case .awaitingRequest:
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
        case .awaitingRequest, .ended:
            return false
        }
    }

    /// Whether the call is past sending its status (settled or over).
    var isSettled: Bool {
        switch phase {
        case .closing, .ended: return true
        case .awaitingRequest, .running: return false
        }
    }

    /// Whether the call is over.
    var isEnded: Bool {
        if case .ended = phase { return true }
        return false
    }
}
