import Blocking
import Foundation
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
    /// Prices of the cost report (GetGalleryCost).
    public var priceSheet: PriceSheet
    /// Threads for blocking work (database, file I/O, fsync, hashing); `nil`: the process-wide
    /// pool of ``BlockingExecutor/defaultThreads``.
    public var blockingThreads: Int?

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
        return LabGalleryConfiguration(regionCatalog: catalog, templateImages: templateImages)
    }
}
