import Blocking
import Foundation
import GeneratedProtos
import H2RPC
import H2RPCHealth
import H2RPCNGHTTP2Transport
import H2RPCReflection
import LabGalleryCore
import Logging

/// The gallery API server: the core, its services, authentication, health, on a transport: an
/// HTTP/2 listener (nghttp2) by default, or any `ServerTransport` (e.g. in-process, for tests).
///
/// `init` prepares the data directory (open and migrate the database, startup file recovery,
/// first-start admin token); ``start()`` listens; ``shutdown()`` drains and closes the database.
public final class GalleryServer: Sendable {
    /// The domain core the services run on.
    public let core: LabGalleryService
    /// The configuration the server was created with.
    public let configuration: ServerConfiguration
    /// The replication engine (started by `init`, stopped by ``shutdown()``).
    public let replication: ReplicationEngine
    private let transport: any ServerTransport
    /// The HTTP/2 listener, when the server made its own (it knows the bound port).
    private let listener: H2ServerTransport?
    /// Its TLS certificates (reloaded by ``reloadTLS()``), when it serves TLS.
    private let tls: H2TLSServerContext?
    private let server: RPCServer
    private let health: HealthService
    private let logger: Logger

    /// The gallery services, in registration order (their names are reported SERVING by health).
    static let serviceNames = [
        Labgallery_V1_LabAccountService.descriptorName, Labgallery_V1_GalleryService.descriptorName,
        Labgallery_V1_ImageService.descriptorName, Labgallery_V1_LabService.descriptorName,
        Labgallery_V1_ReplicationService.descriptorName, Labgallery_V1_BillingService.descriptorName,
    ]

    /// Opens the data directory and builds the server (not listening yet).
    ///
    /// Runs start-up recovery (interrupted uploads and copies, interrupted blob life cycles, files
    /// no row names moved to `lost+found`), reconciles replication with the region catalog and, on
    /// first start, writes `<data-dir>/admin.token` (mode 0600); the log names the file, never the
    /// token. All of it runs on the blocking executor, never on the cooperative pool.
    /// `transport` nil: HTTP/2 on `configuration.host`/`port` with its message size limit; otherwise
    /// calls come from `transport` (its own limits apply; `host` and `port` are unused).
    /// `logger` nil: no logging (for embedding and tests).
    public init(configuration: ServerConfiguration, transport: (any ServerTransport)? = nil, logger: Logger? = nil)
        async throws
    {
        let logger = logger ?? Logger(label: "labgallery-server", factory: { _ in SwiftLogNoOpLogHandler() })
        self.configuration = configuration
        self.logger = logger
        let executor = configuration.blockingThreads.map { BlockingExecutor(maxThreads: $0) } ?? .shared
        let core = try await executor.run { () throws(LabGalleryError) in
            let core = try LabGalleryService.open(
                dataDirectory: configuration.dataDirectory, database: configuration.databaseURL,
                poolSize: configuration.databasePoolSize, configuration: try configuration.coreConfiguration(),
                executor: executor)
            // Fleet mode: other instances may be working in the data directory right now.
            let recovery = try core.recoverFiles(
                fleetGrace: configuration.replication.fleet.map { _ in .seconds(3600) })
            if !recovery.removedTempFiles.isEmpty || !recovery.removedBlobs.isEmpty {
                logger.notice(
                    "startup recovery removed files",
                    metadata: [
                        "temp_files": "\(recovery.removedTempFiles.count)",
                        "unreferenced_blobs": "\(recovery.removedBlobs.count)",
                    ])
            }
            if let dir = recovery.lostAndFoundDirectory {
                for path in recovery.lostAndFound {
                    logger.warning(
                        "file unknown to the database moved to \(dir)/\(path)", metadata: ["file": "\(path)"])
                }
            }
            let catalog = try core.reconcileCatalog()
            for added in catalog.added {
                logger.notice(
                    "new catalog region: replication queued",
                    metadata: ["image": "\(added.image)", "region": "\(added.region)"])
            }
            for image in catalog.imagesOutsideCatalog {
                logger.warning(
                    "image stored in a region that is not in the region catalog (see labgallery-server fsck)",
                    metadata: ["image": "\(image)"])
            }
            let bootstrap = try core.bootstrapAdminToken()
            if bootstrap.created {
                logger.notice("admin token written to \(bootstrap.path.path)", metadata: ["mode": "0600"])
            }
            return core
        }
        self.core = core
        let replication = ReplicationEngine(
            service: core, configuration: configuration.replication, changeFeed: configuration.replicationChangeFeed)
        self.replication = replication
        health = HealthService()
        for name in Self.serviceNames { health.setStatus(.serving, for: name) }
        if let transport {
            self.transport = transport
            listener = nil
            tls = nil
        } else {
            let tls: H2TLSServerContext?
            if let cert = configuration.tlsCertificateFile, let key = configuration.tlsKeyFile {
                tls = try await executor.run {
                    try H2TLSServerContext(
                        certificateFile: cert, keyFile: key, clientCAFile: configuration.tlsClientCAFile)
                }
            } else {
                tls = nil
            }
            self.tls = tls
            var h2 = H2Configuration(maxReceiveMessageSize: configuration.maxReceiveMessageSize)
            h2.maxConnections = configuration.maxConnections
            h2.maxConnectionsPerAddress = configuration.maxConnectionsPerAddress
            h2.handshakeTimeout = configuration.handshakeTimeout
            h2.idleTimeout = configuration.idleTimeout
            h2.connectionLog = { logger.warning("\($0)") }
            h2.keepaliveTime = configuration.keepaliveTime
            h2.keepaliveTimeout = configuration.keepaliveTimeout
            h2.minPingInterval = configuration.minPingInterval
            h2.maxConnectionAge = configuration.maxConnectionAge
            h2.maxConnectionAgeGrace = configuration.maxConnectionAgeGrace
            let applied = configuration.streamLimits.applied(to: h2)
            let listener =
                try configuration.unixSocketPath.map { try H2ServerTransport(unixPath: $0, configuration: applied) }
                ?? H2ServerTransport(
                    host: configuration.host, port: configuration.port, configuration: applied, tls: tls)
            self.transport = listener
            self.listener = listener
        }
        let services: [any RegistrableRPCService] = [
            LabAccountService(core: core), GalleryService(core: core), ImageService(core: core),
            LabService(core: core), ReplicationService(core: core),
            BillingService(core: core, priceSheet: configuration.priceSheet), health,
        ]
        server = RPCServer(
            transport: self.transport,
            services: services + [ReflectionService(serving: services)],
            interceptors: [AuthenticationInterceptor(core: core, logger: logger), CallLogInterceptor(logger: logger)],
            limits: Self.callLimits(configuration), observer: AccessLog(logger: logger))
        RPCMessageLimits.maxUnknownFields = configuration.callLimits.maxUnknownFields
    }

    /// The RPC server's limits: small requests everywhere but the methods that carry bytes.
    static func callLimits(_ configuration: ServerConfiguration) -> ServerCallLimits {
        let limits = configuration.callLimits
        let full = configuration.maxReceiveMessageSize
        return ServerCallLimits(
            requestTimeout: limits.requestTimeout, maxHeldRequestBytes: limits.maxHeldRequestBytes,
            maxRequestMessageSize: min(limits.smallRequestMessageSize, full),
            maxRequestMessageSizeByMethod: Dictionary(
                uniqueKeysWithValues: ServerConfiguration.CallLimits.bulkMethods.map { ($0, full) }))
    }

    /// Starts listening; returns the bound port (the real one when configured with port 0; 0 on a
    /// transport given to `init`).
    @discardableResult
    public func start() async throws -> Int {
        // After init's file recovery (which keeps the partial replicas jobs reference): resume every job.
        try await core.executor.run { () throws(LabGalleryError) in try replication.start() }
        try server.start()
        return boundPort
    }

    /// Whether the server's own listener serves TLS.
    public var servesTLS: Bool { tls != nil }

    /// Reads the TLS certificate, key and client CA files again (on the blocking executor):
    /// connections accepted afterwards use them, open connections keep theirs. On failure the old
    /// certificates stay and this throws why. Nothing to do without TLS.
    public func reloadTLS() async throws {
        guard let tls else { return }
        try await core.executor.run { try tls.reload() }
    }

    /// The port bound by ``start()`` (0 on a transport given to `init`).
    public var boundPort: Int { listener?.boundPort ?? 0 }

    /// Graceful shutdown: health reports NOT_SERVING (ending health watches), replication watch
    /// streams end with UNAVAILABLE (clients reconnect elsewhere or later), new calls are refused
    /// (GOAWAY), calls in flight get the grace period, replication jobs stop at their last durable
    /// offset (they resume on the next start), then the database is closed.
    public func shutdown() async {
        health.shutdown()
        replication.closeWatchers()
        await server.shutdown(gracePeriod: configuration.shutdownGracePeriod)
        await replication.stop()
        do { try await core.executor.run { try core.storage.close() } } catch {
            logger.error("closing the database failed", metadata: ["error": "\(error)"])
        }
    }
}
