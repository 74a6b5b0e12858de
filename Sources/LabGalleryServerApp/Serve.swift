import ArgumentParser
import Blocking
import Dispatch
import Foundation
import LabGalleryCore
import LabGalleryPostgres
import LabGalleryServer
import Logging

/// `labgallery-server [serve]`: runs the server until SIGINT or SIGTERM.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the gallery API (the default command).",
        discussion: """
            The first line on stdout is `listening on HOST:PORT` (the bound port, also with --port 0; \
            [HOST]:PORT for an IPv6 address, unix:PATH with --unix). \
            On first start the server writes an admin token to <data-dir>/admin.token (mode 0600). \
            SIGINT or SIGTERM drains calls in flight, closes the database and exits 0. \
            With --tls-cert and --tls-key the server speaks TLS (ALPN h2); SIGHUP reloads those files \
            for new connections without dropping open ones.
            """
    )

    @Option(help: "Address to listen on; :: listens on IPv6 and IPv4 both.")
    var host: String = "127.0.0.1"

    @Option(help: "Listen on this Unix domain socket instead of --host/--port (clients: --endpoint unix:PATH).")
    var unix: String?

    @Option(help: "Port to listen on (0 picks a free port).")
    var port: UInt16 = 50051

    @OptionGroup var dataDir: DataDirectoryOption

    @OptionGroup var database: DatabaseOption

    @Option(help: "Largest request message accepted, in bytes (larger is RESOURCE_EXHAUSTED).")
    var maxMessageSize: Int = ServerConfiguration.defaultMaxReceiveMessageSize

    @Option(help: "Which images may be lab templates: any, or generalized-only (the older rule).")
    var templateImages: TemplateImagePolicy = .any

    @Option(help: "JSON region catalog {\"geographies\": {\"Name\": [\"region\", ...]}} replacing the built-in one.")
    var regionsFile: String?

    @Option(
        help:
            "JSON replication config: concurrency, maxAttempts, backoff, WAN model (per-region bandwidthMiBps/latencyMs) and injected faults (see README)."
    )
    var replicationConfig: String?

    @Option(help: "At most this many replication jobs at once (overrides the replication config).")
    var replicationConcurrency: Int?

    @Option(
        help:
            "Simulated WAN (bandwidth and latency per region): on or off (off copies at disk speed; overrides the replication config)."
    )
    var wanModel: String?

    // MARK: fleets (see README "Fleets: replication leases and watches")
    @Flag(
        help:
            "Fleet mode: replication jobs are leased in the database so several instances can share it and the data directory (implied by a PostgreSQL --database)."
    )
    var replicationLeases = false

    @Option(help: "Fleet mode: seconds a replication lease lasts without renewal (renewed every third of it).")
    var replicationLeaseSeconds: Double = 30

    @Option(help: "Fleet mode: this instance's id, recorded as the lease owner (default: <host>-<random hex>).")
    var instanceId: String?

    @Option(
        help:
            "JSON price sheet for GetGalleryCost: {\"currency\", \"storagePerGiBMonth\", \"egressPerGiB\", \"regions\"} (decimal strings)."
    )
    var priceSheet: String?

    @Option(
        help:
            "Threads for blocking work: database transactions, file I/O, fsync, hashing (default: 4 per core, at least 8)."
    )
    var blockingThreads: Int?

    // HTTP/2 stream and header limits (each unset: the transport's default).
    @Option(
        help:
            "SETTINGS_MAX_HEADER_LIST_SIZE, enforced: bytes of a received header block, name + value + 32 per field (default 16384)."
    )
    var maxHeaderListSize: UInt32?

    @Option(help: "Most fields in one received header block (default 100).")
    var maxHeaderCount: UInt32?

    @Option(
        help:
            "Rapid-reset guard: RST_STREAMs a connection may send at once before GOAWAY ENHANCE_YOUR_CALM (default 1000)."
    )
    var resetBurst: UInt32?

    @Option(help: "Rapid-reset guard: RST_STREAMs per second a connection may send after its burst (default 100).")
    var resetRate: UInt32?

    @Option(
        help:
            "Bytes of partially received messages held at once; past it windows stay closed (senders wait), past twice it plus one message RESOURCE_EXHAUSTED (default 67108864)."
    )
    var maxPartialBytes: Int?

    @Option(
        help:
            "Bytes of partially received messages one connection may hold before its windows stay closed (default 8388608)."
    )
    var maxPartialBytesPerConnection: Int?

    @Option(
        help:
            "Bytes of responses a connection's client has not read; past it the connection's new calls are RESOURCE_EXHAUSTED (default 16777216)."
    )
    var maxUnreadBytesPerConnection: Int?

    @Option(
        help:
            "Bytes of unread responses in all; past it a connection with over 64 KiB unread has its new calls refused (default 67108864)."
    )
    var maxUnreadBytes: Int?
    // Connection limits (README "Limits: connections").
    @Option(
        help:
            "Most connections at once; 0: min(10000, RLIMIT_NOFILE less a quarter of it, at least 64 less, kept for files)."
    )
    var maxConnections: Int = 0

    @Option(help: "Most connections from one IPv4 address or IPv6 /64; 0: no cap.")
    var maxConnectionsPerAddress: Int = 1000

    @Option(help: "Seconds a new connection has to send the HTTP/2 preface and SETTINGS; 0: no limit.")
    var handshakeTimeout: Double = 10

    @Option(help: "Seconds without calls before a connection gets GOAWAY and is closed; 0: never.")
    var idleTimeout: Double = 300

    @Option(help: "TLS: the PEM certificate chain (leaf first) to serve; with --tls-key. Default: cleartext h2c.")
    var tlsCert: String?

    @Option(help: "TLS: the PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(help: "mTLS: clients must present a certificate signed by this PEM CA file (needs --tls-cert).")
    var tlsClientCa: String?

    // Keepalive and connection lifetimes (README "Connections: keepalive, lifetimes, finding the server").
    @OptionGroup var keepalive: KeepaliveOptions

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(
        help:
            "Log format on stderr: text (key=value) or json (one JSON object per line). Either way, an access line per call at info."
    )
    var logFormat: Logs.Format = .text

    // MARK: Limits: the gallery API (issue 10)

    @Option(help: "At most this many replication watch streams open at once, in all (more: RESOURCE_EXHAUSTED).")
    var maxWatchers: Int = LabGalleryConfiguration.defaultMaxWatchers

    @Option(help: "At most this many replication watch streams open at once per caller (more: RESOURCE_EXHAUSTED).")
    var maxWatchersPerCaller: Int = LabGalleryConfiguration.defaultMaxWatchersPerCaller

    @Option(help: "At most this many replication watch streams open at once per connection (more: RESOURCE_EXHAUSTED).")
    var maxWatchersPerConnection: Int = LabGalleryConfiguration.defaultMaxWatchersPerConnection

    // MARK: limits on calls (see README "Limits: calls")
    @OptionGroup var callLimits: CallLimitOptions

    func validate() throws {
        guard maxMessageSize > 0 else { throw ValidationError("--max-message-size must be positive") }
        if let n = replicationConcurrency, n < 1 {
            throw ValidationError("--replication-concurrency must be at least 1")
        }
        if let w = wanModel, w != "on", w != "off" { throw ValidationError("--wan-model must be on or off") }
        guard replicationLeaseSeconds >= 1, replicationLeaseSeconds <= 3600 else {
            throw ValidationError("--replication-lease-seconds must be between 1 and 3600")
        }
        if let id = instanceId, id.isEmpty || id.count > 200 {
            throw ValidationError("--instance-id must be 1 to 200 characters")
        }
        if let n = blockingThreads, n < 1 { throw ValidationError("--blocking-threads must be at least 1") }
        guard maxWatchers >= 1 else { throw ValidationError("--max-watchers must be at least 1") }
        guard maxWatchersPerCaller >= 1 else { throw ValidationError("--max-watchers-per-caller must be at least 1") }
        guard maxWatchersPerConnection >= 1 else {
            throw ValidationError("--max-watchers-per-connection must be at least 1")
        }
        for (flag, value) in [
            ("--max-header-list-size", maxHeaderListSize), ("--max-header-count", maxHeaderCount),
            ("--reset-burst", resetBurst), ("--reset-rate", resetRate),
        ] where value == 0 {
            throw ValidationError("\(flag) must be at least 1")
        }
        for (flag, value) in [
            ("--max-partial-bytes", maxPartialBytes),
            ("--max-partial-bytes-per-connection", maxPartialBytesPerConnection),
            ("--max-unread-bytes-per-connection", maxUnreadBytesPerConnection), ("--max-unread-bytes", maxUnreadBytes),
        ] {
            if let value, value < 1 { throw ValidationError("\(flag) must be at least 1") }
        }
        if maxConnections < 0 || maxConnectionsPerAddress < 0 {
            throw ValidationError("--max-connections and --max-connections-per-address must not be negative")
        }
        if !(handshakeTimeout >= 0) || !(idleTimeout >= 0) {
            throw ValidationError("--handshake-timeout and --idle-timeout must be seconds, 0 or more")
        }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if unix != nil && tlsCert != nil {
            throw ValidationError(
                "--unix serves cleartext on this machine only; drop --tls-cert/--tls-key, or use --host/--port")
        }
        if tlsClientCa != nil && tlsCert == nil {
            throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key")
        }
    }

    func run() async throws {
        Logs.bootstrap(level: logLevel, format: logFormat)
        let logger = Logger(label: "labgallery-server")
        var replication = ReplicationConfiguration()
        var prices = PriceSheet.default
        do {
            if let path = replicationConfig {
                replication = try ReplicationConfiguration(contentsOf: URL(fileURLWithPath: path))
            }
            if let path = priceSheet { prices = try PriceSheet(contentsOf: URL(fileURLWithPath: path)) }
        } catch {
            logger.critical("bad configuration file", metadata: ["error": "\(error.message)"])
            throw ExitCode.failure
        }
        if let n = replicationConcurrency { replication.concurrency = n }
        if let w = wanModel { replication.wanModel = w == "on" }
        if replicationLeases || database.url != nil {
            let lease = Duration.milliseconds(Int64(replicationLeaseSeconds * 1000))
            replication.fleet =
                instanceId.map { ReplicationFleetSettings(instanceID: $0, leaseDuration: lease) }
                ?? ReplicationFleetSettings(leaseDuration: lease)
        }
        var configuration = ServerConfiguration(
            host: host, port: port, dataDirectory: dataDir.url, maxReceiveMessageSize: maxMessageSize,
            templateImages: templateImages, regionsFile: regionsFile.map { URL(fileURLWithPath: $0) },
            replication: replication, priceSheet: prices, blockingThreads: blockingThreads)
        configuration.databaseURL = database.url
        configuration.databasePoolSize = database.databasePoolSize
        // A fleet on PostgreSQL: watchers here follow jobs copied by other instances through
        // LISTEN/NOTIFY (a bad URL fails below, when the storage opens, with its own message).
        let feed = database.url.flatMap { try? PostgresTarget($0) }.map { PostgresChangeFeed(target: $0) }
        if let feed { configuration.replicationChangeFeed = feed }
        configuration.maxWatchers = maxWatchers
        configuration.maxWatchersPerCaller = maxWatchersPerCaller
        configuration.maxWatchersPerConnection = maxWatchersPerConnection
        configuration.streamLimits = HTTP2StreamLimits(
            maxHeaderListSize: maxHeaderListSize, maxHeaderCount: maxHeaderCount, resetBurst: resetBurst,
            resetRate: resetRate, maxPartialMessageBytes: maxPartialBytes,
            maxPartialMessageBytesPerConnection: maxPartialBytesPerConnection,
            maxUnreadResponseBytesPerConnection: maxUnreadBytesPerConnection, maxUnreadResponseBytes: maxUnreadBytes)
        configuration.maxConnections = maxConnections
        configuration.maxConnectionsPerAddress = maxConnectionsPerAddress
        configuration.handshakeTimeout = .milliseconds(Int64(min(handshakeTimeout, 4e6) * 1000))
        configuration.idleTimeout = .milliseconds(Int64(min(idleTimeout, 4e6) * 1000))
        configuration.callLimits = callLimits.limits
        configuration.tlsCertificateFile = tlsCert
        configuration.tlsKeyFile = tlsKey
        configuration.tlsClientCAFile = tlsClientCa
        configuration.keepaliveTime = KeepaliveOptions.duration(keepalive.keepaliveTime)
        configuration.keepaliveTimeout = KeepaliveOptions.duration(keepalive.keepaliveTimeout)
        configuration.minPingInterval = KeepaliveOptions.duration(keepalive.minPingInterval)
        configuration.maxConnectionAge = KeepaliveOptions.duration(keepalive.maxConnectionAge)
        configuration.maxConnectionAgeGrace = KeepaliveOptions.duration(keepalive.maxConnectionAgeGrace)
        configuration.unixSocketPath = unix
        let listening = unix.map { "unix:\($0)" }
        // The log names the database without its password.
        let databaseDisplay = database.url.map { (try? PostgresTarget($0).display) ?? "postgresql" } ?? "sqlite"
        let hostPort = { (port: Int) in host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

        // Ignore the default actions first so a signal arriving during startup is not fatal;
        // the dispatch sources below then deliver them as events.
        let (signals, delivered) = AsyncStream.makeStream(of: Int32.self)
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { delivered.yield(sig) }
            source.resume()
            sources.append(source)
        }

        let server: GalleryServer
        let port: Int
        do {
            server = try await GalleryServer(configuration: configuration, logger: logger)
            port = try await server.start()
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)", "data_dir": "\(dataDir.path)"])
            if let feed { try? await BlockingExecutor.shared.run { feed.close() } }
            throw ExitCode.failure
        }
        // The first stdout line is the contract scripts and tests wait for.
        print("listening on \(listening ?? hostPort(port))")
        fflush(nil)
        logger.notice(
            "listening on \(listening ?? hostPort(port))",
            metadata: [
                "data_dir": "\(configuration.dataDirectory.path)",
                "database": "\(databaseDisplay)",
                "max_message_size": "\(maxMessageSize)",
                "template_images": "\(templateImages == .any ? "any" : "generalized-only")",
                "replication_concurrency": "\(replication.concurrency)",
                "wan_model": "\(replication.wanModel ? "on" : "off")",
                "replication_leases": "\(replication.fleet.map { "\($0.instanceID), \($0.leaseDuration)" } ?? "off")",
                "tls": "\(tlsCert == nil ? "off" : tlsClientCa == nil ? "on" : "mtls")",
            ])

        var received: Int32 = 0
        for await sig in signals {
            if sig == SIGHUP {
                await reloadCertificates(server, logger: logger)
                continue
            }
            received = sig
            break
        }
        logger.notice("shutting down", metadata: ["signal": "\(received == SIGINT ? "SIGINT" : "SIGTERM")"])
        await server.shutdown()
        if let feed { try? await BlockingExecutor.shared.run { feed.close() } }
        for source in sources { source.cancel() }
        logger.notice("stopped")
    }

    /// SIGHUP: the TLS files again, for new connections (open ones keep theirs).
    private func reloadCertificates(_ server: GalleryServer, logger: Logger) async {
        guard server.servesTLS else {
            logger.notice("SIGHUP ignored: the server does not serve TLS")
            return
        }
        do {
            try await server.reloadTLS()
            logger.notice(
                "TLS certificates reloaded", metadata: ["cert": "\(tlsCert ?? "")", "key": "\(tlsKey ?? "")"])
        } catch {
            logger.error(
                "TLS certificates not reloaded; the old ones stay in use", metadata: ["error": "\(error)"])
        }
    }
}

// MARK: limits on calls

/// The flags of ``ServerConfiguration/CallLimits``.
struct CallLimitOptions: ParsableArguments {
    @Option(
        help:
            "Seconds after its headers within which a unary or server-streaming call's request must be complete (else DEADLINE_EXCEEDED)."
    )
    var requestTimeout: Double = 30

    @Option(help: "Largest request message, in bytes, of every method but UploadImage (larger is RESOURCE_EXHAUSTED).")
    var smallMessageSize: Int = ServerConfiguration.CallLimits().smallRequestMessageSize

    @Option(
        help:
            "Most request bytes held by calls whose request is not complete; past it the oldest end with RESOURCE_EXHAUSTED."
    )
    var maxHeldRequestBytes: Int = ServerConfiguration.CallLimits().maxHeldRequestBytes

    @Option(help: "Most unknown fields a request message may carry (more is RESOURCE_EXHAUSTED).")
    var maxUnknownFields: Int = ServerConfiguration.CallLimits().maxUnknownFields

    func validate() throws {
        guard requestTimeout > 0 else { throw ValidationError("--request-timeout must be positive") }
        guard smallMessageSize > 0 else { throw ValidationError("--small-message-size must be positive") }
        guard maxHeldRequestBytes > 0 else { throw ValidationError("--max-held-request-bytes must be positive") }
        guard maxUnknownFields >= 0 else { throw ValidationError("--max-unknown-fields must not be negative") }
    }

    var limits: ServerConfiguration.CallLimits {
        var limits = ServerConfiguration.CallLimits()
        limits.requestTimeout = .milliseconds(Int64((requestTimeout * 1000).rounded()))
        limits.smallRequestMessageSize = smallMessageSize
        limits.maxHeldRequestBytes = maxHeldRequestBytes
        limits.maxUnknownFields = maxUnknownFields
        return limits
    }
}

// MARK: keepalive and connection lifetimes

/// The keepalive and lifetime flags, in seconds (0 turns each off), as grpc's server options.
struct KeepaliveOptions: ParsableArguments {
    @Option(help: "Seconds without anything received before the server PINGs a connection; 0: never.")
    var keepaliveTime: Double = 7200

    @Option(help: "Seconds a keepalive PING may go unanswered before the connection is closed as dead; 0: forever.")
    var keepaliveTimeout: Double = 20

    @Option(
        help:
            "Seconds a client must leave between PINGs without calls' data; the third early one gets GOAWAY too_many_pings. 0: no limit."
    )
    var minPingInterval: Double = 300

    @Option(help: "Seconds (±10 %) after which a connection gets GOAWAY and clients reconnect; 0: no limit.")
    var maxConnectionAge: Double = 0

    @Option(
        help: "Seconds after the max-age GOAWAY before the connection closes even with calls open; 0: wait for them.")
    var maxConnectionAgeGrace: Double = 0

    func validate() throws {
        for (flag, value) in [
            ("--keepalive-time", keepaliveTime), ("--keepalive-timeout", keepaliveTimeout),
            ("--min-ping-interval", minPingInterval), ("--max-connection-age", maxConnectionAge),
            ("--max-connection-age-grace", maxConnectionAgeGrace),
        ] where !(value >= 0) {
            throw ValidationError("\(flag) must be seconds, 0 or more")
        }
    }

    /// `seconds` as a Duration (capped where the shim's milliseconds end, about 49 days).
    static func duration(_ seconds: Double) -> Duration { .milliseconds(Int64((min(seconds, 4e6) * 1000).rounded())) }
}
