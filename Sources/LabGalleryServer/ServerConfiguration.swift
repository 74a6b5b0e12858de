import Blocking
import Foundation
import H2RPCNGHTTP2Transport
import LabGalleryCore

/// Everything `labgallery-server` is configured with (its command-line flags).
public struct ServerConfiguration: Sendable {
    /// Address to listen on (default loopback).
    public var host: String
    /// Port to listen on; 0 picks a free one (see ``GalleryServer/boundPort``).
    public var port: UInt16
    /// Data directory: database, region blob stores, `admin.token`.
    public var dataDirectory: URL
    /// Largest request message accepted, in bytes; larger is RESOURCE_EXHAUSTED.
    public var maxReceiveMessageSize: Int
    /// Which images may be lab templates.
    public var templateImages: TemplateImagePolicy
    /// A JSON region catalog replacing the built-in one, or `nil` for the built-in catalog.
    public var regionsFile: URL?
    /// How long calls in flight may run on shutdown before they are cancelled.
    public var shutdownGracePeriod: Duration
    /// Replication engine settings: concurrency, retries, WAN model and injected faults.
    public var replication: ReplicationConfiguration
    /// Fleet mode: how replication changes reach the other instances (PostgreSQL: LISTEN/NOTIFY).
    /// The default, an ``InProcessChangeFeed``, reaches this process only: other instances then see
    /// changes by re-reading watched images every ``ReplicationFleetSettings/refreshInterval``.
    public var replicationChangeFeed: any ReplicationChangeFeed = InProcessChangeFeed()
    /// Prices of the cost report (GetGalleryCost).
    public var priceSheet: PriceSheet
    /// Threads for blocking work (database, file I/O, fsync, hashing); `nil`: the process-wide
    /// pool of ``BlockingExecutor/defaultThreads``.
    public var blockingThreads: Int?
    /// PostgreSQL URL of the shared database (`--database`); `nil`: SQLite in ``dataDirectory``.
    public var databaseURL: String?
    /// Most PostgreSQL connections this instance opens (`--database-pool-size`).
    public var databasePoolSize = 8
    // Issue 10 limits (the gallery API).
    /// The most replication watch streams open at once, in all (`--max-watchers`).
    public var maxWatchers = LabGalleryConfiguration.defaultMaxWatchers
    /// The most replication watch streams one principal has open at once (`--max-watchers-per-caller`).
    public var maxWatchersPerCaller = LabGalleryConfiguration.defaultMaxWatchersPerCaller
    /// The most replication watch streams one connection has open at once (`--max-watchers-per-connection`).
    public var maxWatchersPerConnection = LabGalleryConfiguration.defaultMaxWatchersPerConnection

    /// HTTP/2 stream and header limits (``HTTP2StreamLimits``): the transport's defaults unless set.
    public var streamLimits = HTTP2StreamLimits()

    // MARK: Connection limits (README "Limits: connections")

    /// Most connections served at once; further ones are accepted and closed at once. 0
    /// (default): min(10,000, the soft RLIMIT_NOFILE less a quarter of it, and at least 64
    /// less), so connections leave file descriptors to the database, blobs and replicas.
    public var maxConnections: Int = 0
    /// Most connections from one peer address (IPv4 address or IPv6 /64); 0: no cap. Default
    /// 1000: a classroom behind one NAT address shares it.
    public var maxConnectionsPerAddress: Int = 1000
    /// A connection that has not sent the HTTP/2 preface and SETTINGS this long after it was
    /// accepted is closed; `.zero`: never. Default 10 s.
    public var handshakeTimeout: Duration = .seconds(10)
    /// A connection without calls this long gets GOAWAY and is closed; `.zero`: never. Default 5 min.
    public var idleTimeout: Duration = .seconds(300)

    // MARK: TLS (README "TLS")

    /// The PEM certificate chain (leaf first) served over TLS (`--tls-cert`); with `tlsKeyFile`.
    /// nil (default): cleartext h2c.
    public var tlsCertificateFile: String? = nil
    /// The PEM private key of `tlsCertificateFile` (`--tls-key`).
    public var tlsKeyFile: String? = nil
    /// mTLS: every client must present a certificate this PEM CA file signed (`--tls-client-ca`).
    public var tlsClientCAFile: String? = nil

    // MARK: Keepalive and connection lifetimes (README "Connections"; `.zero` turns each off)
    /// Nothing received on a connection this long: the server sends a PING. Default 2 h.
    public var keepaliveTime: Duration = .seconds(7200)
    /// A keepalive PING unanswered this long: the connection is closed as dead. Default 20 s.
    public var keepaliveTimeout: Duration = .seconds(20)
    /// Client PINGs closer than this (no response data in between) are strikes; the third gets
    /// GOAWAY ENHANCE_YOUR_CALM "too_many_pings". Default 5 min.
    public var minPingInterval: Duration = .seconds(300)
    /// A connection this old (±10 %) gets GOAWAY; clients reconnect for new calls. Default `.zero`: no limit.
    public var maxConnectionAge: Duration = .zero
    /// After the max-age GOAWAY, close this much later even with calls open. Default `.zero`: wait for the calls.
    public var maxConnectionAgeGrace: Duration = .zero
    /// Listen on this Unix domain socket instead of `host`:`port` (nil: TCP).
    public var unixSocketPath: String? = nil

    // MARK: limits on calls (H2RPC's ServerCallLimits; set after init)
    /// Request timeout, per-method request sizes, held request bytes, unknown fields.
    public var callLimits = CallLimits()

    /// Default request message size limit: 4 MiB, gRPC's default.
    public static let defaultMaxReceiveMessageSize = 4 * 1024 * 1024

    /// Creates a configuration; defaults match the command line's.
    public init(
        host: String = "127.0.0.1", port: UInt16 = 50051,
        dataDirectory: URL = URL(fileURLWithPath: "labgallery-data"),
        maxReceiveMessageSize: Int = ServerConfiguration.defaultMaxReceiveMessageSize,
        templateImages: TemplateImagePolicy = .any, regionsFile: URL? = nil,
        shutdownGracePeriod: Duration = .seconds(10), replication: ReplicationConfiguration = .init(),
        priceSheet: PriceSheet = .default, blockingThreads: Int? = nil
    ) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.maxReceiveMessageSize = maxReceiveMessageSize
        self.templateImages = templateImages
        self.regionsFile = regionsFile
        self.shutdownGracePeriod = shutdownGracePeriod
        self.replication = replication
        self.priceSheet = priceSheet
        self.blockingThreads = blockingThreads
    }

    /// The core's settings: the region catalog (loaded from ``regionsFile`` if set) and the template policy.
    public func coreConfiguration() throws(LabGalleryError) -> LabGalleryConfiguration {
        let catalog =
            try regionsFile.map { (url) throws(LabGalleryError) in try RegionCatalog(contentsOf: url) } ?? .builtIn
        return LabGalleryConfiguration(
            regionCatalog: catalog, templateImages: templateImages, maxWatchers: maxWatchers,
            maxWatchersPerCaller: maxWatchersPerCaller, maxWatchersPerConnection: maxWatchersPerConnection)
    }
}

/// The HTTP/2 stream and header limits of `labgallery-server` (its `--max-header-list-size`,
/// `--max-header-count`, `--reset-burst` and `--reset-rate` flags); each `nil` keeps the
/// transport's default (see `H2Configuration`: 16 KiB, 100 fields, 1000 resets then 100/s).
public struct HTTP2StreamLimits: Sendable {
    /// SETTINGS_MAX_HEADER_LIST_SIZE, enforced on received header blocks (name + value + 32 per field).
    public var maxHeaderListSize: UInt32?
    /// Most fields in one received header block.
    public var maxHeaderCount: UInt32?
    /// Rapid-reset guard: RST_STREAMs a connection may send at once before GOAWAY ENHANCE_YOUR_CALM.
    public var resetBurst: UInt32?
    /// Rapid-reset guard: RST_STREAMs per second a connection may send after its burst.
    public var resetRate: UInt32?
    /// Bytes of partially received messages held at once, in all (see
    /// `H2Configuration.maxPartialMessageBytes`).
    public var maxPartialMessageBytes: Int?
    /// Bytes of partially received messages one connection may hold before its windows stay closed.
    public var maxPartialMessageBytesPerConnection: Int?
    /// Bytes of responses one connection's client has not read, past which its new calls are
    /// RESOURCE_EXHAUSTED.
    public var maxUnreadResponseBytesPerConnection: Int?
    /// Bytes of unread responses in all, past which a connection with more than 64 KiB unread
    /// has its new calls refused.
    public var maxUnreadResponseBytes: Int?

    /// Limits; each one `nil` keeps the transport's default.
    public init(
        maxHeaderListSize: UInt32? = nil, maxHeaderCount: UInt32? = nil, resetBurst: UInt32? = nil,
        resetRate: UInt32? = nil, maxPartialMessageBytes: Int? = nil, maxPartialMessageBytesPerConnection: Int? = nil,
        maxUnreadResponseBytesPerConnection: Int? = nil, maxUnreadResponseBytes: Int? = nil
    ) {
        self.maxHeaderListSize = maxHeaderListSize
        self.maxHeaderCount = maxHeaderCount
        self.resetBurst = resetBurst
        self.resetRate = resetRate
        self.maxPartialMessageBytes = maxPartialMessageBytes
        self.maxPartialMessageBytesPerConnection = maxPartialMessageBytesPerConnection
        self.maxUnreadResponseBytesPerConnection = maxUnreadResponseBytesPerConnection
        self.maxUnreadResponseBytes = maxUnreadResponseBytes
    }

    /// `transport` with the limits that are set.
    public func applied(to transport: H2Configuration) -> H2Configuration {
        var c = transport
        if let v = maxHeaderListSize { c.maxHeaderListSize = v }
        if let v = maxHeaderCount { c.maxHeaderCount = v }
        if let v = resetBurst { c.resetBurst = v }
        if let v = resetRate { c.resetRate = v }
        if let v = maxPartialMessageBytes { c.maxPartialMessageBytes = v }
        if let v = maxPartialMessageBytesPerConnection { c.maxPartialMessageBytesPerConnection = v }
        if let v = maxUnreadResponseBytesPerConnection { c.maxUnreadResponseBytesPerConnection = v }
        if let v = maxUnreadResponseBytes { c.maxUnreadResponseBytes = v }
        return c
    }
}

// MARK: limits on calls

extension ServerConfiguration {
    /// The server's limits on calls (see H2RPC's `ServerCallLimits` and the README's "Limits: calls").
    public struct CallLimits: Sendable {
        /// How long after its headers a unary or server-streaming call's request must be complete
        /// (else DEADLINE_EXCEEDED). Default 30 s.
        public var requestTimeout: Duration = .seconds(30)
        /// The largest request message of every method that does not carry bytes (health, Get*,
        /// List*, Delete*, Create*, …), in bytes; larger is RESOURCE_EXHAUSTED. Default 16 KiB.
        public var smallRequestMessageSize = 16 * 1024
        /// The most request bytes that calls waiting for the end of their request may hold; past
        /// it the oldest end with RESOURCE_EXHAUSTED. Default 32 MiB.
        public var maxHeldRequestBytes = 32 * 1024 * 1024
        /// The most unknown fields a request message may carry (else RESOURCE_EXHAUSTED). Default 1,000.
        public var maxUnknownFields = 1000

        /// The methods that carry bytes: their limit is ``ServerConfiguration/maxReceiveMessageSize``.
        public static let bulkMethods: Set<String> = ["/labgallery.v1.ImageService/UploadImage"]

        /// Creates the defaults.
        public init() {}
    }
}
