/// A gRPC client over one transport (one HTTP/2 connection, shared by concurrent calls).
public final class RPCClient: Sendable {
    private let transport: any ClientTransport
    private let interceptors: [any ClientInterceptor]

    /// Creates a client; `interceptors` run in order before each call is opened.
    public init(transport: any ClientTransport, interceptors: [any ClientInterceptor] = []) {
        self.transport = transport
        self.interceptors = interceptors
    }

    /// Opens a call of any shape. Send with `send`/`finish`, read by iterating or `response()`.
    public func makeCall<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor,
        metadata: Metadata = [:],
        options: CallOptions = .defaults,
        requestType: Request.Type = Request.self,
        responseType: Response.Type = Response.self
    ) -> ClientCall<Request, Response> {
        let events = ClientCallEvents()
        let call = ClientCall<Request, Response>(events: events)
        var head = ClientRequestHead(
            method: method, metadata: metadata, timeout: options.timeout, compression: options.compression)
        do {
            for interceptor in interceptors { try interceptor.prepare(&head) }
        } catch {
            let e = RPCError.from(error)
            events.receiveStatus(e.status, trailers: e.metadata)
            return call
        }
        events.compression = head.compression
        events.attach(transport.openStream(head, events: events))
        if let timeout = head.timeout { events.startTimer(timeout) }
        return call
    }

    /// A unary call; returns the response with its metadata.
    public func unary<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor, request: Request,
        metadata: Metadata = [:], options: CallOptions = .defaults,
        responseType: Response.Type = Response.self
    ) async throws -> ClientResponse<Response> {
        let call: ClientCall<Request, Response> = makeCall(method, metadata: metadata, options: options)
        try await call.send(request)
        call.finish()
        let message = try await call.response()
        let (_, trailers) = await call.status()
        return ClientResponse(
            message: message, initialMetadata: await call.initialMetadata(), trailingMetadata: trailers)
    }

    /// A server-streaming call: sends `request` and returns the call to iterate.
    public func serverStreaming<Request: RPCMessage, Response: RPCMessage>(
        _ method: MethodDescriptor, request: Request,
        metadata: Metadata = [:], options: CallOptions = .defaults,
        responseType: Response.Type = Response.self
    ) async throws -> ClientCall<Request, Response> {
        let call: ClientCall<Request, Response> = makeCall(method, metadata: metadata, options: options)
        try await call.send(request)
        call.finish()
        return call
    }

    /// Closes the connection; calls in flight end with UNAVAILABLE.
    public func close() {
        transport.close()
    }
}
