import Testing

@testable import H2RPC

/// `ServerCallState` on its own: every order of events reports "call ended" exactly once.
@Suite struct ServerCallStateTests {
    /// The events a call can see, applied to the state; returns whether that one ended the call.
    enum Event: CaseIterable, CustomTestStringConvertible {
        case request, start, write, finish, close, handlerReturned
        var testDescription: String { "\(self)" }

        func apply(_ state: inout ServerCallState, handlerStarted: inout Bool) -> Bool {
            switch self {
            case .request:
                _ = state.receiveRequest(MessageBytes([1]))
                return false
            case .start:
                if case .run = state.acceptHead() { handlerStarted = true }
                return false
            case .write:
                _ = state.writeMessage()
                return false
            case .finish:
                return state.finish()?.callEnded ?? false
            case .close:
                return state.streamClosed()
            case .handlerReturned:
                // Only a handler that started can return.
                return handlerStarted ? state.handlerReturned() : false
            }
        }
    }

    @Test func unaryCallEndsOnceWhenTheHandlerReturns() {
        var s = ServerCallState()
        check(s.receiveRequest(MessageBytes([1, 2])) == .stored)
        guard case .run(let request?) = s.requestEnded() else {
            Issue.record("the handler should start with its request")
            return
        }
        #expect(request.count == 2)
        check(s.finish() == .init(headersSent: false, callEnded: false))
        check(s.finish() == nil, "the status is sent once")
        check(!s.streamClosed(), "the close after the status ends nothing")
        check(s.handlerReturned())
        #expect(s.isEnded)
    }

    @Test func aSecondRequestMessageIsADuplicate() {
        var s = ServerCallState()
        check(s.receiveRequest(MessageBytes([1])) == .stored)
        check(s.receiveRequest(MessageBytes([2])) == .duplicate)
        // The call fails before any handler: the failure's status ends it.
        check(s.finish() == .init(headersSent: false, callEnded: true))
        check(s.receiveRequest(MessageBytes([3])) == .ignored)
        if case .none = s.requestEnded() {} else { Issue.record("an ended call does not start") }
    }

    @Test func aMissingRequestIsReportedAndStartsNothing() {
        var s = ServerCallState()
        guard case .missingRequest = s.requestEnded() else {
            Issue.record("expected missingRequest")
            return
        }
        check(s.finish()?.callEnded == true)
    }

    @Test func headersAreSentWithTheFirstMessageOnly() {
        var s = ServerCallState(streamsRequests: true)
        _ = s.acceptHead()
        check(s.writeMessage() == true)
        check(s.writeMessage() == false)
        check(s.finish() == .init(headersSent: true, callEnded: false))
        check(s.writeMessage() == nil, "no message after the status")
    }

    @Test func aClosedStreamBeforeTheHandlerEndsTheCallAtOnce() {
        var s = ServerCallState()
        check(s.streamClosed())
        check(s.finish() == nil)
        check(!s.handlerReturned())
    }

    @Test func aCancelledCallEndsWhenItsHandlerReturns() {
        var s = ServerCallState(streamsRequests: true)
        _ = s.acceptHead()
        check(!s.streamClosed())
        #expect(s.isSettled && !s.isEnded)
        check(s.finish() == nil, "no status on a closed stream")
        check(s.handlerReturned())
    }

    @Test func aSingleRequestCallStartsOnceItsHeadIsAcceptedAndItsRequestEnded() {
        // Request first, head check after.
        var s = ServerCallState(streamsRequests: false, headAccepted: false)
        check(s.receiveRequest(MessageBytes([7])) == .stored)
        if case .none = s.requestEnded() {} else { Issue.record("the head is not accepted yet") }
        #expect(s.isPending)
        guard case .run(let request?) = s.acceptHead() else {
            Issue.record("the accepted head starts the complete call")
            return
        }
        #expect(request.count == 1 && !s.isPending)
        // Head check first, request after.
        var t = ServerCallState(streamsRequests: false, headAccepted: false)
        if case .none = t.acceptHead() {} else { Issue.record("the request is not complete yet") }
        check(t.receiveRequest(MessageBytes([8])) == .stored)
        guard case .run = t.requestEnded() else {
            Issue.record("the complete request starts the accepted call")
            return
        }
    }

    @Test func aCallRejectedByItsHeadCheckEndsAtOnceAndNeverStarts() {
        var s = ServerCallState(streamsRequests: false, headAccepted: false)
        check(s.receiveRequest(MessageBytes([1])) == .stored)
        check(s.finish() == .init(headersSent: false, callEnded: true))
        check(s.receiveRequest(MessageBytes([2])) == .ignored, "later messages are dropped")
        if case .none = s.requestEnded() {} else { Issue.record("an ended call does not start") }
        if case .none = s.acceptHead() {} else { Issue.record("an ended call does not start") }
    }

    @Test func aStreamingCallWithoutHeadChecksStartsWithoutItsRequest() {
        var s = ServerCallState(streamsRequests: true, headAccepted: false)
        guard case .run(nil) = s.acceptHead() else {
            Issue.record("a streaming-request call starts at once")
            return
        }
    }

    /// Every permutation of the six events: exactly one reports the end, provided the call did end
    /// (its outcome settled, and its handler returned or never started).
    @Test func everyOrderOfEventsEndsTheCallExactlyOnce() {
        func permutations(_ items: [Event]) -> [[Event]] {
            if items.count <= 1 { return [items] }
            return items.indices.flatMap { i -> [[Event]] in
                var rest = items
                let head = rest.remove(at: i)
                return permutations(rest).map { [head] + $0 }
            }
        }
        for order in permutations(Event.allCases) {
            var s = ServerCallState(streamsRequests: true, headAccepted: false)
            var started = false
            var ends = 0
            for event in order where event.apply(&s, handlerStarted: &started) { ends += 1 }
            #expect(ends == (s.isEnded ? 1 : 0), "\(order)")
            // A started handler returns before `handlerReturned` in the order only if it came later;
            // either way, once both the outcome and the handler are done the call ended.
            if !started || order.firstIndex(of: .handlerReturned)! > order.firstIndex(of: .start)! {
                #expect(s.isEnded, "\(order)")
            }
        }
    }
}

/// `#expect` for a condition that calls a mutating method (the macro cannot capture `inout`).
private func check(_ condition: Bool, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(condition, comment, sourceLocation: sourceLocation)
}
