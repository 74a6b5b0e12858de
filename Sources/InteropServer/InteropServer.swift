import ArgumentParser
import Dispatch
import H2RPC
import H2RPCHealth
import H2RPCNGHTTP2Transport
import H2RPCReflection
import Interop

#if canImport(Glibc)
    import Glibc
#endif

/// `interop-server`: serves `grpc.testing.TestService` for grpc's interop clients, and the
/// standard health service (`grpc.health.v1.Health`, with `grpc.testing.TestService` SERVING) and
/// server reflection (`grpc.reflection.v1` and `v1alpha`).
@main
struct InteropServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interop-server",
        abstract: "Serves grpc.testing.TestService (the gRPC interop test server) over h2c, or TLS with --use_tls=true."
    )

    @Option(name: .customLong("port"), help: "The port to listen on (0 picks a free one).")
    var port: UInt16 = 0

    @Option(
        name: .customLong("host"),
        help: "The address to listen on; by default every interface (IPv6 dual stack, else IPv4).")
    var host: String?

    @Option(
        name: .customLong("executor"),
        help:
            "Where handlers run: 'loop' (the event-loop thread; these handlers never block) or 'global' (Swift's global executor)."
    )
    var executor: String = "loop"

    @Option(
        name: .customLong("max_concurrent_streams"),
        help: "SETTINGS_MAX_CONCURRENT_STREAMS per connection; excess streams are refused.")
    var maxConcurrentStreams: UInt32 = 1000

    @Option(name: .customLong("event_loops"), help: "Event-loop threads sharing the port (default: one per core).")
    var eventLoops: Int = ProcessInfoCores.count

    // HTTP/2 stream and header limits (defaults: H2Configuration's).
    @Option(
        name: .customLong("max_header_list_size"),
        help: "SETTINGS_MAX_HEADER_LIST_SIZE, enforced: bytes of a received header block (name + value + 32 per field)."
    )
    var maxHeaderListSize: UInt32 = H2Configuration().maxHeaderListSize

    @Option(name: .customLong("max_header_count"), help: "Most fields in one received header block.")
    var maxHeaderCount: UInt32 = H2Configuration().maxHeaderCount

    @Option(
        name: .customLong("reset_burst"),
        help: "Rapid-reset guard: RST_STREAMs a connection may send at once before GOAWAY ENHANCE_YOUR_CALM.")
    var resetBurst: UInt32 = H2Configuration().resetBurst

    @Option(
        name: .customLong("reset_rate"),
        help: "Rapid-reset guard: RST_STREAMs per second a connection may send after its burst.")
    var resetRate: UInt32 = H2Configuration().resetRate

    @Option(
        name: .customLong("max_partial_bytes"),
        help: "Bytes of partially received messages held at once; past it windows stay closed (senders wait).")
    var maxPartialBytes: Int = H2Configuration().maxPartialMessageBytes

    @Option(
        name: .customLong("max_partial_bytes_per_connection"),
        help: "Bytes of partially received messages one connection may hold before its windows stay closed.")
    var maxPartialBytesPerConnection: Int = H2Configuration().maxPartialMessageBytesPerConnection

    @Option(
        name: .customLong("max_unread_bytes_per_connection"),
        help: "Bytes of responses a connection's client has not read; past it its new calls are RESOURCE_EXHAUSTED.")
    var maxUnreadBytesPerConnection: Int = H2Configuration().maxUnreadResponseBytesPerConnection

    @Option(
        name: .customLong("max_unread_bytes"),
        help:
            "Bytes of unread responses in all; past it a connection with over 64 KiB unread has its new calls refused.")
    var maxUnreadBytes: Int = H2Configuration().maxUnreadResponseBytes
    // Connection limits (README "Limits: connections").
    @Option(
        name: .customLong("max_connections"),
        help: "Most connections at once; 0: min(10000, RLIMIT_NOFILE less a quarter, at least 64 less).")
    var maxConnections: Int = 0

    @Option(
        name: .customLong("max_connections_per_address"),
        help: "Most connections from one IPv4 address or IPv6 /64; 0: no cap.")
    var maxConnectionsPerAddress: Int = 1000

    @Option(
        name: .customLong("handshake_timeout"),
        help: "Seconds a new connection has to send the HTTP/2 preface and SETTINGS; 0: no limit.")
    var handshakeTimeout: Double = 10

    @Option(
        name: .customLong("idle_timeout"), help: "Seconds without calls before GOAWAY and close; 0: never.")
    var idleTimeout: Double = 300

    // Keepalive and connection lifetimes: grpc's underscore style, and labgallery-server's spelling.
    @Option(
        name: [.customLong("keepalive_time"), .customLong("keepalive-time")],
        help: "Seconds without anything received before a PING; 0: never.")
    var keepaliveTime: Double = 7200

    @Option(
        name: [.customLong("keepalive_timeout"), .customLong("keepalive-timeout")],
        help: "Seconds a keepalive PING may go unanswered before the connection is closed; 0: forever.")
    var keepaliveTimeout: Double = 20

    @Option(
        name: [.customLong("min_ping_interval"), .customLong("min-ping-interval")],
        help: "Seconds a client must leave between PINGs without data (else GOAWAY too_many_pings); 0: no limit.")
    var minPingInterval: Double = 300

    @Option(
        name: [.customLong("max_connection_age"), .customLong("max-connection-age")],
        help: "Seconds (±10 %) before a connection gets GOAWAY; 0: no limit.")
    var maxConnectionAge: Double = 0

    @Option(
        name: [.customLong("max_connection_age_grace"), .customLong("max-connection-age-grace")],
        help: "Seconds after the max-age GOAWAY before closing with calls open; 0: wait for them.")
    var maxConnectionAgeGrace: Double = 0

    @Option(name: .customLong("use_tls"), help: "Serve TLS (ALPN h2) with --tls_cert_file and --tls_key_file.")
    var useTLS: Bool = false

    @Option(name: .customLong("tls_cert_file"), help: "With --use_tls=true: the PEM certificate chain (leaf first).")
    var tlsCertFile: String?

    @Option(name: .customLong("tls_key_file"), help: "With --use_tls=true: the PEM private key.")
    var tlsKeyFile: String?

    @Argument(parsing: .allUnrecognized, help: .hidden)
    var ignored: [String] = []

    func validate() throws {
        if useTLS && (tlsCertFile == nil || tlsKeyFile == nil) {
            throw ValidationError("--use_tls=true needs --tls_cert_file PEM and --tls_key_file PEM")
        }
        if !useTLS && (tlsCertFile != nil || tlsKeyFile != nil) {
            throw ValidationError("--tls_cert_file and --tls_key_file need --use_tls=true")
        }
        if maxConnections < 0 || maxConnectionsPerAddress < 0 {
            throw ValidationError("--max_connections and --max_connections_per_address must not be negative")
        }
        if !(handshakeTimeout >= 0) || !(idleTimeout >= 0) {
            throw ValidationError("--handshake_timeout and --idle_timeout must be seconds, 0 or more")
        }
        for value in [keepaliveTime, keepaliveTimeout, minPingInterval, maxConnectionAge, maxConnectionAgeGrace]
        where !(value >= 0) {
            throw ValidationError("the keepalive and connection age flags must be seconds, 0 or more")
        }
    }

    func run() async throws {
        if !ignored.isEmpty {
            StandardError.write("interop-server: ignoring unsupported arguments: \(ignored.joined(separator: " "))\n")
        }
        // Ignore the default dispositions first so the dispatch sources receive the signals.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let (signals, continuation) = AsyncStream<Int32>.makeStream()
        let sources = [SIGINT, SIGTERM].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }

        let health = HealthService()
        health.setStatus(.serving, for: InteropTestService.serviceName)
        let (server, transport) = try startServer(health: health)
        print("listening on port \(transport.boundPort)")
        fflush(nil)

        var iterator = signals.makeAsyncIterator()
        let received = await iterator.next() ?? SIGTERM
        StandardError.write("interop-server: signal \(received), shutting down\n")
        health.shutdown()  // NOT_SERVING, and ends health watches so they do not hold the shutdown up
        await server.shutdown(gracePeriod: .seconds(5))
        for source in sources { source.cancel() }
    }

    /// Starts the server on the requested host, or on `::` falling back to `0.0.0.0`.
    private func startServer(health: HealthService) throws -> (RPCServer, H2ServerTransport) {
        let hosts = host.map { [$0] } ?? ["::", "0.0.0.0"]
        // Startup, before any call: reading the two PEM files here blocks nothing else.
        let tls = try tlsCertFile.map { try H2TLSServerContext(certificateFile: $0, keyFile: tlsKeyFile ?? "") }
        var lastError: (any Error)?
        for candidate in hosts {
            do {
                var configuration = H2Configuration(
                    maxConcurrentStreams: maxConcurrentStreams,
                    runHandlersOnEventLoop: executor != "global", eventLoops: eventLoops)
                configuration.maxHeaderListSize = maxHeaderListSize
                configuration.maxHeaderCount = maxHeaderCount
                configuration.resetBurst = resetBurst
                configuration.resetRate = resetRate
                configuration.maxPartialMessageBytes = maxPartialBytes
                configuration.maxPartialMessageBytesPerConnection = maxPartialBytesPerConnection
                configuration.maxUnreadResponseBytesPerConnection = maxUnreadBytesPerConnection
                configuration.maxUnreadResponseBytes = maxUnreadBytes
                configuration.maxConnections = maxConnections
                configuration.maxConnectionsPerAddress = maxConnectionsPerAddress
                configuration.handshakeTimeout = .milliseconds(Int64(min(handshakeTimeout, 4e6) * 1000))
                configuration.idleTimeout = .milliseconds(Int64(min(idleTimeout, 4e6) * 1000))
                configuration.keepaliveTime = .milliseconds(Int64(min(keepaliveTime, 4e6) * 1000))
                configuration.keepaliveTimeout = .milliseconds(Int64(min(keepaliveTimeout, 4e6) * 1000))
                configuration.minPingInterval = .milliseconds(Int64(min(minPingInterval, 4e6) * 1000))
                configuration.maxConnectionAge = .milliseconds(Int64(min(maxConnectionAge, 4e6) * 1000))
                configuration.maxConnectionAgeGrace = .milliseconds(Int64(min(maxConnectionAgeGrace, 4e6) * 1000))
                configuration.connectionLog = { StandardError.write("interop-server: \($0)\n") }
                let transport = try H2ServerTransport(
                    host: candidate, port: port, configuration: configuration, tls: useTLS ? tls : nil)
                let services: [any RegistrableRPCService] = [InteropTestService(), health]
                let server = RPCServer(
                    transport: transport, services: services + [ReflectionService(serving: services)])
                try server.start()
                return (server, transport)
            } catch {
                lastError = error
            }
        }
        throw lastError ?? ValidationError("no address to listen on")
    }
}

/// Writes diagnostics to standard error.
enum StandardError {
    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

/// The number of online CPU cores.
enum ProcessInfoCores {
    static var count: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}
