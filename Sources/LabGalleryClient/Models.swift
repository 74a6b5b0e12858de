import GeneratedProtos

// The library's own value types (not the generated `Labgallery_V1_*` messages): plain Swift
// structs that are `Codable` with the proto field names as snake_case JSON keys, so the CLI's
// `--output json` and any script see the same stable shape as the API contract. Enums encode
// as their proto names (`"GENERALIZED"`), int64 fields as JSON numbers, money as decimal strings.

/// The operating system of an image.
public enum OSType: String, Codable, Sendable, CaseIterable {
    /// `OS_TYPE_UNSPECIFIED`: not set (or a value this client does not know).
    case unspecified = "OS_TYPE_UNSPECIFIED"
    /// `WINDOWS`.
    case windows = "WINDOWS"
    /// `LINUX`.
    case linux = "LINUX"
}

/// Whether an image was generalized (sysprep / waagent deprovision) or captured as is.
public enum OSState: String, Codable, Sendable, CaseIterable {
    /// `OS_STATE_UNSPECIFIED`: not set (or unknown).
    case unspecified = "OS_STATE_UNSPECIFIED"
    /// `GENERALIZED`.
    case generalized = "GENERALIZED"
    /// `SPECIALIZED`.
    case specialized = "SPECIALIZED"
}

/// Where an image came from.
public enum ImageSource: String, Codable, Sendable, CaseIterable {
    /// `IMAGE_SOURCE_UNSPECIFIED`.
    case unspecified = "IMAGE_SOURCE_UNSPECIFIED"
    /// `UPLOADED`: sent through `UploadImage`.
    case uploaded = "UPLOADED"
    /// `SAVED_FROM_LAB`: a lab's template saved by `SaveLabTemplateImage`.
    case savedFromLab = "SAVED_FROM_LAB"
}

/// The replication state of one region, or of an image as a whole.
public enum ReplicationState: String, Codable, Sendable, CaseIterable {
    /// `REPLICATION_STATE_UNSPECIFIED`.
    case unspecified = "REPLICATION_STATE_UNSPECIFIED"
    /// `PENDING`: queued.
    case pending = "PENDING"
    /// `REPLICATING`: bytes are being copied.
    case replicating = "REPLICATING"
    /// `COMPLETED`: the replica is complete and verified.
    case completed = "COMPLETED"
    /// `FAILED`: the copy failed (see `RegionReplication.error`; `RetryReplication` restarts it).
    case failed = "FAILED"

    /// True for `COMPLETED` and `FAILED`: nothing more will happen without a retry.
    public var isTerminal: Bool { self == .completed || self == .failed }
}

/// A lab account (`labAccounts/{id}`).
public struct LabAccount: Codable, Sendable, Hashable {
    /// The resource name, `labAccounts/{id}`.
    public var name: String
    /// A human-readable name.
    public var displayName: String
    /// The region its labs run in, e.g. `westus2`.
    public var region: String
    /// The attached gallery (`galleries/{id}`), nil when none is attached.
    public var attachedGallery: String?

    enum CodingKeys: String, CodingKey {
        case name, displayName = "display_name", region, attachedGallery = "attached_gallery"
    }

    /// Creates a value.
    public init(name: String, displayName: String, region: String, attachedGallery: String?) {
        self.name = name; self.displayName = displayName; self.region = region; self.attachedGallery = attachedGallery
    }

    // Written by hand so `attached_gallery` is always present (null when none): a stable shape.
    /// Encodes every key, optional fields as `null`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(displayName, forKey: .displayName)
        try c.encode(region, forKey: .region)
        try c.encode(attachedGallery, forKey: .attachedGallery)
    }
}

/// A shared image gallery (`galleries/{id}`).
public struct Gallery: Codable, Sendable, Hashable {
    /// The resource name, `galleries/{id}`.
    public var name: String
    /// A human-readable name.
    public var displayName: String
    /// The home region.
    public var region: String
    /// The geography of the home region (output only); images replicate across it.
    public var geography: String

    enum CodingKeys: String, CodingKey { case name, displayName = "display_name", region, geography }

    /// Creates a value.
    public init(name: String, displayName: String, region: String, geography: String) {
        self.name = name; self.displayName = displayName; self.region = region; self.geography = geography
    }
}

/// An image in a gallery (`galleries/{gallery}/images/{id}`).
public struct Image: Codable, Sendable, Hashable {
    /// The resource name, `galleries/{gallery}/images/{id}`.
    public var name: String
    /// A human-readable name.
    public var displayName: String
    /// Windows or Linux.
    public var osType: OSType
    /// Generalized or specialized.
    public var osState: OSState
    /// Uploaded or saved from a lab.
    public var source: ImageSource
    /// The lab it was saved from (`labAccounts/{a}/labs/{l}`), nil for uploads.
    public var sourceLab: String?
    /// The size of the image in bytes.
    public var sizeBytes: Int64
    /// Lower-case hex SHA-256 of the bytes.
    public var sha256: String
    /// The region the image was stored in first (the gallery's home region).
    public var region: String
    /// The principal that created it.
    public var author: String

    enum CodingKeys: String, CodingKey {
        case name, displayName = "display_name", osType = "os_type", osState = "os_state", source
        case sourceLab = "source_lab", sizeBytes = "size_bytes", sha256, region, author
    }

    /// Creates a value.
    public init(name: String, displayName: String, osType: OSType, osState: OSState, source: ImageSource,
                sourceLab: String?, sizeBytes: Int64, sha256: String, region: String, author: String) {
        self.name = name; self.displayName = displayName; self.osType = osType; self.osState = osState
        self.source = source; self.sourceLab = sourceLab; self.sizeBytes = sizeBytes; self.sha256 = sha256
        self.region = region; self.author = author
    }

    // By hand so `source_lab` is always present (null for uploads).
    /// Encodes every key, optional fields as `null`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(displayName, forKey: .displayName)
        try c.encode(osType, forKey: .osType)
        try c.encode(osState, forKey: .osState)
        try c.encode(source, forKey: .source)
        try c.encode(sourceLab, forKey: .sourceLab)
        try c.encode(sizeBytes, forKey: .sizeBytes)
        try c.encode(sha256, forKey: .sha256)
        try c.encode(region, forKey: .region)
        try c.encode(author, forKey: .author)
    }
}

/// An image of a lab account's attached gallery, with whether the account may use it and whether
/// `createLab` would accept it as a template for the account now.
public struct LabAccountImage: Codable, Sendable, Hashable {
    /// The image.
    public var image: Image
    /// Whether labs of the account may use it as a template (images are enabled by default).
    public var enabled: Bool
    /// Whether `createLab` would accept it as a template for the account right now: enabled, allowed
    /// by the server's template-image policy, and stored in the account's region (the server applies
    /// the same rule to both).
    public var available: Bool
    /// When not ``available``: why, and what to do (the FAILED_PRECONDITION message `createLab`
    /// would give); `nil` when available.
    public var unavailableReason: String?

    enum CodingKeys: String, CodingKey { case image, enabled, available, unavailableReason = "unavailable_reason" }

    /// Creates a value.
    public init(image: Image, enabled: Bool, available: Bool = true, unavailableReason: String? = nil) {
        self.image = image; self.enabled = enabled; self.available = available; self.unavailableReason = unavailableReason
    }

    // By hand so `unavailable_reason` is always present (null when available).
    /// Encodes every key, optional fields as `null`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(image, forKey: .image)
        try c.encode(enabled, forKey: .enabled)
        try c.encode(available, forKey: .available)
        try c.encode(unavailableReason, forKey: .unavailableReason)
    }
}

/// A lab (`labAccounts/{account}/labs/{id}`).
public struct Lab: Codable, Sendable, Hashable {
    /// The resource name, `labAccounts/{account}/labs/{id}`.
    public var name: String
    /// A human-readable name.
    public var displayName: String
    /// The template image (`galleries/{g}/images/{i}`).
    public var templateImage: String

    enum CodingKeys: String, CodingKey { case name, displayName = "display_name", templateImage = "template_image" }

    /// Creates a value.
    public init(name: String, displayName: String, templateImage: String) {
        self.name = name; self.displayName = displayName; self.templateImage = templateImage
    }
}

/// A role granted to a principal on a gallery, e.g. `lab-services` / `Contributor`.
public struct RoleAssignment: Codable, Sendable, Hashable {
    /// The principal, e.g. `lab-services`.
    public var principal: String
    /// The role, e.g. `Contributor`.
    public var role: String

    /// Creates a value.
    public init(principal: String, role: String) { self.principal = principal; self.role = role }
}

/// The replication of one image to one region.
public struct RegionReplication: Codable, Sendable, Hashable {
    /// The target region.
    public var region: String
    /// Where the copy is.
    public var state: ReplicationState
    /// Bytes copied so far.
    public var bytesCopied: Int64
    /// Bytes to copy.
    public var bytesTotal: Int64
    /// 0–100.
    public var progressPercent: Double
    /// Why the copy failed (nil unless `FAILED`, or after a failed attempt).
    public var error: String?
    /// How many attempts were made.
    public var attempts: Int

    enum CodingKeys: String, CodingKey {
        case region, state, bytesCopied = "bytes_copied", bytesTotal = "bytes_total"
        case progressPercent = "progress_percent", error, attempts
    }

    /// Creates a value.
    public init(region: String, state: ReplicationState, bytesCopied: Int64, bytesTotal: Int64,
                progressPercent: Double, error: String?, attempts: Int) {
        self.region = region; self.state = state; self.bytesCopied = bytesCopied; self.bytesTotal = bytesTotal
        self.progressPercent = progressPercent; self.error = error; self.attempts = attempts
    }

    // By hand so `error` is always present (null when none).
    /// Encodes every key, optional fields as `null`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(region, forKey: .region)
        try c.encode(state, forKey: .state)
        try c.encode(bytesCopied, forKey: .bytesCopied)
        try c.encode(bytesTotal, forKey: .bytesTotal)
        try c.encode(progressPercent, forKey: .progressPercent)
        try c.encode(error, forKey: .error)
        try c.encode(attempts, forKey: .attempts)
    }
}

/// The replication of one image to every other region of its gallery's geography.
public struct ReplicationStatus: Codable, Sendable, Hashable {
    /// The image, `galleries/{g}/images/{i}`.
    public var image: String
    /// REPLICATING while any region is pending or replicating, else FAILED if any failed, else COMPLETED.
    public var aggregatedState: ReplicationState
    /// One entry per target region.
    public var regions: [RegionReplication]
    /// The image was deleted (gallery watches): nothing follows about it.
    public var deleted: Bool

    enum CodingKeys: String, CodingKey { case image, aggregatedState = "aggregated_state", regions, deleted }

    /// Creates a value.
    public init(image: String, aggregatedState: ReplicationState, regions: [RegionReplication], deleted: Bool = false) {
        self.image = image; self.aggregatedState = aggregatedState; self.regions = regions; self.deleted = deleted
    }
}

/// One priced replica of an image.
public struct CostLine: Codable, Sendable, Hashable {
    /// The image.
    public var image: String
    /// The region of the replica (the home region included).
    public var region: String
    /// The replica's size.
    public var sizeBytes: Int64
    /// Monthly storage cost, a decimal string (never a binary float), e.g. `"0.12"`.
    public var monthlyCost: String

    enum CodingKeys: String, CodingKey { case image, region, sizeBytes = "size_bytes", monthlyCost = "monthly_cost" }

    /// Creates a value.
    public init(image: String, region: String, sizeBytes: Int64, monthlyCost: String) {
        self.image = image; self.region = region; self.sizeBytes = sizeBytes; self.monthlyCost = monthlyCost
    }
}

/// The storage cost of a gallery, billed apart from lab usage.
public struct GalleryCost: Codable, Sendable, Hashable {
    /// The gallery.
    public var gallery: String
    /// ISO 4217 currency, e.g. `USD`.
    public var currency: String
    /// One line per image replica.
    public var lines: [CostLine]
    /// The monthly total, a decimal string.
    public var monthlyTotal: String
    /// The one-time egress cost of replicating the images, a decimal string (empty if not reported).
    public var oneTimeReplicationEgress: String
    /// Bytes billed: the sum of the lines' sizes.
    public var billedBytes: Int64
    /// Bytes physically stored: identical bytes are stored once per region (at most `billedBytes`).
    public var storedBytes: Int64

    enum CodingKeys: String, CodingKey {
        case gallery, currency, lines, monthlyTotal = "monthly_total", oneTimeReplicationEgress = "one_time_replication_egress"
        case billedBytes = "billed_bytes", storedBytes = "stored_bytes"
    }

    /// Creates a value.
    public init(gallery: String, currency: String, lines: [CostLine], monthlyTotal: String, oneTimeReplicationEgress: String,
                billedBytes: Int64 = 0, storedBytes: Int64 = 0) {
        self.gallery = gallery; self.currency = currency; self.lines = lines
        self.monthlyTotal = monthlyTotal; self.oneTimeReplicationEgress = oneTimeReplicationEgress
        self.billedBytes = billedBytes; self.storedBytes = storedBytes
    }
}

/// One page of a List call.
public struct Page<Item: Sendable>: Sendable {
    /// The items of this page.
    public var items: [Item]
    /// The token for the next page, nil on the last page.
    public var nextPageToken: String?

    /// Creates a page.
    public init(items: [Item], nextPageToken: String?) { self.items = items; self.nextPageToken = nextPageToken }
}

/// What `uploadImage` stores: the header of the `UploadImage` stream.
public struct ImageUpload: Sendable, Hashable {
    /// The gallery to store into (`galleries/{id}` or just `{id}`).
    public var gallery: String
    /// The new image's id (1–63 of `[a-z0-9-]`, starting with a letter).
    public var imageID: String
    /// A human-readable name (defaults to the id on the server when empty).
    public var displayName: String
    /// Windows or Linux.
    public var osType: OSType
    /// Generalized or specialized.
    public var osState: OSState
    /// Optional lower-case hex SHA-256; the server refuses the upload (storing nothing) on a mismatch.
    public var sha256: String?

    /// Creates an upload header.
    public init(gallery: String, imageID: String, displayName: String = "", osType: OSType, osState: OSState, sha256: String? = nil) {
        self.gallery = gallery; self.imageID = imageID; self.displayName = displayName
        self.osType = osType; self.osState = osState; self.sha256 = sha256
    }
}

/// Upload progress, reported after each chunk is handed to the connection.
public struct UploadProgress: Sendable, Hashable {
    /// Bytes sent so far.
    public var bytesSent: Int64
    /// The total, when known (always for file uploads).
    public var totalBytes: Int64?

    /// Creates a progress report.
    public init(bytesSent: Int64, totalBytes: Int64?) { self.bytesSent = bytesSent; self.totalBytes = totalBytes }
}

// MARK: - Conversions from the generated messages (internal: the public API never shows them)

extension OSType {
    init(_ p: Labgallery_V1_OsType) {
        switch p { case .windows: self = .windows; case .linux: self = .linux; default: self = .unspecified }
    }
    var proto: Labgallery_V1_OsType {
        switch self { case .windows: .windows; case .linux: .linux; case .unspecified: .unspecified }
    }
}

extension OSState {
    init(_ p: Labgallery_V1_OsState) {
        switch p { case .generalized: self = .generalized; case .specialized: self = .specialized; default: self = .unspecified }
    }
    var proto: Labgallery_V1_OsState {
        switch self { case .generalized: .generalized; case .specialized: .specialized; case .unspecified: .unspecified }
    }
}

extension ImageSource {
    init(_ p: Labgallery_V1_ImageSource) {
        switch p { case .uploaded: self = .uploaded; case .savedFromLab: self = .savedFromLab; default: self = .unspecified }
    }
}

extension ReplicationState {
    init(_ p: Labgallery_V1_ReplicationState) {
        switch p {
        case .pending: self = .pending
        case .replicating: self = .replicating
        case .completed: self = .completed
        case .failed: self = .failed
        default: self = .unspecified
        }
    }
}



extension LabAccount {
    init(_ p: Labgallery_V1_LabAccount) {
        self.init(name: p.name, displayName: p.displayName, region: p.region, attachedGallery: nonEmpty(p.attachedGallery))
    }
}

extension Gallery {
    init(_ p: Labgallery_V1_Gallery) {
        self.init(name: p.name, displayName: p.displayName, region: p.region, geography: p.geography)
    }
}

extension Image {
    init(_ p: Labgallery_V1_Image) {
        self.init(name: p.name, displayName: p.displayName, osType: OSType(p.osType), osState: OSState(p.osState),
                  source: ImageSource(p.source), sourceLab: nonEmpty(p.sourceLab), sizeBytes: p.sizeBytes,
                  sha256: p.sha256, region: p.region, author: p.author)
    }
}

extension LabAccountImage {
    init(_ p: Labgallery_V1_LabAccountImage) {
        self.init(image: Image(p.image ?? .init()), enabled: p.enabled, available: p.available,
                  unavailableReason: nonEmpty(p.unavailableReason))
    }
}

extension Lab {
    init(_ p: Labgallery_V1_Lab) {
        self.init(name: p.name, displayName: p.displayName, templateImage: p.templateImage)
    }
}

extension RoleAssignment {
    init(_ p: Labgallery_V1_RoleAssignment) { self.init(principal: p.principal, role: p.role) }
}

extension RegionReplication {
    init(_ p: Labgallery_V1_RegionReplication) {
        self.init(region: p.region, state: ReplicationState(p.state), bytesCopied: p.bytesCopied, bytesTotal: p.bytesTotal,
                  progressPercent: p.progressPercent, error: nonEmpty(p.error), attempts: Int(p.attempts))
    }
}

extension ReplicationStatus {
    init(_ p: Labgallery_V1_ReplicationStatus) {
        self.init(image: p.image, aggregatedState: ReplicationState(p.aggregatedState), regions: p.regions.map(RegionReplication.init),
                  deleted: p.deleted)
    }
}

extension CostLine {
    init(_ p: Labgallery_V1_CostLine) {
        self.init(image: p.image, region: p.region, sizeBytes: p.sizeBytes, monthlyCost: p.monthlyCost)
    }
}

extension GalleryCost {
    init(_ p: Labgallery_V1_GalleryCost) {
        self.init(gallery: p.gallery, currency: p.currency, lines: p.lines.map(CostLine.init),
                  monthlyTotal: p.monthlyTotal, oneTimeReplicationEgress: p.oneTimeReplicationEgress,
                  billedBytes: p.billedBytes, storedBytes: p.storedBytes)
    }
}
