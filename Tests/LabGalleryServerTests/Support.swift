import Foundation
import GeneratedProtos
import H2RPC
import LabGalleryCore
import LabGalleryServer
import Testing

/// Adds `authorization: <value>` to every call.
struct Authorization: ClientInterceptor {
    let value: String
    func prepare(_ head: inout ClientRequestHead) throws {
        head.metadata.replace("authorization", value)
    }
}

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

/// A real `GalleryServer` on 127.0.0.1, port 0, over a fresh temp data directory,
/// with clients connecting through real sockets (H2ClientTransport).
final class TestServer {
    let dataDir: URL
    let server: GalleryServer
    let port: Int
    let adminToken: String
    private var clients: [RPCClient] = []

    init(templateImages: TemplateImagePolicy = .any, regionsFile: URL? = nil, maxMessageSize: Int = 4 << 20) async throws {
        dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("lgs-\(UUID().uuidString)")
        server = try await GalleryServer(
            configuration: ServerConfiguration(host: "127.0.0.1", port: 0, dataDirectory: dataDir,
                                               maxReceiveMessageSize: maxMessageSize, templateImages: templateImages,
                                               regionsFile: regionsFile, shutdownGracePeriod: .seconds(1)))
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
        let rpc = RPCClient(transport: try H2ClientTransport(host: "127.0.0.1", port: port),
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
        guard let e = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        return e.compactMap { item -> String? in
            guard let url = item as? URL, (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true else { return nil }
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
func withServer(templateImages: TemplateImagePolicy = .any, regionsFile: URL? = nil, maxMessageSize: Int = 4 << 20,
                _ body: (TestServer) async throws -> Void) async throws {
    let server = try await TestServer(templateImages: templateImages, regionsFile: regionsFile, maxMessageSize: maxMessageSize)
    do {
        try await body(server)
    } catch {
        await server.stop()
        throw error
    }
    await server.stop()
}

/// Expects `body` to fail with `code` and a message containing every string of `fragments`.
func expectRPC(_ code: Status.Code, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation,
               _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected \(code), the call succeeded", sourceLocation: sourceLocation)
    } catch let error as RPCError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(error.message.contains(f), "message \"\(error.message)\" should mention \"\(f)\"", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected RPCError \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

// MARK: - Request helpers

extension Clients {
    @discardableResult
    func createGallery(_ id: String, region: String = "eastus") async throws -> Labgallery_V1_Gallery {
        try await galleries.createGallery(.init(galleryId: id, gallery: .init(displayName: "Gallery \(id)", region: region)))
    }

    @discardableResult
    func createLabAccount(_ id: String, region: String = "eastus",
                          gallery: Labgallery_V1_CreateLabAccountRequest.OneOf_Gallery? = nil) async throws -> Labgallery_V1_LabAccount {
        try await labAccounts.createLabAccount(.init(labAccountId: id, labAccount: .init(displayName: "Account \(id)", region: region),
                                                     gallery: gallery))
    }

    /// Uploads `bytes` in `chunkSize` pieces after the header. Send errors are ignored: the call's
    /// status (read by `response()`) is what the test checks.
    @discardableResult
    func upload(gallery: String, id: String, bytes: [UInt8], chunkSize: Int = 64 * 1024, osType: Labgallery_V1_OsType = .linux,
                osState: Labgallery_V1_OsState = .generalized, sha256: String = "") async throws -> Labgallery_V1_Image {
        try await uploadRaw([.init(data: .header(.init(gallery: gallery, imageId: id, displayName: "Image \(id)",
                                                       osType: osType, osState: osState, sha256: sha256)))]
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
        stride(from: 0, to: bytes.count, by: size).map { .init(data: .chunk(Array(bytes[$0..<min($0 + size, bytes.count)]))) }
    }

    /// A gallery `g`, an account `a` (eastus) with it attached, and one uploaded generalized image `img`.
    func standardSetup(image bytes: [UInt8] = Array("template bytes".utf8)) async throws {
        try await createGallery("g")
        try await createLabAccount("a", gallery: .attachGallery("galleries/g"))
        try await upload(gallery: "galleries/g", id: "img", bytes: bytes)
    }
}

/// Deterministic pseudo-random bytes (so tests need no entropy and fail reproducibly).
func testBytes(_ count: Int, seed: UInt64 = 42) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
}

/// SHA-256 (FIPS 180-4), lowercase hex — an independent check of the server's checksum.
func sha256Hex(_ message: [UInt8]) -> String {
    let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]
    var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    var data = message
    let bitLength = UInt64(message.count) * 8
    data.append(0x80)
    while data.count % 64 != 56 { data.append(0) }
    for i in (0..<8).reversed() { data.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
    func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
    var w = [UInt32](repeating: 0, count: 64)
    for block in stride(from: 0, to: data.count, by: 64) {
        for t in 0..<16 {
            w[t] = (0..<4).reduce(0) { $0 << 8 | UInt32(data[block + t * 4 + $1]) }
        }
        for t in 16..<64 {
            let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
        for t in 0..<64 {
            let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[t] &+ w[t]
            let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
            (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
        }
        for (i, v) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] = h[i] &+ v }
    }
    return h.map { String(format: "%08x", $0) }.joined()
}

/// Runs blocking test work (database files of a stopped server, directory scans) off the cooperative pool.
func blocking<T>(_ body: () throws -> T) async throws -> T {
    try await BlockingExecutor.shared.run(body)
}

/// Waits for a child process to end on a thread made for blocking (never the cooperative pool,
/// which the servers under test share).
func waitUntilExit(_ process: Process) async {
    _ = try? await BlockingExecutor.shared.run { process.waitUntilExit() }
}

/// Waits until `condition` holds, checking every few milliseconds. The time-out only catches a
/// hang (the event never comes); it is not a performance bound.
func waitUntil(_ what: String, timeout: Duration = .seconds(120), sourceLocation: SourceLocation = #_sourceLocation,
               _ condition: () async throws -> Bool) async throws {
    let end = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < end else {
            Issue.record("timed out waiting for \(what)", sourceLocation: sourceLocation)
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}
