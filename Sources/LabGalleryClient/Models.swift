import GeneratedProtos

// The library's own value types (not the generated `Labgallery_V1_*` messages): plain Swift
// values, `Sendable` and `Hashable`. Enums' raw values are their proto names (`"GENERALIZED"`),
// money is a decimal string. They carry no encoding: the CLI owns the shape of its JSON output.

/// The operating system of an image.
public enum OSType: String, Sendable, CaseIterable {
    /// `OS_TYPE_UNSPECIFIED`: not set (or a value this client does not know).
    case unspecified = "OS_TYPE_UNSPECIFIED"
    /// `WINDOWS`.
    case windows = "WINDOWS"
    /// `LINUX`.
    case linux = "LINUX"
}

/// Whether an image was generalized (sysprep / waagent deprovision) or captured as is.
public enum OSState: String, Sendable, CaseIterable {
    /// `OS_STATE_UNSPECIFIED`: not set (or unknown).
    case unspecified = "OS_STATE_UNSPECIFIED"
    /// `GENERALIZED`.
    case generalized = "GENERALIZED"
    /// `SPECIALIZED`.
    case specialized = "SPECIALIZED"
}

/// Where an image came from.
public enum ImageSource: String, Sendable, CaseIterable {
    /// `IMAGE_SOURCE_UNSPECIFIED`.
    case unspecified = "IMAGE_SOURCE_UNSPECIFIED"
    /// `UPLOADED`: sent through `UploadImage`.
    case uploaded = "UPLOADED"
    /// `SAVED_FROM_LAB`: a lab's template saved by `SaveLabTemplateImage`.
    case savedFromLab = "SAVED_FROM_LAB"
}

/// The replication state of one region, or of an image as a whole.
public enum ReplicationState: String, Sendable, CaseIterable {
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
public struct LabAccount: Sendable, Hashable {
    /// The resource name, `labAccounts/{id}`.
    public var name: String
    /// A human-readable name.
    public var displayName: String
    /// The region its labs run in, e.g. `westus2`.
    public var region: String
    /// The attached gallery (`galleries/{id}`), nil when none is attached.
    public var attachedGallery: String?

    /// Creates a value.
    public init(name: String, displayName: String, region: String, attachedGallery: String?) {
        self.name = name
        self.displayName = displayName
        self.region = region
        self.attachedGallery = attachedGallery
    }
}

/// A shared image gallery (`galleries/{id}`).
public struct Gallery: Sendable, Hashable {
    /// The resource name, `galleries/{id}`.
    public var name: String
    /// A human-readable name.
    public var displayName: String
    /// The home region.
    public var region: String
    /// The geography of the home region (output only); images replicate across it.
    public var geography: String

    /// Creates a value.
    public init(name: String, displayName: String, region: String, geography: String) {
        self.name = name
        self.displayName = displayName
        self.region = region
        self.geography = geography
    }
}

/// An image in a gallery (`galleries/{gallery}/images/{id}`).
public struct Image: Sendable, Hashable {
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

    /// Creates a value.
    public init(
        name: String, displayName: String, osType: OSType, osState: OSState, source: ImageSource,
        sourceLab: String?, sizeBytes: Int64, sha256: String, region: String, author: String
    ) {
        self.name = name
        self.displayName = displayName
        self.osType = osType
        self.osState = osState
        self.source = source
        self.sourceLab = sourceLab
        self.sizeBytes = sizeBytes
        self.sha256 = sha256
        self.region = region
        self.author = author
    }
}

/// An image of a lab account's attached gallery, with whether the account may use it and whether
/// `createLab` would accept it as a template for the account now.
public struct LabAccountImage: Sendable, Hashable {
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

    /// Creates a value.
    public init(image: Image, enabled: Bool, available: Bool = true, unavailableReason: String? = nil) {
        self.image = image
        self.enabled = enabled
        self.available = available
        self.unavailableReason = unavailableReason
    }
}

/// A lab (`labAccounts/{account}/labs/{id}`).
public struct Lab: Sendable, Hashable {
    /// The resource name, `labAccounts/{account}/labs/{id}`.
    public var name: String
    /// A human-readable name.
    public var displayName: String
    /// The template image (`galleries/{g}/images/{i}`).
    public var templateImage: String

    /// Creates a value.
    public init(name: String, displayName: String, templateImage: String) {
        self.name = name
        self.displayName = displayName
        self.templateImage = templateImage
    }
}

/// A role granted to a principal on a gallery, e.g. `lab-services` / `Contributor`.
public struct RoleAssignment: Sendable, Hashable {
    /// The principal, e.g. `lab-services`.
    public var principal: String
    /// The role, e.g. `Contributor`.
    public var role: String

    /// Creates a value.
    public init(principal: String, role: String) {
        self.principal = principal
        self.role = role
    }
}

/// The replication of one image to one region.
public struct RegionReplication: Sendable, Hashable {
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

    /// Creates a value.
    public init(
        region: String, state: ReplicationState, bytesCopied: Int64, bytesTotal: Int64,
        progressPercent: Double, error: String?, attempts: Int
    ) {
        self.region = region
        self.state = state
        self.bytesCopied = bytesCopied
        self.bytesTotal = bytesTotal
        self.progressPercent = progressPercent
        self.error = error
        self.attempts = attempts
    }
}

/// The replication of one image to every other region of its gallery's geography.
public struct ReplicationStatus: Sendable, Hashable {
    /// The image, `galleries/{g}/images/{i}`.
    public var image: String
    /// REPLICATING while any region is pending or replicating, else FAILED if any failed, else COMPLETED.
    public var aggregatedState: ReplicationState
    /// One entry per target region.
    public var regions: [RegionReplication]
    /// The image was deleted (gallery watches): nothing follows about it.
    public var deleted: Bool

    /// Creates a value.
    public init(image: String, aggregatedState: ReplicationState, regions: [RegionReplication], deleted: Bool = false) {
        self.image = image
        self.aggregatedState = aggregatedState
        self.regions = regions
        self.deleted = deleted
    }
}

/// One priced replica of an image.
public struct CostLine: Sendable, Hashable {
    /// The image.
    public var image: String
    /// The region of the replica (the home region included).
    public var region: String
    /// The replica's size.
    public var sizeBytes: Int64
    /// Monthly storage cost, a decimal string (never a binary float), e.g. `"0.12"`.
    public var monthlyCost: String

    /// Creates a value.
    public init(image: String, region: String, sizeBytes: Int64, monthlyCost: String) {
        self.image = image
        self.region = region
        self.sizeBytes = sizeBytes
        self.monthlyCost = monthlyCost
    }
}

/// The storage cost of a gallery, billed apart from lab usage.
public struct GalleryCost: Sendable, Hashable {
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

    /// Creates a value.
    public init(
        gallery: String, currency: String, lines: [CostLine], monthlyTotal: String, oneTimeReplicationEgress: String,
        billedBytes: Int64 = 0, storedBytes: Int64 = 0
    ) {
        self.gallery = gallery
        self.currency = currency
        self.lines = lines
        self.monthlyTotal = monthlyTotal
        self.oneTimeReplicationEgress = oneTimeReplicationEgress
        self.billedBytes = billedBytes
        self.storedBytes = storedBytes
    }
}

/// One page of a List call.
public struct Page<Item: Sendable>: Sendable {
    /// The items of this page.
    public var items: [Item]
    /// The token for the next page, nil on the last page.
    public var nextPageToken: String?

    /// Creates a page.
    public init(items: [Item], nextPageToken: String?) {
        self.items = items
        self.nextPageToken = nextPageToken
    }
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
    public init(
        gallery: String, imageID: String, displayName: String = "", osType: OSType, osState: OSState,
        sha256: String? = nil
    ) {
        self.gallery = gallery
        self.imageID = imageID
        self.displayName = displayName
        self.osType = osType
        self.osState = osState
        self.sha256 = sha256
    }
}

/// Upload progress, reported after each chunk is handed to the connection.
public struct UploadProgress: Sendable, Hashable {
    /// Bytes sent so far.
    public var bytesSent: Int64
    /// The total, when known (always for file uploads).
    public var totalBytes: Int64?

    /// Creates a progress report.
    public init(bytesSent: Int64, totalBytes: Int64?) {
        self.bytesSent = bytesSent
        self.totalBytes = totalBytes
    }
}

// MARK: - Conversions from the generated messages (internal: the public API never shows them)

extension OSType {
    init(_ p: Labgallery_V1_OsType) {
        switch p {
        case .windows: self = .windows
        case .linux: self = .linux
        default: self = .unspecified
        }
    }
    var proto: Labgallery_V1_OsType {
        switch self {
        case .windows: .windows
        case .linux: .linux
        case .unspecified: .unspecified
        }
    }
}

extension OSState {
    init(_ p: Labgallery_V1_OsState) {
        switch p {
        case .generalized: self = .generalized
        case .specialized: self = .specialized
        default: self = .unspecified
        }
    }
    var proto: Labgallery_V1_OsState {
        switch self {
        case .generalized: .generalized
        case .specialized: .specialized
        case .unspecified: .unspecified
        }
    }
}

extension ImageSource {
    init(_ p: Labgallery_V1_ImageSource) {
        switch p {
        case .uploaded: self = .uploaded
        case .savedFromLab: self = .savedFromLab
        default: self = .unspecified
        }
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
        self.init(
            name: p.name, displayName: p.displayName, region: p.region, attachedGallery: nonEmpty(p.attachedGallery))
    }
}

extension Gallery {
    init(_ p: Labgallery_V1_Gallery) {
        self.init(name: p.name, displayName: p.displayName, region: p.region, geography: p.geography)
    }
}

extension Image {
    init(_ p: Labgallery_V1_Image) {
        self.init(
            name: p.name, displayName: p.displayName, osType: OSType(p.osType), osState: OSState(p.osState),
            source: ImageSource(p.source), sourceLab: nonEmpty(p.sourceLab), sizeBytes: p.sizeBytes,
            sha256: p.sha256, region: p.region, author: p.author)
    }
}

extension LabAccountImage {
    init(_ p: Labgallery_V1_LabAccountImage) {
        self.init(
            image: Image(p.image ?? .init()), enabled: p.enabled, available: p.available,
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
        self.init(
            region: p.region, state: ReplicationState(p.state), bytesCopied: p.bytesCopied, bytesTotal: p.bytesTotal,
            progressPercent: p.progressPercent, error: nonEmpty(p.error), attempts: Int(p.attempts))
    }
}

extension ReplicationStatus {
    init(_ p: Labgallery_V1_ReplicationStatus) {
        self.init(
            image: p.image, aggregatedState: ReplicationState(p.aggregatedState),
            regions: p.regions.map(RegionReplication.init),
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
        self.init(
            gallery: p.gallery, currency: p.currency, lines: p.lines.map(CostLine.init),
            monthlyTotal: p.monthlyTotal, oneTimeReplicationEgress: p.oneTimeReplicationEgress,
            billedBytes: p.billedBytes, storedBytes: p.storedBytes)
    }
}
