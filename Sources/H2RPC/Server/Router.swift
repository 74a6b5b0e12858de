/// A registry of methods: generated service protocols register their handlers here.
public struct RPCRouter: Sendable {
    var routes: [String: Route] = [:]

    /// Creates an empty router.
    public init() {}

    /// The paths of every registered method.
    public var methods: [MethodDescriptor] { routes.values.map(\.descriptor) }

    /// Registers a unary method.
    public mutating func registerUnary<Request: RPCMessage, Response: RPCMessage>(
        _ descriptor: MethodDescriptor,
        handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) {
        routes[descriptor.path] = Route(
            descriptor: descriptor, kind: .unary,
            handler: .unary { bytes, context in
                let request = try decodeRequest(Request.self, bytes)
                let response = try await handler(request, context)
                return try encodeResponse(response)
            })
    }

    /// Registers a server-streaming method.
    public mutating func registerServerStreaming<Request: RPCMessage, Response: RPCMessage>(
        _ descriptor: MethodDescriptor,
        handler: @escaping @Sendable (Request, ResponseWriter<Response>, ServerContext) async throws -> Void
    ) {
        routes[descriptor.path] = Route(
            descriptor: descriptor, kind: .serverStreaming,
            handler: .streaming { call, single in
                let request = try decodeRequest(Request.self, single ?? MessageBytes([]))
                try await handler(request, ResponseWriter(call: call), call.context)
            })
    }

    /// Registers a client-streaming method.
    public mutating func registerClientStreaming<Request: RPCMessage, Response: RPCMessage>(
        _ descriptor: MethodDescriptor,
        handler: @escaping @Sendable (RequestStream<Request>, ServerContext) async throws -> Response
    ) {
        routes[descriptor.path] = Route(
            descriptor: descriptor, kind: .clientStreaming,
            handler: .streaming { call, _ in
                let response = try await handler(RequestStream(call), call.context)
                try await ResponseWriter<Response>(call: call).write(response)
            })
    }

    /// Registers a bidirectional-streaming method.
    public mutating func registerBidirectionalStreaming<Request: RPCMessage, Response: RPCMessage>(
        _ descriptor: MethodDescriptor,
        handler:
            @escaping @Sendable (RequestStream<Request>, ResponseWriter<Response>, ServerContext) async throws -> Void
    ) {
        routes[descriptor.path] = Route(
            descriptor: descriptor, kind: .bidirectionalStreaming,
            handler: .streaming { call, _ in
                try await handler(RequestStream(call), ResponseWriter(call: call), call.context)
            })
    }
}

/// A service that can put its methods in a router. Generated service protocols conform.
public protocol RegistrableRPCService: Sendable {
    /// Registers every method of the service.
    func registerMethods(with router: inout RPCRouter)
}

struct Route: Sendable {
    enum Handler: Sendable {
        /// Request bytes in, response bytes out: the hot path, no streams involved.
        case unary(@Sendable (MessageBytes, ServerContext) async throws -> [UInt8])
        /// The call, and its request message for a server-streaming call.
        case streaming(@Sendable (ServerCall, MessageBytes?) async throws -> Void)
    }
    let descriptor: MethodDescriptor
    let kind: RPCKind
    let handler: Handler
    /// The largest request message (nil: the transport's limit); set from ``ServerCallLimits``.
    var maxRequestMessageSize: Int? = nil

    /// The same route in new objects (the path string, the handler closure's context).
    func threadCopy() -> Route {
        let copy: Handler
        switch handler {
        case .unary(let h): copy = .unary { try await h($0, $1) }
        case .streaming(let h): copy = .streaming { try await h($0, $1) }
        }
        return Route(
            descriptor: MethodDescriptor(service: descriptor.service, method: descriptor.method), kind: kind,
            handler: copy, maxRequestMessageSize: maxRequestMessageSize)
    }
}

@inline(__always)
func decodeRequest<M: RPCMessage>(_ type: M.Type, _ bytes: MessageBytes) throws -> M {
    do {
        return try bytes.withUnsafeBytes { try M(serializedBytes: $0) }
    } catch let error as any RPCErrorConvertible {
        // A decoder that tells what was wrong (a string field's content, a limit) chooses the code.
        let e = error.rpcError
        throw RPCError(e.code, "could not decode the request message as \(M.self): \(e.message)", metadata: e.metadata)
    } catch {
        throw RPCError(.internal, "could not decode the request message as \(M.self): \(error)")
    }
}

@inline(__always)
func encodeResponse<M: RPCMessage>(_ message: M) throws -> [UInt8] {
    do {
        return try message.serializedBytes()
    } catch {
        throw RPCError(.internal, "could not encode the response message \(M.self): \(error)")
    }
}
