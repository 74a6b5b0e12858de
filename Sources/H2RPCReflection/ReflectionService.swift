import GeneratedProtos
import H2RPC

/// gRPC server reflection: `grpc.reflection.v1.ServerReflection` and, for older tools,
/// `grpc.reflection.v1alpha.ServerReflection` (the same protocol under its former name).
///
/// Lists the services registered on the server and serves the file descriptors that define
/// them (each with its imports), as `make generate` embedded them. Each request on the stream
/// gets one response; an unknown file or symbol, and any extension request (these protos
/// declare no extensions), is answered with an `error_response` (NOT_FOUND) and the stream
/// goes on.
///
/// ```swift
/// let services: [any RegistrableRPCService] = [MyService(), health]
/// let server = RPCServer(transport: transport, services: services + [ReflectionService(serving: services)])
/// ```
public struct ReflectionService: RegistrableRPCService {
    /// The two reflection service names this registers.
    public static let serviceNames = [
        Grpc_Reflection_V1_ServerReflection.descriptorName, Grpc_Reflection_V1alpha_ServerReflection.descriptorName,
    ]

    private let index: ReflectionIndex

    /// Reflection for a server that registers `services` (and this service).
    public init(serving services: [any RegistrableRPCService]) {
        var router = RPCRouter()
        for service in services { service.registerMethods(with: &router) }
        index = ReflectionIndex(services: router.methods.map(\.service) + Self.serviceNames)
    }

    /// Registers both versions.
    public func registerMethods(with router: inout RPCRouter) {
        V1(index: index).registerMethods(with: &router)
        V1Alpha(index: index).registerMethods(with: &router)
    }
}

/// A reflection request, whichever version it came in.
enum ReflectionQuery {
    case fileByFilename(String)
    case fileContainingSymbol(String)
    case fileContainingExtension(type: String, number: Int32)
    case allExtensionNumbersOfType(String)
    case listServices
    case none
}

/// A reflection answer, whichever version it goes out in.
enum ReflectionAnswer {
    case files([[UInt8]])
    case extensionNumbers(type: String)
    case services([String])
    case error(code: Int32, message: String)
}

extension ReflectionIndex {
    func answer(_ query: ReflectionQuery) -> ReflectionAnswer {
        func files(_ result: Result<[[UInt8]], Failure>) -> ReflectionAnswer {
            switch result {
            case .success(let files): return .files(files)
            case .failure(let f): return .error(code: f.code, message: f.message)
            }
        }
        switch query {
        case .fileByFilename(let name): return files(file(named: name))
        case .fileContainingSymbol(let symbol): return files(file(containing: symbol))
        case .fileContainingExtension(let type, let number):
            return .error(code: 5, message: "no extension \(number) of '\(type)': these protos declare no extensions")
        case .allExtensionNumbersOfType(let type):
            guard knowsType(type) else { return .error(code: 5, message: "no message type '\(type)'") }
            return .extensionNumbers(type: type)
        case .listServices: return .services(services)
        case .none:
            return .error(
                code: 3,
                message:
                    "the request sets none of file_by_filename, file_containing_symbol, file_containing_extension, all_extension_numbers_of_type, list_services"
            )
        }
    }
}

private struct V1: Grpc_Reflection_V1_ServerReflection.ServiceProtocol {
    typealias Request = Grpc_Reflection_V1_ServerReflectionRequest
    typealias Response = Grpc_Reflection_V1_ServerReflectionResponse
    let index: ReflectionIndex

    func serverReflectionInfo(
        requests: RequestStream<Request>, response: ResponseWriter<Response>, context: ServerContext
    ) async throws {
        for try await request in requests {
            try await response.write(respond(to: request))
        }
    }

    func respond(to request: Request) -> Response {
        let query: ReflectionQuery
        switch request.messageRequest {
        case .fileByFilename(let name)?: query = .fileByFilename(name)
        case .fileContainingSymbol(let symbol)?: query = .fileContainingSymbol(symbol)
        case .fileContainingExtension(let e)?:
            query = .fileContainingExtension(type: e.containingType, number: e.extensionNumber)
        case .allExtensionNumbersOfType(let type)?: query = .allExtensionNumbersOfType(type)
        case .listServices?: query = .listServices
        case nil: query = .none
        }
        let body: Response.OneOf_MessageResponse
        switch index.answer(query) {
        case .files(let files):
            body = .fileDescriptorResponse(Grpc_Reflection_V1_FileDescriptorResponse(fileDescriptorProto: files))
        case .extensionNumbers(let type):
            body = .allExtensionNumbersResponse(Grpc_Reflection_V1_ExtensionNumberResponse(baseTypeName: type))
        case .services(let names):
            body = .listServicesResponse(
                Grpc_Reflection_V1_ListServiceResponse(service: names.map { .init(name: $0) }))
        case .error(let code, let message):
            body = .errorResponse(Grpc_Reflection_V1_ErrorResponse(errorCode: code, errorMessage: message))
        }
        return Response(validHost: request.host, originalRequest: request, messageResponse: body)
    }
}

/// v1alpha is v1 under its former name: the messages are wire-identical, so each request is
/// re-read as v1, answered by ``V1``, and the answer re-read as v1alpha.
private struct V1Alpha: Grpc_Reflection_V1alpha_ServerReflection.ServiceProtocol {
    let v1: V1

    init(index: ReflectionIndex) { v1 = V1(index: index) }

    func serverReflectionInfo(
        requests: RequestStream<Grpc_Reflection_V1alpha_ServerReflectionRequest>,
        response: ResponseWriter<Grpc_Reflection_V1alpha_ServerReflectionResponse>, context: ServerContext
    ) async throws {
        for try await request in requests {
            try await response.write(Self.convert(v1.respond(to: Self.convert(request))))
        }
    }

    private static func convert<From: RPCMessage, To: RPCMessage>(_ message: From) throws -> To {
        try message.serializedBytes().withUnsafeBytes { try To(serializedBytes: $0) }
    }
}
