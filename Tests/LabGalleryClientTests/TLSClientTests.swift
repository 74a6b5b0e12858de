import Blocking
import Foundation
import LabGalleryClient
import LabGalleryServer
import Testing

/// The client library over TLS against a gallery server with TLS (and mTLS), with a throwaway CA
/// and certificates the openssl CLI makes (on the blocking executor, never the cooperative pool).
@Suite("LabGalleryClient over TLS")
struct TLSClientTests {
    /// PEM files in a fresh directory: ca, other-ca (trusted by nobody), server (127.0.0.1), client.
    struct Certificates {
        let dir: URL
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    }

    static func makeCertificates() async throws -> Certificates {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgc-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        let script = """
            set -e
            for ca in ca other-ca; do openssl req -x509 \(key) -days 2 -subj /CN=$ca -keyout $ca.key -out $ca.pem; done
            openssl req \(key) -subj /CN=server -keyout server.key -out server.csr
            printf 'subjectAltName=IP:127.0.0.1\\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem
            openssl req \(key) -subj /CN=client -keyout client.key -out client.csr
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem
            """
        try await BlockingExecutor.shared.run {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", script]
            process.currentDirectoryURL = dir
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
        }
        return Certificates(dir: dir)
    }

    /// A gallery server on 127.0.0.1 with TLS; returns it, its port and admin token.
    static func server(_ certs: Certificates, clientCA: Bool) async throws -> (GalleryServer, Int, String) {
        let data = certs.dir.appendingPathComponent("data-\(UUID().uuidString)")
        var configuration = ServerConfiguration(
            host: "127.0.0.1", port: 0, dataDirectory: data, shutdownGracePeriod: .seconds(1))
        configuration.tlsCertificateFile = certs.path("server.pem")
        configuration.tlsKeyFile = certs.path("server.key")
        configuration.tlsClientCAFile = clientCA ? certs.path("ca.pem") : nil
        let server = try await GalleryServer(configuration: configuration)
        let port = try await server.start()
        let token = try await BlockingExecutor.shared.run {
            try String(contentsOf: data.appendingPathComponent("admin.token"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return (server, port, token)
    }

    static func client(
        port: Int, token: String, ca: String, cert: String? = nil, key: String? = nil
    ) throws -> LabGalleryClient {
        try LabGalleryClient(
            configuration: .init(
                port: port, token: token, useTLS: true, retryPolicy: .init(maxAttempts: 1), caFile: ca,
                certificateFile: cert, keyFile: key))
    }

    @Test("TLS: calls work with the CA; another CA fails with the reason; a reload keeps serving")
    func tls() async throws {
        let certs = try await Self.makeCertificates()
        defer { try? FileManager.default.removeItem(at: certs.dir) }
        let (server, port, token) = try await Self.server(certs, clientCA: false)
        let client = try Self.client(port: port, token: token, ca: certs.path("ca.pem"))
        _ = try await client.allGalleries()
        await expectClientError(.unavailable, "certificate verify failed") {
            _ = try await Self.client(port: port, token: token, ca: certs.path("other-ca.pem")).allGalleries()
        }
        try await server.reloadTLS()
        _ = try await Self.client(port: port, token: token, ca: certs.path("ca.pem")).allGalleries()
        _ = try await client.allGalleries()  // the open connection goes on
        await server.shutdown()
    }

    @Test("mTLS: a client certificate from the CA is required")
    func mtls() async throws {
        let certs = try await Self.makeCertificates()
        defer { try? FileManager.default.removeItem(at: certs.dir) }
        let (server, port, token) = try await Self.server(certs, clientCA: true)
        let with = try Self.client(
            port: port, token: token, ca: certs.path("ca.pem"), cert: certs.path("client.pem"),
            key: certs.path("client.key"))
        _ = try await with.allGalleries()
        await expectClientError(.unavailable, "certificate") {
            _ = try await Self.client(port: port, token: token, ca: certs.path("ca.pem")).allGalleries()
        }
        await server.shutdown()
    }
}
