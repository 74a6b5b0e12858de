import H2RPC
import H2RPCHealth
import Synchronization
import TestSupport
import Testing

/// The server's limits on calls, driven through a fake transport that delivers request parts one
/// at a time (a real client always completes its request): head checks at the headers, the
/// deadline and the request timeout armed from the headers, the held-bytes budget, per-method
/// message limits, and decode failures that carry their own status.
@Suite struct CallLimitsTests {
    /// A server on the fake transport; `open` starts one stream.
    struct Rig {
        let server: RPCServer
        let transport = FakeServerTransport()

        init(
            interceptors: [any ServerInterceptor] = [], limits: ServerCallLimits = ServerCallLimits(),
            services: [any RegistrableRPCService]? = nil
        ) throws {
            server = RPCServer(
                transport: transport, services: services ?? [TestService(probe: Probe())], interceptors: interceptors,
                limits: limits)
            try server.start()
        }

        /// Sends the headers of a call to `method`; returns its stream.
        func open(
            _ method: MethodDescriptor, timeout: RequestHead.Timeout = .none, metadata: Metadata = [:]
        ) -> FakeStream {
            let outbound = RecordingOutbound()
            let head = RequestHead(path: method.path, metadata: metadata, timeout: timeout, peer: "test")
            let call = transport.acceptor.withLock { $0 }!.accept(head, outbound: outbound)
            return FakeStream(call: call, outbound: outbound)
        }

        func stop() async { await server.shutdown(gracePeriod: .milliseconds(100)) }
    }

    @Test func aHeadCheckRejectsTheCallBeforeAnyMessageIsSent() async throws {
        let rig = try Rig(interceptors: [TokenCheck()])
        let stream = rig.open(TestService.echo)
        let status = try await stream.status()
        #expect(status.code == .unauthenticated)
        // What the client sends afterwards is dropped, not held.
        stream.send(MessageBytes([UInt8](repeating: 1, count: 1000)))
        stream.end()
        #expect(rig.server.pendingCalls.calls == 0 && rig.server.pendingCalls.heldBytes == 0)
        #expect(stream.outbound.statusCount == 1, "one status, nothing after it")
        await rig.stop()
    }

    @Test func anAcceptedHeadHandsItsFindingsToInterceptAndTheCallRuns() async throws {
        let rig = try Rig(interceptors: [TokenCheck()])
        var md = Metadata()
        md.add("x-token", "alice")
        let stream = rig.open(TestService.echo, metadata: md)
        stream.send(MessageBytes(Array("hi".utf8)))
        stream.end()
        let status = try await stream.status()
        #expect(status.code == .ok)
        #expect(stream.outbound.messages.first.map { String(decoding: $0, as: UTF8.self) } == "hi")
        #expect(stream.outbound.initialMetadata.first("x-principal") == "alice", "intercept saw the attachment")
        await rig.stop()
    }

    @Test func grpcTimeoutIsArmedAtTheHeadersOfAnIncompleteRequest() async throws {
        let rig = try Rig()
        let stream = rig.open(TestService.echo, timeout: .valid(.milliseconds(200)))
        stream.send(MessageBytes([1, 2, 3]))  // and never ends the request
        let status = try await stream.status()
        #expect(status.code == .deadlineExceeded)
        // The call's own deadline ended it, not the request timeout (the other DEADLINE_EXCEEDED).
        #expect(!status.message.contains("did not start within"), "\(status.message)")
        #expect(rig.server.pendingCalls.calls == 0 && rig.server.pendingCalls.heldBytes == 0)
        await rig.stop()
    }

    @Test func aRequestNotCompleteWithinTheRequestTimeoutEnds() async throws {
        let rig = try Rig(limits: ServerCallLimits(requestTimeout: .milliseconds(300)))
        let stream = rig.open(TestService.echo)
        stream.send(MessageBytes([1, 2, 3]))
        #expect(rig.server.pendingCalls == (1, 3))
        let status = try await stream.status()
        #expect(status.code == .deadlineExceeded)
        #expect(status.message.contains("not complete"))
        #expect(rig.server.pendingCalls.calls == 0 && rig.server.pendingCalls.heldBytes == 0)
        #expect(rig.server.activeCalls == 0)
        await rig.stop()
    }

    @Test func pastTheHeldBytesBudgetTheOldestIncompleteRequestEnds() async throws {
        let rig = try Rig(limits: ServerCallLimits(maxHeldRequestBytes: 1000))
        let first = rig.open(TestService.echo)
        first.send(MessageBytes([UInt8](repeating: 1, count: 600)))
        let second = rig.open(TestService.echo)
        second.send(MessageBytes([UInt8](repeating: 2, count: 600)))
        let evicted = try await first.status()
        #expect(evicted.code == .resourceExhausted)
        #expect(rig.server.pendingCalls == (1, 600))
        second.end()
        #expect(try await second.status().code == .ok)
        await rig.stop()
    }

    @Test func aPerMethodLimitRejectsALargerMessageNamingTheLimit() async throws {
        let limits = ServerCallLimits(
            maxRequestMessageSize: 10, maxRequestMessageSizeByMethod: [TestService.join.path: 100])
        let rig = try Rig(limits: limits)
        let small = rig.open(TestService.echo)
        small.send(MessageBytes([UInt8](repeating: 1, count: 11)))
        let status = try await small.status()
        #expect(status.code == .resourceExhausted)
        #expect(status.message.contains("limit of 10 bytes of \(TestService.echo.path)"))
        // The override: 50 bytes pass where 10 would not, 101 do not.
        let join = rig.open(TestService.join)
        join.send(MessageBytes([UInt8](repeating: 1, count: 50)))
        join.end()
        #expect(try await join.status().code == .ok)
        let big = rig.open(TestService.join)
        big.send(MessageBytes([UInt8](repeating: 1, count: 101)))
        #expect(try await big.status().code == .resourceExhausted)
        await rig.stop()
    }

    @Test func aStringThatIsNotUTF8IsInvalidArgumentNamingTheField() async throws {
        let rig = try Rig(services: [HealthService()])
        let stream = rig.open(MethodDescriptor(service: "grpc.health.v1.Health", method: "Check"))
        stream.send(MessageBytes([0x0A, 0x03, 0x61, 0x00, 0x62]))  // service = "a\0b"
        stream.end()
        let status = try await stream.status()
        #expect(status.code == .invalidArgument)
        #expect(status.message.contains("'service'"))
        await rig.stop()
    }

    @Test func tooManyUnknownFieldsIsResourceExhausted() async throws {
        let rig = try Rig(services: [HealthService()])
        let stream = rig.open(MethodDescriptor(service: "grpc.health.v1.Health", method: "Check"))
        // Field 15, varint 0, 10,000 times: 20 KB that protobuf-c would keep as 10,000 allocations.
        stream.send(MessageBytes([UInt8]([0x78, 0x00].repeated(10_000))))
        stream.end()
        let status = try await stream.status()
        #expect(status.code == .resourceExhausted)
        #expect(status.message.contains("more than 1000 unknown fields"))
        // Under the limit, unknown fields are accepted (and skipped).
        let fine = rig.open(MethodDescriptor(service: "grpc.health.v1.Health", method: "Check"))
        fine.send(MessageBytes([UInt8]([0x78, 0x00].repeated(1000))))
        fine.end()
        #expect(try await fine.status().code == .ok)
        await rig.stop()
    }
}

extension Array {
    fileprivate func repeated(_ times: Int) -> [Element] {
        (0..<times).flatMap { _ in self }
    }
}

/// Rejects calls without `x-token` from the head; binds the token as `x-principal` initial
/// metadata in `intercept` (from the attachment `checkHead` set).
struct TokenCheck: ServerHeadInterceptor {
    struct Token: Sendable { let value: String }

    func checkHead(context: ServerContext) async throws {
        guard let token = context.metadata.first("x-token") else {
            throw RPCError(.unauthenticated, "no x-token")
        }
        await Task.yield()  // a check that suspends, like a database lookup
        context.setAttachment(Token(value: token))
    }

    func intercept(context: ServerContext, next: () async throws -> Void) async throws {
        guard let token = context.attachment(Token.self) else {
            throw RPCError(.internal, "intercept ran without the head check's attachment")
        }
        var md = Metadata()
        md.add("x-principal", token.value)
        context.addInitialMetadata(md)
        try await next()
    }
}

/// A transport whose streams the test drives by hand.
final class FakeServerTransport: ServerTransport {
    let acceptor = Mutex<(any ServerCallAcceptor)?>(nil)
    func start(acceptor: any ServerCallAcceptor) throws { self.acceptor.withLock { $0 = acceptor } }
    func beginGracefulShutdown() {}
    func stop() {}
}

/// One stream of the fake transport.
struct FakeStream {
    let call: ServerCall?
    let outbound: RecordingOutbound

    func send(_ message: MessageBytes) { call?.receive(.message(message)) }
    func end() { call?.receive(.end) }

    /// The call's status, once written (waited for as an event: the 120 s of `eventually` only
    /// catch a hang, so a loaded machine cannot fail the test).
    func status() async throws -> Status {
        try await eventually("the call's status") { outbound.status != nil }
        return outbound.status!
    }
}

/// Records what a call writes.
final class RecordingOutbound: ServerStreamOutbound {
    private let parts = Mutex<[RPCResponsePart]>([])

    func write(_ first: RPCResponsePart, _ second: RPCResponsePart?, _ third: RPCResponsePart?) {
        parts.withLock { $0 += [first, second, third].compactMap { $0 } }
    }
    func reset() {}
    func consume(_ bytes: Int) {}

    var status: Status? {
        parts.withLock { parts in
            for part in parts {
                switch part {
                case .status(let s, _), .trailersOnly(let s, _): return s
                default: continue
                }
            }
            return nil
        }
    }

    var statusCount: Int {
        parts.withLock { parts in
            parts.filter {
                switch $0 {
                case .status, .trailersOnly: return true
                default: return false
                }
            }.count
        }
    }

    var messages: [[UInt8]] {
        parts.withLock { parts in
            parts.compactMap {
                if case .message(let m) = $0 { return m.array }
                return nil
            }
        }
    }

    var initialMetadata: Metadata {
        parts.withLock { parts in
            for part in parts { if case .metadata(let m) = part { return m } }
            return [:]
        }
    }
}
