import H2RPC
import H2RPCNGHTTP2Transport
import Testing

/// gzip and deflate over the HTTP/2 transports: requests, responses, back-pressure of highly
/// compressible streams, and the receive limit applied after inflation.
@Suite(.timeLimit(.minutes(3))) struct CompressionTests {
    /// Answers compressed as the request's first byte asks (1: gzip, 2: deflate, else none),
    /// echoing the request after it; `Stream` writes as many 64 KiB messages of zeros as its byte says.
    struct Service: RegistrableRPCService {
        static let echo = MethodDescriptor(service: "test.Compress", method: "Echo")
        static let stream = MethodDescriptor(service: "test.Compress", method: "Stream")
        static let join = MethodDescriptor(service: "test.Compress", method: "Join")

        func registerMethods(with router: inout RPCRouter) {
            router.registerUnary(Self.echo) { (request: Blob, context: ServerContext) -> Blob in
                context.responseCompression = Self.algorithm(request.bytes.first)
                return Blob([context.requestWasCompressed ? 1 : 0] + request.bytes)
            }
            router.registerServerStreaming(Self.stream) {
                (request: Blob, writer: ResponseWriter<Blob>, context: ServerContext) in
                context.responseCompression = .gzip
                for _ in 0..<Int(request.bytes[0]) {
                    try await writer.write(Blob([UInt8](repeating: 0, count: 64 << 10)))
                }
            }
            router.registerClientStreaming(Self.join) { (requests: RequestStream<Blob>, _: ServerContext) -> Blob in
                var total = 0
                for try await r in requests { total += r.bytes.count }
                return Blob(Array(String(total).utf8))
            }
        }

        static func algorithm(_ byte: UInt8?) -> CompressionAlgorithm? {
            switch byte {
            case 1: return .gzip
            case 2: return .deflate
            default: return nil
            }
        }
    }

    @Test(arguments: [TransportKind.http2, .http2OnLoop], [CompressionAlgorithm.gzip, .deflate])
    func compressedRequestsAndResponsesRoundTrip(kind: TransportKind, algorithm: CompressionAlgorithm) async throws {
        let harness = try Harness(kind, services: [Service()])
        let body = [algorithm == .gzip ? 1 : 2] + [UInt8](repeating: 42, count: 100_000)
        let call: ClientCall<Blob, Blob> = harness.client.makeCall(
            Service.echo, options: CallOptions(compression: algorithm))
        try await call.send(Blob(body))
        call.finish()
        let response = try await call.response()
        #expect(response.bytes == [1] + body, "the server saw the request compressed and echoed it")
        #expect(call.lastResponseWasCompressed)
        // One message of a compressing call sent uncompressed; the response uncompressed.
        let plain: ClientCall<Blob, Blob> = harness.client.makeCall(
            Service.echo, options: CallOptions(compression: algorithm))
        try await plain.send(Blob([0, 7]), compressed: false)
        plain.finish()
        #expect(try await plain.response().bytes == [0, 0, 7])
        #expect(!plain.lastResponseWasCompressed)
        await harness.stop()
    }

    @Test(arguments: [TransportKind.http2, .http2OnLoop])
    func highlyCompressibleStreamsDoNotStallBackPressure(kind: TransportKind) async throws {
        // 64 x 64 KiB each way, a few hundred bytes each on the wire: back-pressure counts the
        // uncompressed bytes it reserved (over 256 KiB queued, a writer waits), or the writers
        // would wait for ever after the fifth message.
        let harness = try Harness(kind, services: [Service()])
        var received = 0
        for try await message in try await harness.client.serverStreaming(
            Service.stream, request: Blob([64]), responseType: Blob.self)
        {
            received += message.bytes.count
        }
        #expect(received == 64 * (64 << 10))
        let join: ClientCall<Blob, Blob> = harness.client.makeCall(
            Service.join, options: CallOptions(compression: .gzip))
        for _ in 0..<64 { try await join.send(Blob([UInt8](repeating: 0, count: 64 << 10))) }
        join.finish()
        #expect(try await join.response().text == String(64 * (64 << 10)))
        await harness.stop()
    }

    @Test func aResponseThatInflatesPastTheClientLimitIsResourceExhausted() async throws {
        // 64 KiB of zeros, a few hundred bytes of gzip on the wire, against a 1000-byte limit.
        let harness = try Harness(
            .http2, services: [Service()], configuration: H2Configuration(maxReceiveMessageSize: 1000))
        let call = try await harness.client.serverStreaming(Service.stream, request: Blob([1]), responseType: Blob.self)
        let error = await #expect(throws: RPCError.self) {
            for try await _ in call {}
        }
        #expect(error?.code == .resourceExhausted)
        let (status, _) = await call.status()
        #expect(status.code == .resourceExhausted, "\(status)")
        #expect(status.message.contains("a response message inflates (gzip) past the limit of 1000 bytes"), "\(status)")
        await harness.stop()
    }

    @Test func aMessageThatInflatesPastTheMethodLimitIsResourceExhausted() async throws {
        let transport = try H2ServerTransport(host: "127.0.0.1", port: 0)
        let server = RPCServer(
            transport: transport, services: [Service()],
            limits: ServerCallLimits(maxRequestMessageSize: 1000))
        try server.start()
        let client = RPCClient(transport: try H2ClientTransport(host: "127.0.0.1", port: transport.boundPort))
        for method in [Service.echo, Service.join] {
            // 128 KiB of zeros is about 600 bytes of gzip (level 1): within the limit on the wire only.
            let call: ClientCall<Blob, Blob> = client.makeCall(method, options: CallOptions(compression: .gzip))
            try await call.send(Blob([UInt8](repeating: 0, count: 1 << 17)))
            call.finish()
            let (status, _) = await call.status()
            #expect(status.code == .resourceExhausted, "\(method): \(status)")
            #expect(status.message.contains("past the limit of 1000 bytes"), "\(method): \(status)")
        }
        client.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }
}
