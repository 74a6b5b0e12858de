import Blocking
import Foundation
import GeneratedProtos
import H2RPC
import H2RPCInProcessTransport
import H2RPCNGHTTP2Transport
import LabGalleryCore
import LabGalleryServer
import Logging
import TestSupport
import Testing

/// Typed clients of every gallery service over one connection.
struct Clients {
    let rpc: RPCClient
    var labAccounts: Labgallery_V1_LabAccountService.Client { .init(wrapping: rpc) }
    var galleries: Labgallery_V1_GalleryService.Client { .init(wrapping: rpc) }
    var images: Labgallery_V1_ImageService.Client { .init(wrapping: rpc) }
    var labs: Labgallery_V1_LabService.Client { .init(wrapping: rpc) }
    var replication: Labgallery_V1_ReplicationService.Client { .init(wrapping: rpc) }
    var billing: Labgallery_V1_BillingService.Client { .init(wrapping: rpc) }
    var health: Grpc_Health_V1_Health.Client { .init(wrapping: rpc) }
}

/// How a test server takes its calls.
enum TestTransport {
    /// The in-process transport: no sockets, no HTTP/2 (every test not about the wire).
    case inProcess
    /// HTTP/2 on 127.0.0.1, port 0, with clients connecting through real sockets (H2ClientTransport):
    /// tests of what only the wire does (message size limits, connections).
    case sockets
}

/// A real `GalleryServer` over a fresh temp data directory, on the in-process transport or on
/// 127.0.0.1, port 0 (see ``TestTransport``).
final class TestServer {
    let dataDir: URL
    let server: GalleryServer
    /// The bound port (0 in-process).
    let port: Int
    let adminToken: String
    private let inProcess: InProcessTransport?
    private var clients: [RPCClient] = []

    init(
        templateImages: TemplateImagePolicy = .any, regionsFile: URL? = nil, maxMessageSize: Int = 4 << 20,
        transport: TestTransport = .inProcess, logger: Logger? = nil
    ) async throws {
        dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("lgs-\(UUID().uuidString)")
        let inProcess = transport == .inProcess ? InProcessTransport() : nil
        self.inProcess = inProcess
        server = try await GalleryServer(
            configuration: ServerConfiguration(
                host: "127.0.0.1", port: 0, dataDirectory: dataDir,
                maxReceiveMessageSize: maxMessageSize, templateImages: templateImages,
                regionsFile: regionsFile, shutdownGracePeriod: .seconds(1)),
            transport: inProcess?.server, logger: logger)
        port = try await server.start()
        adminToken = try String(contentsOf: dataDir.appendingPathComponent("admin.token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Clients authenticated with `token` (nil: no authorization metadata).
    func connect(token: String?) throws -> Clients {
        try connect(authorization: token.map { "Bearer \($0)" })
    }

    /// Clients sending `authorization: <authorization>` (nil: none).
    func connect(authorization: String?) throws -> Clients {
        let transport: any ClientTransport =
            try inProcess?.makeClient() ?? H2ClientTransport(host: "127.0.0.1", port: port)
        let rpc = RPCClient(
            transport: transport,
            interceptors: authorization.map { [Authorization(value: $0)] } ?? [])
        clients.append(rpc)
        return Clients(rpc: rpc)
    }

    /// Admin clients (the bootstrap token from admin.token).
    func admin() throws -> Clients { try connect(token: adminToken) }

    /// Clients with a new token of `role`.
    func connect(as principal: String, role: Role) async throws -> Clients {
        try connect(token: try await server.core.createToken(principal: principal, role: role).plaintext)
    }

    /// Files (relative paths) under `relative` in the data directory.
    func files(under relative: String) -> [String] {
        let root = dataDir.appendingPathComponent(relative)
        guard let e = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else {
            return []
        }
        return e.compactMap { item -> String? in
            guard let url = item as? URL, (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true
            else { return nil }
            return String(url.path.dropFirst(root.path.count + 1))
        }.sorted()
    }

    func stop() async {
        for c in clients { c.close() }
        await server.shutdown()
        try? FileManager.default.removeItem(at: dataDir)
    }
}

/// Runs `body` against a fresh server, stopping it afterwards even when `body` throws.
func withServer(
    templateImages: TemplateImagePolicy = .any, regionsFile: URL? = nil, maxMessageSize: Int = 4 << 20,
    transport: TestTransport = .inProcess, logger: Logger? = nil, _ body: (TestServer) async throws -> Void
) async throws {
    let server = try await TestServer(
        templateImages: templateImages, regionsFile: regionsFile, maxMessageSize: maxMessageSize,
        transport: transport, logger: logger)
    do {
        try await body(server)
    } catch {
        await server.stop()
        throw error
    }
    await server.stop()
}

/// Expects `body` to fail with `code` and a message containing every string of `fragments`.
func expectRPC(
    _ code: Status.Code, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> Void
) async {
    do {
        try await body()
        Issue.record("expected \(code), the call succeeded", sourceLocation: sourceLocation)
    } catch let error as RPCError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(
                error.message.contains(f), "message \"\(error.message)\" should mention \"\(f)\"",
                sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected RPCError \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

// MARK: - Request helpers

extension Clients {
    @discardableResult
    func createGallery(_ id: String, region: String = "eastus") async throws -> Labgallery_V1_Gallery {
        try await galleries.createGallery(
            .init(galleryId: id, gallery: .init(displayName: "Gallery \(id)", region: region)))
    }

    @discardableResult
    func createLabAccount(
        _ id: String, region: String = "eastus",
        gallery: Labgallery_V1_CreateLabAccountRequest.OneOf_Gallery? = nil
    ) async throws -> Labgallery_V1_LabAccount {
        try await labAccounts.createLabAccount(
            .init(
                labAccountId: id, labAccount: .init(displayName: "Account \(id)", region: region),
                gallery: gallery))
    }

    /// Uploads `bytes` in `chunkSize` pieces after the header. Send errors are ignored: the call's
    /// status (read by `response()`) is what the test checks.
    @discardableResult
    func upload(
        gallery: String, id: String, bytes: [UInt8], chunkSize: Int = 64 * 1024, osType: Labgallery_V1_OsType = .linux,
        osState: Labgallery_V1_OsState = .generalized, sha256: String = ""
    ) async throws -> Labgallery_V1_Image {
        try await uploadRaw(
            [
                .init(
                    data: .header(
                        .init(
                            gallery: gallery, imageId: id, displayName: "Image \(id)",
                            osType: osType, osState: osState, sha256: sha256)))
            ]
                + chunks(bytes, chunkSize))
    }

    func uploadRaw(_ messages: [Labgallery_V1_UploadImageRequest]) async throws -> Labgallery_V1_Image {
        let call = images.uploadImage()
        do {
            for m in messages { try await call.send(m) }
        } catch {}
        call.finish()
        return try await call.response()
    }

    func chunks(_ bytes: [UInt8], _ size: Int) -> [Labgallery_V1_UploadImageRequest] {
        stride(from: 0, to: bytes.count, by: size).map {
            .init(data: .chunk(Array(bytes[$0..<min($0 + size, bytes.count)])))
        }
    }

    /// A gallery `g`, an account `a` (eastus) with it attached, and one uploaded generalized image `img`.
    func standardSetup(image bytes: [UInt8] = Array("template bytes".utf8)) async throws {
        try await createGallery("g")
        try await createLabAccount("a", gallery: .attachGallery("galleries/g"))
        try await upload(gallery: "galleries/g", id: "img", bytes: bytes)
    }
}
