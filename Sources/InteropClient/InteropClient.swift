import ArgumentParser
import H2RPC
import H2RPCNGHTTP2Transport
import Interop

#if canImport(Glibc)
    import Glibc
#endif

/// `interop-client`: runs grpc's interop client test cases against a TestService server.
@main
struct InteropClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interop-client",
        abstract: "Runs gRPC interop test cases against a grpc.testing.TestService server (h2c, or TLS).",
        discussion: "Test cases: \(InteropTestCase.allCases.map(\.name).joined(separator: ", ")), or all.")

    @Option(name: .customLong("server_host"), help: "The server's host name or address.")
    var serverHost: String = "127.0.0.1"

    @Option(name: .customLong("server_port"), help: "The server's port.")
    var serverPort: Int

    @Option(name: .customLong("test_case"), help: "The test case to run, or 'all'.")
    var testCase: String = "all"

    @Option(name: .customLong("use_tls"), help: "Connect with TLS (ALPN h2), verifying the server's certificate.")
    var useTLS: Bool = false

    @Option(
        name: .customLong("ca_file"),
        help:
            "With --use_tls=true: the PEM CA file the server's certificate is checked against (default: the system's).")
    var caFile: String?

    @Option(
        name: .customLong("server_host_override"),
        help:
            "With --use_tls=true: the name the server's certificate must carry (and the SNI) instead of --server_host.")
    var serverHostOverride: String?

    @Option(name: .customLong("case_timeout"), help: "Seconds after which a test case that has not finished fails.")
    var caseTimeout: Int = 30

    @Argument(parsing: .allUnrecognized, help: .hidden)
    var ignored: [String] = []

    func validate() throws {
        if !useTLS && caFile != nil {
            throw ValidationError("--ca_file needs --use_tls=true")
        }
        if testCase != "all" && InteropTestCase(rawValue: testCase) == nil {
            throw ValidationError(
                "unknown test case '\(testCase)'; known: \(InteropTestCase.allCases.map(\.name).joined(separator: ", ")), all"
            )
        }
    }

    func run() async throws {
        if !ignored.isEmpty {
            var bytes = Array(
                "interop-client: ignoring unsupported arguments: \(ignored.joined(separator: " "))\n".utf8)
            bytes.withUnsafeMutableBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
        }
        let cases = InteropTestCase(rawValue: testCase).map { [$0] } ?? InteropTestCase.allCases
        let tls = useTLS ? H2TLSClientConfiguration(caFile: caFile, serverNameOverride: serverHostOverride) : nil
        let client = RPCClient(transport: try H2ClientTransport(host: serverHost, port: serverPort, tls: tls))
        defer { client.close() }
        var failures = 0
        for testCase in cases {
            do {
                try await run(testCase, client: client)
                print("PASS \(testCase.name)")
            } catch {
                failures += 1
                print("FAIL \(testCase.name): \(error)")
            }
            fflush(nil)
        }
        if failures > 0 { throw ExitCode(1) }
    }

    /// Runs one case, failing it if it has not finished within `caseTimeout` seconds.
    private func run(_ testCase: InteropTestCase, client: RPCClient) async throws {
        let limit = caseTimeout
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await testCase.run(client: client) }
            group.addTask {
                try await Task.sleep(for: .seconds(limit))
                throw InteropTestFailure("did not finish within \(limit) seconds")
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }
}
