import Foundation

/// The simulated network to one region: bandwidth, latency and injected faults.
public struct RegionLink: Sendable, Equatable, Codable {
    /// Bytes per second; `nil` = unlimited (WAN model off).
    public var bandwidthBytesPerSecond: Int64?
    /// Delay before each copy attempt starts (connection set-up), in milliseconds.
    public var latencyMilliseconds: Int
    /// The first `failFirstAttempts` attempts fail midway with a transfer error (injected fault).
    public var failFirstAttempts: Int
    /// The first `corruptFirstAttempts` attempts write one wrong byte (so the checksum check fails).
    public var corruptFirstAttempts: Int
    /// Every attempt fails at once: the region cannot be reached.
    public var unreachable: Bool

    /// Creates a link; the defaults are a fault-free link.
    public init(
        bandwidthBytesPerSecond: Int64? = ReplicationConfiguration.defaultBandwidth, latencyMilliseconds: Int = 20,
        failFirstAttempts: Int = 0, corruptFirstAttempts: Int = 0, unreachable: Bool = false
    ) {
        self.bandwidthBytesPerSecond = bandwidthBytesPerSecond
        self.latencyMilliseconds = latencyMilliseconds
        self.failFirstAttempts = failFirstAttempts
        self.corruptFirstAttempts = corruptFirstAttempts
        self.unreachable = unreachable
    }
}

/// Settings of the replication engine (the server's `--replication-config` JSON file).
///
/// ```json
/// {
///   "concurrency": 4, "maxAttempts": 5, "backoffInitialMs": 500, "backoffMaxMs": 30000,
///   "wan": "on",
///   "defaultLink": {"bandwidthMiBps": 40, "latencyMs": 20},
///   "regions": {"westus": {"bandwidthMiBps": 10, "latencyMs": 80, "failFirstAttempts": 2,
///                          "corruptFirstAttempts": 0, "unreachable": false}}
/// }
/// ```
/// Every key is optional. `"wan": "off"` drops bandwidth and latency (faults stay), for benchmarks;
/// `bandwidthMiBps` 0 means unlimited.
public struct ReplicationConfiguration: Sendable, Equatable {
    /// Default bandwidth: 40 MiB/s, so a 1 GiB replica takes about 26 s and progress is visible.
    public static let defaultBandwidth: Int64 = 40 << 20

    /// At most this many jobs copy at once.
    public var concurrency: Int
    /// Attempts per job before it stays FAILED (RetryReplication starts over).
    public var maxAttempts: Int
    /// Backoff before the second attempt; doubles per attempt up to ``backoffMax``.
    public var backoffInitial: Duration
    /// Cap of the backoff.
    public var backoffMax: Duration
    /// Link to regions without an entry in ``regions``.
    public var defaultLink: RegionLink
    /// Per-region links.
    public var regions: [String: RegionLink]
    /// Whether bandwidth and latency are simulated (`false`: copy at disk speed; faults still apply).
    public var wanModel: Bool
    /// Bytes per read/write.
    public var chunkSize: Int
    /// Progress is made durable (fsync + database row) as soon as this many more bytes are written;
    /// the sync runs beside the copy, so at disk speed the gap also holds what arrived during one sync.
    public var persistEvery: Int64
    /// Progress is published to watchers at most this often (state changes always at once).
    public var progressInterval: Duration
    /// Fleet mode (leased jobs, watches across instances); `nil`: one instance (the SQLite default).
    /// Set by the server's `--replication-leases` and lease flags, not by the JSON file.
    public var fleet: ReplicationFleetSettings? = nil

    /// Creates a configuration; the defaults are the server's.
    public init(
        concurrency: Int = 4, maxAttempts: Int = 5, backoffInitial: Duration = .milliseconds(500),
        backoffMax: Duration = .seconds(30), defaultLink: RegionLink = RegionLink(),
        regions: [String: RegionLink] = [:],
        wanModel: Bool = true, chunkSize: Int = 1 << 20, persistEvery: Int64 = 4 << 20,
        progressInterval: Duration = .milliseconds(200)
    ) {
        self.concurrency = concurrency
        self.maxAttempts = maxAttempts
        self.backoffInitial = backoffInitial
        self.backoffMax = backoffMax
        self.defaultLink = defaultLink
        self.regions = regions
        self.wanModel = wanModel
        self.chunkSize = chunkSize
        self.persistEvery = persistEvery
        self.progressInterval = progressInterval
    }

    /// The effective link to `region` (bandwidth and latency removed when the WAN model is off).
    public func link(to region: String) -> RegionLink {
        var l = regions[region] ?? defaultLink
        if !wanModel {
            l.bandwidthBytesPerSecond = nil
            l.latencyMilliseconds = 0
        }
        return l
    }

    /// The backoff between attempts: doubling from ``backoffInitial`` up to ``backoffMax``.
    public var backoff: Backoff { Backoff(initial: backoffInitial, maximum: backoffMax) }

    /// Backoff before attempt `attempt + 1` after `attempt` failed attempts (1-based): capped doubling.
    public func backoff(afterAttempt attempt: Int) -> Duration { backoff.delay(afterAttempt: attempt) }

    private struct FileLink: Decodable {
        var bandwidthMiBps: Double?
        var latencyMs: Int?
        var failFirstAttempts: Int?
        var corruptFirstAttempts: Int?
        var unreachable: Bool?
        func link(over base: RegionLink) -> RegionLink {
            var l = base
            if let b = bandwidthMiBps { l.bandwidthBytesPerSecond = b <= 0 ? nil : Int64(b * 1_048_576) }
            if let v = latencyMs { l.latencyMilliseconds = v }
            if let v = failFirstAttempts { l.failFirstAttempts = v }
            if let v = corruptFirstAttempts { l.corruptFirstAttempts = v }
            if let v = unreachable { l.unreachable = v }
            return l
        }
    }

    private struct File: Decodable {
        var concurrency: Int?
        var maxAttempts: Int?
        var backoffInitialMs: Int?
        var backoffMaxMs: Int?
        var wan: String?
        var defaultLink: FileLink?
        var regions: [String: FileLink]?
        var chunkKiB: Int?
        var persistEveryKiB: Int?
        var progressIntervalMs: Int?
    }

    /// Loads the JSON file described above; INVALID_ARGUMENT (field `replication_config`) if malformed.
    public init(contentsOf url: URL) throws(LabGalleryError) {
        let f: File
        do { f = try JSONDecoder().decode(File.self, from: Data(contentsOf: url)) } catch {
            throw .invalid("replication_config", "cannot read replication config \(url.path): \(error)")
        }
        self.init()
        if let v = f.concurrency { concurrency = v }
        if let v = f.maxAttempts { maxAttempts = v }
        if let v = f.backoffInitialMs { backoffInitial = .milliseconds(v) }
        if let v = f.backoffMaxMs { backoffMax = .milliseconds(v) }
        if let w = f.wan {
            guard w == "on" || w == "off" else {
                throw .invalid("replication_config", "\"wan\" must be \"on\" or \"off\" in \(url.path)")
            }
            wanModel = w == "on"
        }
        if let d = f.defaultLink { defaultLink = d.link(over: defaultLink) }
        for (region, l) in f.regions ?? [:] { regions[region] = l.link(over: defaultLink) }
        if let v = f.chunkKiB { chunkSize = v * 1024 }
        if let v = f.persistEveryKiB { persistEvery = Int64(v) * 1024 }
        if let v = f.progressIntervalMs { progressInterval = .milliseconds(v) }
        try validate(origin: url.path)
    }

    /// INVALID_ARGUMENT if a value is out of range.
    public func validate(origin: String = "the replication configuration") throws(LabGalleryError) {
        guard concurrency >= 1 else {
            throw .invalid("replication_config", "concurrency must be at least 1 in \(origin)")
        }
        guard maxAttempts >= 1 else {
            throw .invalid("replication_config", "maxAttempts must be at least 1 in \(origin)")
        }
        guard chunkSize >= 4096 else {
            throw .invalid("replication_config", "chunkKiB must be at least 4 in \(origin)")
        }
        guard persistEvery >= Int64(chunkSize) else {
            throw .invalid("replication_config", "persistEveryKiB must be at least chunkKiB in \(origin)")
        }
        try fleet?.validate()
    }
}
