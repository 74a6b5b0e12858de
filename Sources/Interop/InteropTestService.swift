import GeneratedProtos
import H2RPC

/// The metadata key whose value the server echoes back as initial metadata.
public let interopEchoInitialKey = "x-grpc-test-echo-initial"
/// The (binary) metadata key whose value the server echoes back as trailing metadata.
public let interopEchoTrailingKey = "x-grpc-test-echo-trailing-bin"

/// `grpc.testing.TestService` as grpc's interop server specification describes it
/// (doc/interop-test-descriptions.md, "Server" section).
///
/// Features: EmptyCall, UnaryCall, StreamingInputCall, StreamingOutputCall, FullDuplexCall,
/// HalfDuplexCall, Echo Status, Echo Metadata, `ResponseParameters.interval_us`, Compressed
/// Request (`expect_compressed`) and Compressed Response (`response_compressed`,
/// `ResponseParameters.compressed`).
public struct InteropTestService: Grpc_Testing_TestService.ServiceProtocol {
    /// The fully qualified service name, `grpc.testing.TestService` (e.g. for health checks).
    public static let serviceName = Grpc_Testing_TestService.descriptorName

    /// Creates the service.
    public init() {}

    /// Returns the empty message at once.
    public func emptyCall(request: Grpc_Testing_Empty, context: ServerContext) async throws -> Grpc_Testing_Empty {
        echoMetadata(context)
        return Grpc_Testing_Empty()
    }

    /// Returns a payload of `response_size` zero bytes, or the requested status.
    public func unaryCall(request: Grpc_Testing_SimpleRequest, context: ServerContext) async throws
        -> Grpc_Testing_SimpleResponse
    {
        echoMetadata(context)
        try checkCompression(expected: request.expectCompressed, context)
        try echoStatus(request.responseStatus)
        compressResponses(request.responseCompressed?.value == true, context)
        let payload = try makePayload(type: request.responseType, size: request.responseSize)
        return Grpc_Testing_SimpleResponse(payload: payload)
    }

    /// Streams one response per `ResponseParameters`, each after its `interval_us`.
    public func streamingOutputCall(
        request: Grpc_Testing_StreamingOutputCallRequest,
        response: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>,
        context: ServerContext
    ) async throws {
        echoMetadata(context)
        try await respond(to: request, with: response, context)
        try echoStatus(request.responseStatus)
    }

    /// Returns the sum of the payload sizes of every request, once the client half-closes.
    public func streamingInputCall(
        requests: RequestStream<Grpc_Testing_StreamingInputCallRequest>,
        context: ServerContext
    ) async throws -> Grpc_Testing_StreamingInputCallResponse {
        echoMetadata(context)
        var total = 0
        for try await request in requests {
            try checkCompression(expected: request.expectCompressed, context)
            total += request.payload?.body.count ?? 0
        }
        return Grpc_Testing_StreamingInputCallResponse(aggregatedPayloadSize: Int32(clamping: total))
    }

    /// Answers each request as it arrives; a request carrying `response_status` ends the call
    /// with that status and nothing after it is processed.
    public func fullDuplexCall(
        requests: RequestStream<Grpc_Testing_StreamingOutputCallRequest>,
        response: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>,
        context: ServerContext
    ) async throws {
        echoMetadata(context)
        for try await request in requests {
            try echoStatus(request.responseStatus)
            try await respond(to: request, with: response, context)
        }
    }

    /// Buffers every request until the client half-closes, then answers them in order.
    public func halfDuplexCall(
        requests: RequestStream<Grpc_Testing_StreamingOutputCallRequest>,
        response: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>,
        context: ServerContext
    ) async throws {
        echoMetadata(context)
        var buffered: [Grpc_Testing_StreamingOutputCallRequest] = []
        for try await request in requests { buffered.append(request) }
        for request in buffered {
            try echoStatus(request.responseStatus)
            try await respond(to: request, with: response, context)
        }
    }

    /// Not implemented, by definition: always UNIMPLEMENTED.
    public func unimplementedCall(request: Grpc_Testing_Empty, context: ServerContext) async throws
        -> Grpc_Testing_Empty
    {
        throw RPCError(.unimplemented, "grpc.testing.TestService/UnimplementedCall is not implemented, by design")
    }

    // MARK: features

    /// Echo Metadata: `x-grpc-test-echo-initial` back as initial metadata,
    /// `x-grpc-test-echo-trailing-bin` back as trailing metadata (also with an error status).
    private func echoMetadata(_ context: ServerContext) {
        if let value = context.metadata.first(interopEchoInitialKey) {
            var initial = Metadata()
            initial.add(interopEchoInitialKey, value)
            context.addInitialMetadata(initial)
        }
        if let value = context.metadata.firstBinary(interopEchoTrailingKey) {
            var trailing = Metadata()
            trailing.add(interopEchoTrailingKey, binary: value)
            context.addTrailingMetadata(trailing)
        }
    }

    /// Compressed Request: INVALID_ARGUMENT when the request message's compression is not what
    /// `expect_compressed` says (absent: anything goes).
    private func checkCompression(expected: Grpc_Testing_BoolValue?, _ context: ServerContext) throws {
        guard let expected else { return }
        let compressed = context.requestWasCompressed
        if expected.value && !compressed {
            throw RPCError(.invalidArgument, "expect_compressed is true but the request message arrived uncompressed")
        }
        if !expected.value && compressed {
            throw RPCError(.invalidArgument, "expect_compressed is false but the request message arrived compressed")
        }
    }

    /// Compressed Response: the next response messages go compressed (with an algorithm the
    /// client accepts, gzip first) or not.
    private func compressResponses(_ compressed: Bool, _ context: ServerContext) {
        let accepted = context.acceptedCompression
        context.responseCompression = compressed ? (accepted.contains(.gzip) ? .gzip : accepted.first) : nil
    }

    /// Echo Status: ends the call with the requested status (unless it is OK).
    private func echoStatus(_ status: Grpc_Testing_EchoStatus?) throws {
        guard let status, status.code != 0 else { return }
        throw RPCError(Status.Code(wireValue: Int(status.code)), status.message)
    }

    /// Writes one response per `ResponseParameters` of `request`, honouring `interval_us`.
    private func respond(
        to request: Grpc_Testing_StreamingOutputCallRequest,
        with writer: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>, _ context: ServerContext
    ) async throws {
        // Consecutive responses of one size share one payload (its bytes are copy-on-write).
        var payload: (size: Int32, value: Grpc_Testing_Payload)? = nil
        for parameters in request.responseParameters {
            if parameters.intervalUs > 0 {
                try await Task.sleep(for: .microseconds(Int(parameters.intervalUs)))
            }
            if payload?.size != parameters.size {
                payload = (parameters.size, try makePayload(type: request.responseType, size: parameters.size))
            }
            compressResponses(parameters.compressed?.value == true, context)
            try await writer.write(Grpc_Testing_StreamingOutputCallResponse(payload: payload?.value))
        }
    }

    /// A payload of `size` zero bytes; only COMPRESSABLE is supported (INVALID_ARGUMENT otherwise).
    private func makePayload(type: Grpc_Testing_PayloadType, size: Int32) throws -> Grpc_Testing_Payload {
        guard type == .compressable else {
            throw RPCError(.invalidArgument, "payload type \(type.rawValue) is not supported; only COMPRESSABLE (0) is")
        }
        guard size >= 0 else {
            throw RPCError(.invalidArgument, "response size \(size) is negative")
        }
        return Grpc_Testing_Payload(type: .compressable, body: [UInt8](repeating: 0, count: Int(size)))
    }
}
