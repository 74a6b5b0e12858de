import GeneratedProtos
import H2RPC

/// A client interop test failed: what was expected and what happened.
public struct InteropTestFailure: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public var description: String

    /// Creates a failure.
    public init(_ description: String) {
        self.description = description
    }
}

/// The client test cases of grpc's interop specification (doc/interop-test-descriptions.md,
/// "Client" section) that need neither TLS nor credentials.
///
/// Each case asserts exactly what the specification asserts, and throws an
/// `InteropTestFailure` (or the unexpected `RPCError`) when an assertion does not hold.
public enum InteropTestCase: String, CaseIterable, Sendable {
    /// EmptyCall with an empty request returns an empty response.
    case emptyUnary = "empty_unary"
    /// UnaryCall with a 271828-byte payload returns a 314159-byte payload.
    case largeUnary = "large_unary"
    /// StreamingInputCall with four payloads returns their total size, 74922.
    case clientStreaming = "client_streaming"
    /// StreamingOutputCall returns four responses of the requested sizes.
    case serverStreaming = "server_streaming"
    /// FullDuplexCall: four request/response round trips.
    case pingPong = "ping_pong"
    /// FullDuplexCall with no requests returns no responses and OK.
    case emptyStream = "empty_stream"
    /// Initial and binary trailing metadata are echoed on a unary and a full-duplex call.
    case customMetadata = "custom_metadata"
    /// A requested status code and message come back on a unary and a full-duplex call.
    case statusCodeAndMessage = "status_code_and_message"
    /// A status message with whitespace and non-ASCII characters survives the round trip.
    case specialStatusMessage = "special_status_message"
    /// `grpc.testing.TestService/UnimplementedCall` returns UNIMPLEMENTED.
    case unimplementedMethod = "unimplemented_method"
    /// `grpc.testing.UnimplementedService/UnimplementedCall` returns UNIMPLEMENTED.
    case unimplementedService = "unimplemented_service"
    /// A StreamingInputCall cancelled before any message ends CANCELLED.
    case cancelAfterBegin = "cancel_after_begin"
    /// A FullDuplexCall cancelled after its first response ends CANCELLED.
    case cancelAfterFirstResponse = "cancel_after_first_response"
    /// A FullDuplexCall with a 1 ms timeout ends DEADLINE_EXCEEDED.
    case timeoutOnSleepingServer = "timeout_on_sleeping_server"
    /// UnaryCall with a gzip-compressed request, then an uncompressed one (`expect_compressed`).
    case clientCompressedUnary = "client_compressed_unary"
    /// UnaryCall asking for a compressed response, then an uncompressed one.
    case serverCompressedUnary = "server_compressed_unary"
    /// StreamingInputCall: a compressed request message, then an uncompressed one.
    case clientCompressedStreaming = "client_compressed_streaming"
    /// StreamingOutputCall: a compressed response message, then an uncompressed one.
    case serverCompressedStreaming = "server_compressed_streaming"

    /// The case's name on the command line (`--test_case`).
    public var name: String { rawValue }

    /// Runs the case against the server behind `client`; throws if any assertion fails.
    public func run(client: RPCClient) async throws {
        let service = Grpc_Testing_TestService.Client(wrapping: client)
        switch self {
        case .emptyUnary: try await Self.emptyUnary(service)
        case .largeUnary: try await Self.largeUnary(service)
        case .clientStreaming: try await Self.clientStreaming(service)
        case .serverStreaming: try await Self.serverStreaming(service)
        case .pingPong: try await Self.pingPong(service)
        case .emptyStream: try await Self.emptyStream(service)
        case .customMetadata: try await Self.customMetadata(service)
        case .statusCodeAndMessage: try await Self.statusCodeAndMessage(service, message: "test status message")
        case .specialStatusMessage: try await Self.specialStatusMessage(service)
        case .unimplementedMethod: try await Self.unimplementedMethod(client)
        case .unimplementedService: try await Self.unimplementedService(client)
        case .cancelAfterBegin: try await Self.cancelAfterBegin(service)
        case .cancelAfterFirstResponse: try await Self.cancelAfterFirstResponse(service)
        case .timeoutOnSleepingServer: try await Self.timeoutOnSleepingServer(service)
        case .clientCompressedUnary: try await Self.clientCompressedUnary(service)
        case .serverCompressedUnary: try await Self.serverCompressedUnary(service)
        case .clientCompressedStreaming: try await Self.clientCompressedStreaming(service)
        case .serverCompressedStreaming: try await Self.serverCompressedStreaming(service)
        }
    }

    // MARK: cases

    private static func emptyUnary(_ service: Grpc_Testing_TestService.Client) async throws {
        // The response type is non-optional: a successful call is the assertion.
        _ = try await service.emptyCall(Grpc_Testing_Empty())
    }

    private static func largeUnary(_ service: Grpc_Testing_TestService.Client) async throws {
        let request = Grpc_Testing_SimpleRequest(responseSize: 314_159, payload: zeros(271_828))
        let response = try await service.unaryCall(request)
        try expectZeroPayload(response.payload, size: 314_159, "the UnaryCall response")
    }

    private static func clientStreaming(_ service: Grpc_Testing_TestService.Client) async throws {
        let call = service.streamingInputCall()
        for size in [27_182, 8, 1_828, 45_904] {
            try await call.send(Grpc_Testing_StreamingInputCallRequest(payload: zeros(size)))
        }
        call.finish()
        let response = try await call.response()
        try expect(
            response.aggregatedPayloadSize == 74_922,
            "aggregated_payload_size is \(response.aggregatedPayloadSize), expected 74922")
    }

    private static func serverStreaming(_ service: Grpc_Testing_TestService.Client) async throws {
        let sizes: [Int32] = [31_415, 9, 2_653, 58_979]
        let request = Grpc_Testing_StreamingOutputCallRequest(
            responseParameters: sizes.map { Grpc_Testing_ResponseParameters(size: $0) })
        let call = try await service.streamingOutputCall(request)
        var index = 0
        for try await response in call {
            try expect(index < sizes.count, "received more than the \(sizes.count) expected responses")
            try expectZeroPayload(response.payload, size: Int(sizes[index]), "response #\(index + 1)")
            index += 1
        }
        try expect(index == sizes.count, "received \(index) responses, expected \(sizes.count)")
    }

    private static func pingPong(_ service: Grpc_Testing_TestService.Client) async throws {
        let requestSizes = [27_182, 8, 1_828, 45_904]
        let responseSizes: [Int32] = [31_415, 9, 2_653, 58_979]
        let call = service.fullDuplexCall()
        var responses = call.makeAsyncIterator()
        for (index, (requestSize, responseSize)) in zip(requestSizes, responseSizes).enumerated() {
            try await call.send(
                Grpc_Testing_StreamingOutputCallRequest(
                    responseParameters: [Grpc_Testing_ResponseParameters(size: responseSize)],
                    payload: zeros(requestSize)))
            guard let response = try await responses.next() else {
                throw InteropTestFailure("the stream ended after \(index) responses, expected 4")
            }
            try expectZeroPayload(response.payload, size: Int(responseSize), "response #\(index + 1)")
        }
        call.finish()
        if try await responses.next() != nil {
            throw InteropTestFailure("received more than the 4 expected responses")
        }
        try await expectOK(call)
    }

    private static func emptyStream(_ service: Grpc_Testing_TestService.Client) async throws {
        let call = service.fullDuplexCall()
        call.finish()
        var count = 0
        for try await _ in call { count += 1 }
        try expect(count == 0, "received \(count) responses, expected none")
        try await expectOK(call)
    }

    private static func customMetadata(_ service: Grpc_Testing_TestService.Client) async throws {
        let initialValue = "test_initial_metadata_value"
        let trailingValue: [UInt8] = [0xAB, 0xAB, 0xAB]
        var metadata = Metadata()
        metadata.add(interopEchoInitialKey, initialValue)
        metadata.add(interopEchoTrailingKey, binary: trailingValue)

        func check(_ initial: Metadata, _ trailing: Metadata, _ step: String) throws {
            let gotInitial = initial.first(interopEchoInitialKey)
            try expect(
                gotInitial == initialValue,
                "\(step): initial metadata \(interopEchoInitialKey) is \(gotInitial.map { "'\($0)'" } ?? "missing"), expected '\(initialValue)'"
            )
            let gotTrailing = trailing.firstBinary(interopEchoTrailingKey)
            try expect(
                gotTrailing == trailingValue,
                "\(step): trailing metadata \(interopEchoTrailingKey) is \(gotTrailing.map { hex($0) } ?? "missing"), expected 0xababab"
            )
        }

        // 1. UnaryCall.
        let unary = try await service.wrapped.unary(
            Grpc_Testing_TestService.Method.unaryCall,
            request: Grpc_Testing_SimpleRequest(responseSize: 314_159, payload: zeros(271_828)),
            metadata: metadata, responseType: Grpc_Testing_SimpleResponse.self)
        try expectZeroPayload(unary.message.payload, size: 314_159, "the UnaryCall response")
        try check(unary.initialMetadata, unary.trailingMetadata, "UnaryCall")

        // 2. FullDuplexCall.
        let call = service.fullDuplexCall(metadata: metadata)
        try await call.send(
            Grpc_Testing_StreamingOutputCallRequest(
                responseParameters: [Grpc_Testing_ResponseParameters(size: 314_159)],
                payload: zeros(271_828)))
        call.finish()
        var count = 0
        for try await response in call {
            try expectZeroPayload(response.payload, size: 314_159, "the FullDuplexCall response")
            count += 1
        }
        try expect(count == 1, "FullDuplexCall: received \(count) responses, expected 1")
        let (status, trailers) = await call.status()
        try expect(status.code == .ok, "FullDuplexCall ended with \(status), expected OK")
        try check(await call.initialMetadata(), trailers, "FullDuplexCall")
    }

    private static func statusCodeAndMessage(_ service: Grpc_Testing_TestService.Client, message: String) async throws {
        let echo = Grpc_Testing_EchoStatus(code: 2, message: message)

        // 1. UnaryCall.
        do {
            _ = try await service.unaryCall(Grpc_Testing_SimpleRequest(responseStatus: echo))
            throw InteropTestFailure("UnaryCall succeeded, expected status 2 (UNKNOWN)")
        } catch let error as RPCError {
            try expectStatus(error.status, code: .unknown, message: message, "UnaryCall")
        }

        // 2. FullDuplexCall.
        let call = service.fullDuplexCall()
        try await call.send(Grpc_Testing_StreamingOutputCallRequest(responseStatus: echo))
        call.finish()
        let (status, _) = await call.status()
        try expectStatus(status, code: .unknown, message: message, "FullDuplexCall")
    }

    private static func specialStatusMessage(_ service: Grpc_Testing_TestService.Client) async throws {
        let message = "\t\ntest with whitespace\r\nand Unicode BMP \u{263A} and non-BMP \u{1F608}\t\n"
        let echo = Grpc_Testing_EchoStatus(code: 2, message: message)
        do {
            _ = try await service.unaryCall(Grpc_Testing_SimpleRequest(responseStatus: echo))
            throw InteropTestFailure("UnaryCall succeeded, expected status 2 (UNKNOWN)")
        } catch let error as RPCError {
            try expectStatus(error.status, code: .unknown, message: message, "UnaryCall")
        }
    }

    private static func unimplementedMethod(_ client: RPCClient) async throws {
        // The specification names the method `UnimplementedCall` (grpc's test.proto); no
        // server implements it, whatever its version of the schema.
        let method = MethodDescriptor(service: Grpc_Testing_TestService.descriptorName, method: "UnimplementedCall")
        try await expectUnimplemented(method.path) {
            _ = try await client.unary(method, request: Grpc_Testing_Empty(), responseType: Grpc_Testing_Empty.self)
        }
    }

    private static func unimplementedService(_ client: RPCClient) async throws {
        let service = Grpc_Testing_UnimplementedService.Client(wrapping: client)
        try await expectUnimplemented(Grpc_Testing_UnimplementedService.Method.unimplementedCall.path) {
            _ = try await service.unimplementedCall(Grpc_Testing_Empty())
        }
    }

    private static func cancelAfterBegin(_ service: Grpc_Testing_TestService.Client) async throws {
        let call = service.streamingInputCall()
        call.cancel()
        let (status, _) = await call.status()
        try expect(status.code == .cancelled, "the call ended with \(status), expected CANCELLED")
        do {
            _ = try await call.response()
            throw InteropTestFailure("the cancelled call returned a response")
        } catch let error as RPCError {
            try expect(error.code == .cancelled, "reading the response failed with \(error), expected CANCELLED")
        }
    }

    private static func cancelAfterFirstResponse(_ service: Grpc_Testing_TestService.Client) async throws {
        let call = service.fullDuplexCall()
        var responses = call.makeAsyncIterator()
        try await call.send(
            Grpc_Testing_StreamingOutputCallRequest(
                responseParameters: [Grpc_Testing_ResponseParameters(size: 31_415)],
                payload: zeros(27_182)))
        guard let first = try await responses.next() else {
            throw InteropTestFailure("the stream ended before the first response")
        }
        try expectZeroPayload(first.payload, size: 31_415, "the first response")
        call.cancel()
        let (status, _) = await call.status()
        try expect(status.code == .cancelled, "the call ended with \(status), expected CANCELLED")
    }

    private static func timeoutOnSleepingServer(_ service: Grpc_Testing_TestService.Client) async throws {
        let call = service.fullDuplexCall(options: CallOptions(timeout: .milliseconds(1)))
        do {
            try await call.send(Grpc_Testing_StreamingOutputCallRequest(payload: zeros(27_182)))
        } catch let error as RPCError where error.code == .deadlineExceeded {
            // The deadline may expire before the request is even sent; that is the expected end too.
        }
        let (status, _) = await call.status()
        try expect(status.code == .deadlineExceeded, "the call ended with \(status), expected DEADLINE_EXCEEDED")
    }

    /// The feature probe of the compressed-request cases: an uncompressed message that says it
    /// is compressed must fail with INVALID_ARGUMENT. A server that cannot see how a message
    /// arrived (grpcio's API does not tell its handlers) answers OK instead: the probe is then
    /// passed over and the compressed calls that follow still prove the server inflates them.
    private static func expectProbeRejected(_ call: () async throws -> Void, _ step: String) async throws {
        do {
            try await call()
        } catch let error as RPCError {
            try expect(
                error.code == .invalidArgument, "\(step): the probe failed with \(error), expected INVALID_ARGUMENT")
        }
    }

    private static func clientCompressedUnary(_ service: Grpc_Testing_TestService.Client) async throws {
        let expectTrue = Grpc_Testing_BoolValue(value: true)
        try await expectProbeRejected(
            {
                _ = try await service.unaryCall(
                    Grpc_Testing_SimpleRequest(
                        responseSize: 314_159, payload: zeros(271_828), expectCompressed: expectTrue))
            }, "UnaryCall probe")
        for compressed in [true, false] {
            let request = Grpc_Testing_SimpleRequest(
                responseSize: 314_159, payload: zeros(271_828),
                expectCompressed: Grpc_Testing_BoolValue(value: compressed))
            let response = try await service.unaryCall(
                request, options: CallOptions(compression: compressed ? .gzip : nil))
            try expectZeroPayload(response.payload, size: 314_159, "the UnaryCall response (compressed: \(compressed))")
        }
    }

    private static func serverCompressedUnary(_ service: Grpc_Testing_TestService.Client) async throws {
        for compressed in [true, false] {
            let request = Grpc_Testing_SimpleRequest(
                responseSize: 314_159, payload: zeros(271_828),
                responseCompressed: Grpc_Testing_BoolValue(value: compressed))
            let call: ClientCall<Grpc_Testing_SimpleRequest, Grpc_Testing_SimpleResponse> = service.wrapped.makeCall(
                Grpc_Testing_TestService.Method.unaryCall)
            try await call.send(request)
            call.finish()
            let response = try await call.response()
            try expectZeroPayload(response.payload, size: 314_159, "the UnaryCall response (compressed: \(compressed))")
            try expect(
                call.lastResponseWasCompressed == compressed,
                "the UnaryCall response arrived \(call.lastResponseWasCompressed ? "compressed" : "uncompressed"), expected \(compressed ? "compressed" : "uncompressed")"
            )
        }
    }

    private static func clientCompressedStreaming(_ service: Grpc_Testing_TestService.Client) async throws {
        try await expectProbeRejected(
            {
                let probe = service.streamingInputCall()
                try await probe.send(
                    Grpc_Testing_StreamingInputCallRequest(
                        payload: zeros(27_182), expectCompressed: Grpc_Testing_BoolValue(value: true)))
                probe.finish()
                _ = try await probe.response()
            }, "StreamingInputCall probe")
        let call = service.streamingInputCall(options: CallOptions(compression: .gzip))
        try await call.send(
            Grpc_Testing_StreamingInputCallRequest(
                payload: zeros(27_182), expectCompressed: Grpc_Testing_BoolValue(value: true)))
        try await call.send(
            Grpc_Testing_StreamingInputCallRequest(
                payload: zeros(45_904), expectCompressed: Grpc_Testing_BoolValue(value: false)),
            compressed: false)
        call.finish()
        let response = try await call.response()
        try expect(
            response.aggregatedPayloadSize == 73_086,
            "aggregated_payload_size is \(response.aggregatedPayloadSize), expected 73086")
    }

    private static func serverCompressedStreaming(_ service: Grpc_Testing_TestService.Client) async throws {
        let parameters = [(size: Int32(31_415), compressed: true), (size: Int32(92_653), compressed: false)]
        let request = Grpc_Testing_StreamingOutputCallRequest(
            responseParameters: parameters.map {
                Grpc_Testing_ResponseParameters(size: $0.size, compressed: Grpc_Testing_BoolValue(value: $0.compressed))
            })
        let call = try await service.streamingOutputCall(request)
        var index = 0
        for try await response in call {
            try expect(index < parameters.count, "received more than the \(parameters.count) expected responses")
            try expectZeroPayload(response.payload, size: Int(parameters[index].size), "response #\(index + 1)")
            try expect(
                call.lastResponseWasCompressed == parameters[index].compressed,
                "response #\(index + 1) arrived \(call.lastResponseWasCompressed ? "compressed" : "uncompressed"), expected \(parameters[index].compressed ? "compressed" : "uncompressed")"
            )
            index += 1
        }
        try expect(index == parameters.count, "received \(index) responses, expected \(parameters.count)")
    }

    // MARK: helpers

    private static func zeros(_ count: Int) -> Grpc_Testing_Payload {
        Grpc_Testing_Payload(type: .compressable, body: [UInt8](repeating: 0, count: count))
    }

    private static func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw InteropTestFailure(message()) }
    }

    private static func expectZeroPayload(_ payload: Grpc_Testing_Payload?, size: Int, _ what: String) throws {
        guard let payload else { throw InteropTestFailure("\(what) has no payload, expected \(size) bytes") }
        try expect(payload.body.count == size, "\(what) has a payload of \(payload.body.count) bytes, expected \(size)")
        try expect(payload.body.allSatisfy { $0 == 0 }, "\(what) has a payload that is not all zeros")
    }

    private static func expectOK<Request, Response>(_ call: ClientCall<Request, Response>) async throws {
        let (status, _) = await call.status()
        try expect(status.code == .ok, "the call ended with \(status), expected OK")
    }

    private static func expectStatus(_ status: Status, code: Status.Code, message: String, _ step: String) throws {
        try expect(
            status.code == code,
            "\(step): status code is \(status.code) (\(status.code.rawValue)), expected \(code) (\(code.rawValue))")
        try expect(
            status.message == message,
            "\(step): status message is \(String(reflecting: status.message)), expected \(String(reflecting: message))")
    }

    private static func expectUnimplemented(_ path: String, _ body: () async throws -> Void) async throws {
        do {
            try await body()
            throw InteropTestFailure("\(path) succeeded, expected UNIMPLEMENTED")
        } catch let error as RPCError {
            try expect(error.code == .unimplemented, "\(path) failed with \(error), expected UNIMPLEMENTED (12)")
        }
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        "0x"
            + bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            .joined()
    }
}
