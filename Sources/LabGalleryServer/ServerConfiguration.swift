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
        return LabGalleryConfiguration(regionCatalog: catalog, templateImages: templateImages)
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
