import H2RPC
import H2RPCInProcessTransport
import H2RPCNGHTTP2Transport
import Synchronization
import TestSupport
import Testing

/// A message that is its own bytes: lets core tests run without generated code.
struct Blob: RPCMessage, Equatable {
    var bytes: [UInt8]
    init() { bytes = [] }
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    init(_ text: String) { bytes = Array(text.utf8) }
    init(serializedBytes: UnsafeRawBufferPointer) throws {
        if serializedBytes.first == 0xFF { throw RPCError(.internal, "undecodable test blob") }
        bytes = Array(serializedBytes)
    }
    func serializedBytes() throws -> [UInt8] { bytes }
    var text: String { String(decoding: bytes, as: UTF8.self) }
}

enum TransportKind: String, CaseIterable, CustomTestStringConvertible {
    /// In-process transport; HTTP/2 with handlers on the global executor; HTTP/2 with
    /// handlers on the event-loop thread.
    case inProcess, http2, http2OnLoop
    var testDescription: String { rawValue }
}

/// A server and a client connected by the chosen transport.
struct Harness {
    let server: RPCServer
    let client: RPCClient
    let serverTransport: (any ServerTransport)
    let port: Int

    init(
        _ kind: TransportKind, services: [any RegistrableRPCService],
        interceptors: [any ServerInterceptor] = [], clientInterceptors: [any ClientInterceptor] = [],
        configuration: H2Configuration = H2Configuration(), observer: (any ServerCallObserver)? = nil
    ) throws {
        switch kind {
        case .inProcess:
            let pair = InProcessTransport()
            server = RPCServer(
                transport: pair.server, services: services, interceptors: interceptors, observer: observer)
            try server.start()
            client = RPCClient(transport: pair.client, interceptors: clientInterceptors)
            serverTransport = pair.server
            port = 0
        case .http2, .http2OnLoop:
            var serverConfiguration = configuration
            serverConfiguration.runHandlersOnEventLoop = kind == .http2OnLoop
            let transport = try H2ServerTransport(host: "127.0.0.1", port: 0, configuration: serverConfiguration)
            server = RPCServer(
                transport: transport, services: services, interceptors: interceptors, observer: observer)
            try server.start()
            port = transport.boundPort
            client = RPCClient(
                transport: try H2ClientTransport(host: "127.0.0.1", port: port, configuration: configuration),
                interceptors: clientInterceptors)
            serverTransport = transport
        }
    }

    func stop() async {
        client.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }
}

/// A service defined by closures, registered by hand (no generated code).
struct TestService: RegistrableRPCService {
    static let echo = MethodDescriptor(service: "test.Test", method: "Echo")
    static let fail = MethodDescriptor(service: "test.Test", method: "Fail")
    static let sleep = MethodDescriptor(service: "test.Test", method: "Sleep")
    static let split = MethodDescriptor(service: "test.Test", method: "Split")
    static let join = MethodDescriptor(service: "test.Test", method: "Join")
    static let chat = MethodDescriptor(service: "test.Test", method: "Chat")
    static let flood = MethodDescriptor(service: "test.Test", method: "Flood")
    static let nap = MethodDescriptor(service: "test.Test", method: "Nap")

    let probe: Probe

    func registerMethods(with router: inout RPCRouter) {
        let probe = self.probe
        router.registerUnary(Self.echo) { (request: Blob, context: ServerContext) -> Blob in
            if let m = context.metadata.first("x-echo-initial") {
                var md = Metadata()
                md.add("x-echo-initial", m)
                context.addInitialMetadata(md)
            }
            if let b = context.metadata.firstBinary("x-echo-trailing-bin") {
                var md = Metadata()
                md.add("x-echo-trailing-bin", binary: b)
                context.addTrailingMetadata(md)
            }
            return request
        }
        router.registerUnary(Self.fail) { (request: Blob, _: ServerContext) -> Blob in
            var md = Metadata()
            md.add("x-reason", "requested")
            throw RPCError(.failedPrecondition, "failure requested: \(request.text)", metadata: md)
        }
        router.registerUnary(Self.sleep) { (request: Blob, context: ServerContext) -> Blob in
            probe.started()
            do {
                try await Task.sleep(for: .seconds(30))
            } catch {
                probe.cancelled()
                throw error
            }
            return request
        }
        router.registerUnary(Self.nap) { (request: Blob, _: ServerContext) -> Blob in
            probe.started()
            // Long against the tests' 100 ms deadlines, so a loaded machine cannot let it finish
            // first (2 s did, once, with two CI runs and two `yes` on 2 cores).
            try await Task.sleep(for: .seconds(10))
            return request
        }
        router.registerServerStreaming(Self.split) { (request: Blob, writer: ResponseWriter<Blob>, _: ServerContext) in
            for byte in request.bytes { try await writer.write(Blob([byte])) }
        }
        router.registerClientStreaming(Self.join) { (requests: RequestStream<Blob>, _: ServerContext) -> Blob in
            var all: [UInt8] = []
            for try await r in requests { all += r.bytes }
            return Blob(all)
        }
        router.registerBidirectionalStreaming(Self.chat) {
            (requests: RequestStream<Blob>, writer: ResponseWriter<Blob>, _: ServerContext) in
            for try await r in requests { try await writer.write(Blob(r.bytes.reversed())) }
        }
        // Writes `count` messages of `size` bytes, as fast as the client lets it.
        router.registerServerStreaming(Self.flood) { (request: Blob, writer: ResponseWriter<Blob>, _: ServerContext) in
            let count = Int(request.bytes[0]) * 1000
            let payload = Blob([UInt8](repeating: 7, count: 1024))
            probe.started()
            do {
                for i in 0..<count {
                    try await writer.write(payload)
                    probe.wrote(i + 1)
                }
            } catch {
                probe.cancelled()
                throw error
            }
        }
    }
}

/// Observes handlers from tests.
final class Probe: Sendable {
    private let state = Mutex((started: 0, cancelled: 0, written: 0))
    func started() { state.withLock { $0.started += 1 } }
    func cancelled() { state.withLock { $0.cancelled += 1 } }
    func wrote(_ n: Int) { state.withLock { $0.written = n } }
    var startedCount: Int { state.withLock { $0.started } }
    var cancelledCount: Int { state.withLock { $0.cancelled } }
    var written: Int { state.withLock { $0.written } }
}
