import H2RPC
import Synchronization
import TestSupport
import Testing

/// Collects what the server reports of each call.
final class CallRecorder: ServerCallObserver {
    private let summaries = Mutex<[ServerCallSummary]>([])
    func callEnded(_ summary: ServerCallSummary) { summaries.withLock { $0.append(summary) } }
    var all: [ServerCallSummary] { summaries.withLock { $0 } }
    func first(_ method: MethodDescriptor) -> ServerCallSummary? { all.first { $0.path == method.path } }
}

/// ``ServerCallObserver``: told exactly once about every call, however it ends, with the status,
/// the peer, the duration and the payload bytes each way.
@Suite struct ObserverTests {
    @Test(arguments: TransportKind.allCases)
    func everyCallIsReportedOnce(kind: TransportKind) async throws {
        let probe = Probe()
        let recorder = CallRecorder()
        let h = try Harness(kind, services: [TestService(probe: probe)], observer: recorder)

        _ = try await h.client.unary(TestService.echo, request: Blob("ping"), responseType: Blob.self)
        let split = try await h.client.serverStreaming(TestService.split, request: Blob("abc"), responseType: Blob.self)
        for try await _ in split {}
        let chat: ClientCall<Blob, Blob> = h.client.makeCall(TestService.chat)
        try await chat.send(Blob("ab"))
        try await chat.send(Blob("cde"))
        chat.finish()
        for try await _ in chat {}
        await #expect(throws: RPCError.self) {
            _ = try await h.client.unary(TestService.fail, request: Blob("x"), responseType: Blob.self)
        }
        let unknown = MethodDescriptor(service: "no.Such", method: "Thing")
        await #expect(throws: RPCError.self) {
            _ = try await h.client.unary(unknown, request: Blob("zz"), responseType: Blob.self)
        }
        // A 10 s nap with a 100 ms deadline; a 30 s sleep the client cancels.
        await #expect(throws: RPCError.self) {
            _ = try await h.client.unary(
                TestService.nap, request: Blob(), options: CallOptions(timeout: .milliseconds(100)),
                responseType: Blob.self)
        }
        let cancelled = Task {
            try await h.client.unary(TestService.sleep, request: Blob("n"), responseType: Blob.self)
        }
        try await eventually("the sleep started") { probe.startedCount == 2 }
        cancelled.cancel()
        _ = try? await cancelled.value

        // Shutdown waits for every call to end, and a call is reported before it counts as ended.
        await h.stop()
        let all = recorder.all
        #expect(all.count == 7, "\(all.map(\.path))")
        #expect(Set(all.map(\.path)).count == 7, "each call once")
        for s in all {
            switch kind {
            case .inProcess: #expect(s.peer.wholeMatch(of: /in-process:\d+/) != nil, "\(s.peer)")
            case .http2, .http2OnLoop: #expect(s.peer.wholeMatch(of: /ipv4:127\.0\.0\.1:\d+/) != nil, "\(s.peer)")
            }
            #expect(s.duration >= .zero && s.duration < .seconds(60))
        }
        let echo = try #require(recorder.first(TestService.echo))
        #expect(echo.status.code == .ok && echo.requestBytes == 4 && echo.responseBytes == 4 && echo.context != nil)
        let splitSummary = try #require(recorder.first(TestService.split))
        #expect(splitSummary.status.code == .ok && splitSummary.requestBytes == 3 && splitSummary.responseBytes == 3)
        let chatSummary = try #require(recorder.first(TestService.chat))
        #expect(chatSummary.status.code == .ok && chatSummary.requestBytes == 5 && chatSummary.responseBytes == 5)
        let fail = try #require(recorder.first(TestService.fail))
        #expect(fail.status.code == .failedPrecondition && fail.status.message == "failure requested: x")
        let missing = try #require(recorder.first(unknown))
        #expect(missing.status.code == .unimplemented && missing.context == nil && missing.responseBytes == 0)
        let late = try #require(recorder.first(TestService.nap))
        // The server's deadline and the client's own timer race: whichever ends the call first
        // is what the server reports (its DEADLINE_EXCEEDED, or the client's reset: CANCELLED).
        // Its duration is the server's, from when the request arrived, which on a loaded machine
        // can be well after the client's timer started: no lower bound on it.
        #expect([.deadlineExceeded, .cancelled].contains(late.status.code), "\(late.status)")
        let gone = try #require(recorder.first(TestService.sleep))
        #expect(gone.status.code == .cancelled, "\(gone.status)")
    }
}
