"""Service translator: method descriptors, a server protocol, a typed client, registration."""

# Per call shape (client streaming, server streaming): the server protocol's signature,
# the client stub's signature and body, the router registration and its call.
_SERVER = {
    (False, False): "func {m}(request: {req}, context: ServerContext) async throws -> {res}",
    (False, True): "func {m}(request: {req}, response: ResponseWriter<{res}>, context: ServerContext) async throws",
    (True, False): "func {m}(requests: RequestStream<{req}>, context: ServerContext) async throws -> {res}",
    (True, True): "func {m}(requests: RequestStream<{req}>, response: ResponseWriter<{res}>, context: ServerContext) async throws",
}
_CLIENT = {
    (False, False): ("public func {m}(_ request: {req}, metadata: Metadata = [:], options: CallOptions = .defaults) async throws -> {res} {{",
                     "try await wrapped.unary(Method.{m}, request: request, metadata: metadata, options: options, responseType: {res}.self).message"),
    (False, True): ("public func {m}(_ request: {req}, metadata: Metadata = [:], options: CallOptions = .defaults) async throws -> ClientCall<{req}, {res}> {{",
                    "try await wrapped.serverStreaming(Method.{m}, request: request, metadata: metadata, options: options, responseType: {res}.self)"),
    (True, False): ("public func {m}(metadata: Metadata = [:], options: CallOptions = .defaults) -> ClientCall<{req}, {res}> {{",
                    "wrapped.makeCall(Method.{m}, metadata: metadata, options: options, requestType: {req}.self, responseType: {res}.self)"),
}
_CLIENT[(True, True)] = _CLIENT[(True, False)]
_REGISTER = {
    (False, False): ("router.registerUnary({d}) {{ (request: {req}, context: ServerContext) async throws -> {res} in",
                     "try await self.{m}(request: request, context: context)"),
    (False, True): ("router.registerServerStreaming({d}) {{ (request: {req}, response: ResponseWriter<{res}>, context: ServerContext) async throws in",
                    "try await self.{m}(request: request, response: response, context: context)"),
    (True, False): ("router.registerClientStreaming({d}) {{ (requests: RequestStream<{req}>, context: ServerContext) async throws -> {res} in",
                    "try await self.{m}(requests: requests, context: context)"),
    (True, True): ("router.registerBidirectionalStreaming({d}) {{ (requests: RequestStream<{req}>, response: ResponseWriter<{res}>, context: ServerContext) async throws in",
                   "try await self.{m}(requests: requests, response: response, context: context)"),
}


def _shape(method):
    return (method.client_streaming, method.server_streaming)


def _fmt(template, method, **extra):
    return template.format(m=method.swift, req=method.request, res=method.response, **extra)


def write_service(w, s):
    w.doc(s.comment, "The service `%s`: method descriptors, server protocol and client." % s.full_name)
    with w.block("public enum %s {" % s.swift_name):
        w.line("/// The fully qualified service name.")
        w.line('public static let descriptorName = "%s"' % s.full_name)
        w.blank()
        _write_methods(w, s)
        w.blank()
        _write_server_protocol(w, s)
        w.blank()
        _write_client(w, s)
    w.blank()
    _write_registration(w, s)


def _write_methods(w, s):
    w.line("/// The descriptor of every method.")
    with w.block("public enum Method {"):
        for m in s.methods:
            w.line("/// `/%s/%s`." % (s.full_name, m.name))
            w.line('public static let %s = MethodDescriptor(service: descriptorName, method: "%s")' % (m.swift, m.name))
        w.line("/// Every method of the service.")
        w.line("public static let all: [MethodDescriptor] = [%s]" % ", ".join(m.swift for m in s.methods))


def _write_server_protocol(w, s):
    w.line("/// Implement this to serve `%s`; register with `registerMethods(with:)`." % s.full_name)
    with w.block("public protocol ServiceProtocol: RegistrableRPCService {"):
        for m in s.methods:
            w.doc(m.comment, "Handles `%s`." % m.name)
            w.line(_fmt(_SERVER[_shape(m)], m))


def _write_client(w, s):
    w.line("/// A typed client for `%s`." % s.full_name)
    with w.block("public struct Client: Sendable {"):
        w.line("/// The underlying client (one connection, shared by concurrent calls).")
        w.line("public let wrapped: RPCClient")
        w.blank()
        w.line("/// Wraps a client.")
        with w.block("public init(wrapping client: RPCClient) {"):
            w.line("self.wrapped = client")
        for m in s.methods:
            w.blank()
            w.doc(m.comment, "Calls `%s`." % m.name)
            signature, body = _CLIENT[_shape(m)]
            with w.block(_fmt(signature, m)):
                w.line(_fmt(body, m))


def _write_registration(w, s):
    with w.block("extension %s.ServiceProtocol {" % s.swift_name):
        w.line("/// Registers every method of `%s` on `router`." % s.full_name)
        with w.block("public func registerMethods(with router: inout RPCRouter) {"):
            for m in s.methods:
                opener, call = _REGISTER[_shape(m)]
                with w.block(_fmt(opener, m, d="%s.Method.%s" % (s.swift_name, m.swift))):
                    w.line(_fmt(call, m))
