import LabGalleryClient

// The shape of `--output json`, owned by the CLI (the client library's types carry no encoding):
// the proto field names in snake_case, enums as their proto names (`"GENERALIZED"`), int64s as
// numbers, money as decimal strings, optional fields always present (`null` when absent), lists
// wrapped like the List responses (`{"galleries": [...]}`). `Output.json` sorts the keys.
// Decodable too, so tests (and Swift scripts) read the output back with the same keys.

/// A lab account: `name`, `display_name`, `region`, `attached_gallery` (null when none).
struct LabAccountJSON: Codable, Hashable {
    var name: String
    var displayName: String
    var region: String
    var attachedGallery: String?

    enum CodingKeys: String, CodingKey {
        case name
        case displayName = "display_name"
        case region
        case attachedGallery = "attached_gallery"
    }

    init(_ account: LabAccount) {
        name = account.name
        displayName = account.displayName
        region = account.region
        attachedGallery = account.attachedGallery
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(displayName, forKey: .displayName)
        try c.encode(region, forKey: .region)
        try c.encode(attachedGallery, forKey: .attachedGallery)
    }
}

/// A gallery: `name`, `display_name`, `region`, `geography`.
struct GalleryJSON: Codable, Hashable {
    var name: String
    var displayName: String
    var region: String
    var geography: String

    enum CodingKeys: String, CodingKey {
        case name
        case displayName = "display_name"
        case region, geography
    }

    init(_ gallery: Gallery) {
        name = gallery.name
        displayName = gallery.displayName
        region = gallery.region
        geography = gallery.geography
    }
}

/// An image: `name`, `display_name`, `os_type`, `os_state`, `source`, `source_lab` (null for
/// uploads), `size_bytes`, `sha256`, `region`, `author`.
struct ImageJSON: Codable, Hashable {
    var name: String
    var displayName: String
    var osType: String
    var osState: String
    var source: String
    var sourceLab: String?
    var sizeBytes: Int64
    var sha256: String
    var region: String
    var author: String

    enum CodingKeys: String, CodingKey {
        case name
        case displayName = "display_name"
        case osType = "os_type"
        case osState = "os_state"
        case source
        case sourceLab = "source_lab"
        case sizeBytes = "size_bytes"
        case sha256, region, author
    }

    init(_ image: Image) {
        name = image.name
        displayName = image.displayName
        osType = image.osType.rawValue
        osState = image.osState.rawValue
        source = image.source.rawValue
        sourceLab = image.sourceLab
        sizeBytes = image.sizeBytes
        sha256 = image.sha256
        region = image.region
        author = image.author
    }

    func encode(to encoder: any Encoder) throws {
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

/// An image of a lab account: `image`, `enabled`, `available`, `unavailable_reason` (null when available).
struct LabAccountImageJSON: Codable, Hashable {
    var image: ImageJSON
    var enabled: Bool
    var available: Bool
    var unavailableReason: String?

    enum CodingKeys: String, CodingKey {
        case image, enabled, available
        case unavailableReason = "unavailable_reason"
    }

    init(_ item: LabAccountImage) {
        image = ImageJSON(item.image)
        enabled = item.enabled
        available = item.available
        unavailableReason = item.unavailableReason
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(image, forKey: .image)
        try c.encode(enabled, forKey: .enabled)
        try c.encode(available, forKey: .available)
        try c.encode(unavailableReason, forKey: .unavailableReason)
    }
}

/// A lab: `name`, `display_name`, `template_image`.
struct LabJSON: Codable, Hashable {
    var name: String
    var displayName: String
    var templateImage: String

    enum CodingKeys: String, CodingKey {
        case name
        case displayName = "display_name"
        case templateImage = "template_image"
    }

    init(_ lab: Lab) {
        name = lab.name
        displayName = lab.displayName
        templateImage = lab.templateImage
    }
}

/// A role assignment: `principal`, `role`.
struct RoleAssignmentJSON: Codable, Hashable {
    var principal: String
    var role: String

    init(_ assignment: RoleAssignment) {
        principal = assignment.principal
        role = assignment.role
    }
}

/// One region's replication: `region`, `state`, `bytes_copied`, `bytes_total`, `progress_percent`,
/// `error` (null when none), `attempts`.
struct RegionReplicationJSON: Codable, Hashable {
    var region: String
    var state: String
    var bytesCopied: Int64
    var bytesTotal: Int64
    var progressPercent: Double
    var error: String?
    var attempts: Int

    enum CodingKeys: String, CodingKey {
        case region, state
        case bytesCopied = "bytes_copied"
        case bytesTotal = "bytes_total"
        case progressPercent = "progress_percent"
        case error, attempts
    }

    init(_ r: RegionReplication) {
        region = r.region
        state = r.state.rawValue
        bytesCopied = r.bytesCopied
        bytesTotal = r.bytesTotal
        progressPercent = r.progressPercent
        error = r.error
        attempts = r.attempts
    }

    func encode(to encoder: any Encoder) throws {
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

/// An image's replication: `image`, `aggregated_state`, `regions`, `deleted`.
struct ReplicationStatusJSON: Codable, Hashable {
    var image: String
    var aggregatedState: String
    var regions: [RegionReplicationJSON]
    var deleted: Bool

    enum CodingKeys: String, CodingKey {
        case image
        case aggregatedState = "aggregated_state"
        case regions, deleted
    }

    init(_ status: ReplicationStatus) {
        image = status.image
        aggregatedState = status.aggregatedState.rawValue
        regions = status.regions.map(RegionReplicationJSON.init)
        deleted = status.deleted
    }
}

/// One priced replica: `image`, `region`, `size_bytes`, `monthly_cost`.
struct CostLineJSON: Codable, Hashable {
    var image: String
    var region: String
    var sizeBytes: Int64
    var monthlyCost: String

    enum CodingKeys: String, CodingKey {
        case image, region
        case sizeBytes = "size_bytes"
        case monthlyCost = "monthly_cost"
    }

    init(_ line: CostLine) {
        image = line.image
        region = line.region
        sizeBytes = line.sizeBytes
        monthlyCost = line.monthlyCost
    }
}

/// A gallery's cost: `gallery`, `currency`, `lines`, `monthly_total`, `one_time_replication_egress`,
/// `billed_bytes`, `stored_bytes`.
struct GalleryCostJSON: Codable, Hashable {
    var gallery: String
    var currency: String
    var lines: [CostLineJSON]
    var monthlyTotal: String
    var oneTimeReplicationEgress: String
    var billedBytes: Int64
    var storedBytes: Int64

    enum CodingKeys: String, CodingKey {
        case gallery, currency, lines
        case monthlyTotal = "monthly_total"
        case oneTimeReplicationEgress = "one_time_replication_egress"
        case billedBytes = "billed_bytes"
        case storedBytes = "stored_bytes"
    }

    init(_ cost: GalleryCost) {
        gallery = cost.gallery
        currency = cost.currency
        lines = cost.lines.map(CostLineJSON.init)
        monthlyTotal = cost.monthlyTotal
        oneTimeReplicationEgress = cost.oneTimeReplicationEgress
        billedBytes = cost.billedBytes
        storedBytes = cost.storedBytes
    }
}

// MARK: - Envelopes of list commands (shaped like the proto List responses)

/// `lab-account list`: `{"lab_accounts": [...]}`.
struct LabAccountList: Codable, Hashable {
    var labAccounts: [LabAccountJSON]
    enum CodingKeys: String, CodingKey { case labAccounts = "lab_accounts" }
    init(_ accounts: [LabAccount]) { labAccounts = accounts.map(LabAccountJSON.init) }
}

/// `gallery list`: `{"galleries": [...]}`.
struct GalleryList: Codable, Hashable {
    var galleries: [GalleryJSON]
    init(_ galleries: [Gallery]) { self.galleries = galleries.map(GalleryJSON.init) }
}

/// `image list --gallery`: `{"images": [...]}`.
struct ImageList: Codable, Hashable {
    var images: [ImageJSON]
    init(_ images: [Image]) { self.images = images.map(ImageJSON.init) }
}

/// `image list --lab-account`, `image enable|disable`: `{"images": [...]}` of lab account images.
struct LabAccountImageList: Codable, Hashable {
    var images: [LabAccountImageJSON]
    init(_ images: [LabAccountImage]) { self.images = images.map(LabAccountImageJSON.init) }
}

/// `lab list`: `{"labs": [...]}`.
struct LabList: Codable, Hashable {
    var labs: [LabJSON]
    init(_ labs: [Lab]) { self.labs = labs.map(LabJSON.init) }
}

/// `gallery roles`: `{"role_assignments": [...]}`.
struct RoleAssignmentList: Codable, Hashable {
    var roleAssignments: [RoleAssignmentJSON]
    enum CodingKeys: String, CodingKey { case roleAssignments = "role_assignments" }
    init(_ assignments: [RoleAssignment]) { roleAssignments = assignments.map(RoleAssignmentJSON.init) }
}

/// Every `delete`: `{"deleted": "<full name>"}`.
struct Deleted: Codable, Hashable {
    var deleted: String
}
