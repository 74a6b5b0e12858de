import Foundation

// MARK: - Ids and resource names

/// Resource id rules shared by every resource: 1–63 characters of `[a-z0-9-]`, starting with a letter.
public enum ResourceID {
    /// Whether `id` is a valid resource id.
    public static func isValid(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        guard (1...63).contains(bytes.count), let first = bytes.first, (0x61...0x7A).contains(first) else {
            return false
        }
        return bytes.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D }
    }

    /// Returns `id` or throws `invalidArgument` naming `field`.
    @discardableResult
    public static func validate(_ id: String, field: String) throws(LabGalleryError) -> String {
        guard isValid(id) else {
            throw .invalid(
                field,
                "\(SafeText.quoted(id)) is not a valid id: use 1–63 characters of a-z, 0-9 and '-', starting with a letter"
            )
        }
        return id
    }
}

/// Free-text fields (display names): any text of at most ``maxLength`` characters.
public enum DisplayName {
    /// The longest display name accepted, in characters (Unicode scalars): 256.
    public static let maxLength = 256

    /// Returns `text` or throws `invalidArgument` naming `field` and the limit.
    @discardableResult
    public static func validate(_ text: String, field: String) throws(LabGalleryError) -> String {
        // Bytes bound scalars from above: the common short name needs no count.
        guard text.utf8.count > maxLength, text.unicodeScalars.count > maxLength else { return text }
        throw .invalid(
            field, "is \(text.unicodeScalars.count) characters long; at most \(maxLength) characters are accepted")
    }
}

/// Splits `name` on "/" and checks it against `pattern` (literals, and `nil` for an id slot).
/// Returns the ids or throws `invalidArgument` naming `field`.
private func parseName(_ name: String, _ pattern: [String?], field: String, example: String) throws(LabGalleryError)
    -> [String]
{
    let parts = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    guard parts.count == pattern.count else {
        throw .invalid(field, "\(SafeText.quoted(name)) is not a valid resource name; expected \(example)")
    }
    var ids: [String] = []
    for (part, expected) in zip(parts, pattern) {
        if let literal = expected {
            guard part == literal else {
                throw .invalid(field, "\(SafeText.quoted(name)) is not a valid resource name; expected \(example)")
            }
        } else {
            guard ResourceID.isValid(part) else {
                throw .invalid(
                    field,
                    "\(SafeText.quoted(name)) is not a valid resource name; expected \(example) with ids of 1–63 characters of a-z, 0-9 and '-', starting with a letter"
                )
            }
            ids.append(part)
        }
    }
    return ids
}

/// The name of a lab account: `labAccounts/{id}`.
public struct LabAccountName: Hashable, Sendable, CustomStringConvertible {
    /// The account id.
    public let id: String
    /// Creates a name from an already validated id.
    public init(id: String) { self.id = id }
    /// Parses `labAccounts/{id}`; throws `invalidArgument` naming `field`.
    public init(parsing name: String, field: String) throws(LabGalleryError) {
        id = try parseName(name, ["labAccounts", nil], field: field, example: "labAccounts/{id}")[0]
    }
    /// `labAccounts/{id}`.
    public var description: String { "labAccounts/\(id)" }
}

/// The name of a gallery: `galleries/{id}`.
public struct GalleryName: Hashable, Sendable, CustomStringConvertible {
    /// The gallery id.
    public let id: String
    /// Creates a name from an already validated id.
    public init(id: String) { self.id = id }
    /// Parses `galleries/{id}`; throws `invalidArgument` naming `field`.
    public init(parsing name: String, field: String) throws(LabGalleryError) {
        id = try parseName(name, ["galleries", nil], field: field, example: "galleries/{id}")[0]
    }
    /// `galleries/{id}`.
    public var description: String { "galleries/\(id)" }
}

/// The name of an image: `galleries/{gallery}/images/{id}`.
public struct ImageName: Hashable, Sendable, CustomStringConvertible {
    /// The gallery holding the image.
    public let gallery: GalleryName
    /// The image id within its gallery.
    public let id: String
    /// Creates a name from already validated ids.
    public init(gallery: GalleryName, id: String) {
        self.gallery = gallery
        self.id = id
    }
    /// Parses `galleries/{gallery}/images/{id}`; throws `invalidArgument` naming `field`.
    public init(parsing name: String, field: String) throws(LabGalleryError) {
        let ids = try parseName(
            name, ["galleries", nil, "images", nil], field: field, example: "galleries/{gallery}/images/{id}")
        gallery = GalleryName(id: ids[0])
        id = ids[1]
    }
    /// `galleries/{gallery}/images/{id}`.
    public var description: String { "\(gallery)/images/\(id)" }
}

/// The name of a lab: `labAccounts/{account}/labs/{id}`.
public struct LabName: Hashable, Sendable, CustomStringConvertible {
    /// The lab account owning the lab.
    public let labAccount: LabAccountName
    /// The lab id within its account.
    public let id: String
    /// Creates a name from already validated ids.
    public init(labAccount: LabAccountName, id: String) {
        self.labAccount = labAccount
        self.id = id
    }
    /// Parses `labAccounts/{account}/labs/{id}`; throws `invalidArgument` naming `field`.
    public init(parsing name: String, field: String) throws(LabGalleryError) {
        let ids = try parseName(
            name, ["labAccounts", nil, "labs", nil], field: field, example: "labAccounts/{account}/labs/{id}")
        labAccount = LabAccountName(id: ids[0])
        id = ids[1]
    }
    /// `labAccounts/{account}/labs/{id}`.
    public var description: String { "\(labAccount)/labs/\(id)" }
}

// MARK: - Entities

/// A lab account. `attachedGallery` is a gallery name (`galleries/{id}`) or `nil`.
public struct LabAccount: Hashable, Sendable {
    /// `labAccounts/{id}`.
    public var name: String
    /// Free-form display name.
    public var displayName: String
    /// The account's region (a region of the catalog).
    public var region: String
    /// The attached gallery's name, or `nil` when none is attached (the API shows an empty string).
    public var attachedGallery: String?
    /// Memberwise initializer.
    public init(name: String, displayName: String, region: String, attachedGallery: String?) {
        self.name = name
        self.displayName = displayName
        self.region = region
        self.attachedGallery = attachedGallery
    }
}

/// A shared image gallery. `geography` is derived from `region` by the region catalog.
public struct Gallery: Hashable, Sendable {
    /// `galleries/{id}`.
    public var name: String
    /// Free-form display name.
    public var displayName: String
    /// The gallery's (home) region.
    public var region: String
    /// Output only: the geography of `region`.
    public var geography: String
    /// Memberwise initializer.
    public init(name: String, displayName: String, region: String, geography: String) {
        self.name = name
        self.displayName = displayName
        self.region = region
        self.geography = geography
    }
}

/// Operating system of an image.
public enum OSType: String, Sendable, CaseIterable {
    /// Windows.
    case windows = "WINDOWS"
    /// Linux.
    case linux = "LINUX"
}

/// Whether an image was generalized (sysprep'd, reusable) or specialized (a machine snapshot).
public enum OSState: String, Sendable, CaseIterable {
    /// Generalized image.
    case generalized = "GENERALIZED"
    /// Specialized image.
    case specialized = "SPECIALIZED"
}

/// How an image entered the gallery.
public enum ImageSource: String, Sendable, CaseIterable {
    /// Uploaded by an operator.
    case uploaded = "UPLOADED"
    /// Saved from a lab's template.
    case savedFromLab = "SAVED_FROM_LAB"
}

/// An image stored in a gallery.
public struct Image: Hashable, Sendable {
    /// `galleries/{gallery}/images/{id}`.
    public var name: String
    /// Free-form display name.
    public var displayName: String
    /// Operating system.
    public var osType: OSType
    /// Generalized or specialized.
    public var osState: OSState
    /// Uploaded or saved from a lab.
    public var source: ImageSource
    /// For `savedFromLab`: the lab's name (`labAccounts/{a}/labs/{l}`); otherwise `nil` (empty in the API).
    public var sourceLab: String?
    /// Size of the image bytes.
    public var sizeBytes: Int64
    /// Lowercase hex SHA-256 of the image bytes.
    public var sha256: String
    /// Home region (the gallery's region).
    public var region: String
    /// The principal who uploaded or saved it.
    public var author: String
    /// Memberwise initializer.
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

/// An image of a lab account's attached gallery, with whether it is enabled for that account and
/// whether it can template a lab of that account now.
public struct LabAccountImage: Hashable, Sendable {
    /// The image.
    public var image: Image
    /// Enabled for the account (images are enabled unless disabled explicitly).
    public var enabled: Bool
    /// Why `CreateLab` would refuse the image as a template for the account now, or `nil` when it
    /// would accept it (the same rule: see ``LabGalleryService/createLab(labAccount:labID:displayName:templateImage:caller:)``).
    public var unavailable: TemplateUnavailability?
    /// Whether `CreateLab` would accept the image as a template for the account now.
    public var available: Bool { unavailable == nil }
    /// Memberwise initializer.
    public init(image: Image, enabled: Bool, unavailable: TemplateUnavailability?) {
        self.image = image
        self.enabled = enabled
        self.unavailable = unavailable
    }
}

/// Why an image of a lab account's attached gallery cannot template a lab of that account now.
public struct TemplateUnavailability: Hashable, Sendable {
    /// The kind of reason, in the order `CreateLab` checks them.
    public enum Reason: String, Hashable, Sendable, CaseIterable {
        /// Disabled for the account (``LabGalleryService/setImagesEnabled(labAccount:images:enabled:caller:)``).
        case disabled
        /// The server accepts only GENERALIZED templates (``TemplateImagePolicy/generalizedOnly``)
        /// and the image is SPECIALIZED.
        case policy
        /// The image's gallery is in another geography: it never replicates to the account's region.
        case otherGeography
        /// The replica in the account's region is PENDING or REPLICATING.
        case replicationInProgress
        /// The replica in the account's region FAILED (RetryReplication re-queues it).
        case replicationFailed
        /// The database names bytes in the account's region that are missing (CreateLab: DATA_LOSS).
        case dataLoss
    }
    /// The kind of reason.
    public var reason: Reason
    /// What is wrong and what to do; the FAILED_PRECONDITION message `CreateLab` answers.
    public var message: String
    /// Memberwise initializer.
    public init(reason: Reason, message: String) {
        self.reason = reason
        self.message = message
    }
}

/// A lab in a lab account; its template is `templateImage`'s blob in the account's region.
public struct Lab: Hashable, Sendable {
    /// `labAccounts/{account}/labs/{id}`.
    public var name: String
    /// Free-form display name.
    public var displayName: String
    /// The image the template was created from (`galleries/{g}/images/{i}`).
    public var templateImage: String
    /// Memberwise initializer.
    public init(name: String, displayName: String, templateImage: String) {
        self.name = name
        self.displayName = displayName
        self.templateImage = templateImage
    }
}

/// A role granted to a principal on a gallery, e.g. `lab-services` / `Contributor`.
public struct RoleAssignment: Hashable, Sendable {
    /// The principal, e.g. `lab-services`.
    public var principal: String
    /// The role, e.g. `Contributor`.
    public var role: String
    /// Memberwise initializer.
    public init(principal: String, role: String) {
        self.principal = principal
        self.role = role
    }

    /// The service identity that acts on galleries for lab accounts.
    public static let labServicesPrincipal = "lab-services"
    /// The role `lab-services` gets on an attached gallery.
    public static let contributorRole = "Contributor"
    /// `lab-services` / `Contributor`.
    public static let labServicesContributor = RoleAssignment(principal: labServicesPrincipal, role: contributorRole)
}

// MARK: - Replication

/// State of an image's replication to one region.
public enum ReplicationState: String, Sendable, CaseIterable {
    /// Not started.
    case pending = "PENDING"
    /// Copy in progress.
    case replicating = "REPLICATING"
    /// Copy done.
    case completed = "COMPLETED"
    /// Copy failed (see `error`).
    case failed = "FAILED"
}

/// Replication of one image to one (non-home) region.
public struct RegionReplication: Hashable, Sendable {
    /// The target region.
    public var region: String
    /// Current state.
    public var state: ReplicationState
    /// Bytes copied so far.
    public var bytesCopied: Int64
    /// Bytes to copy (the image size).
    public var bytesTotal: Int64
    /// Last error message, or `nil`.
    public var error: String?
    /// Copy attempts made so far.
    public var attempts: Int
    /// Memberwise initializer.
    public init(
        region: String, state: ReplicationState, bytesCopied: Int64, bytesTotal: Int64, error: String?, attempts: Int
    ) {
        self.region = region
        self.state = state
        self.bytesCopied = bytesCopied
        self.bytesTotal = bytesTotal
        self.error = error
        self.attempts = attempts
    }

    /// 0–100, rounded down; 100 when completed, and for an empty image once completed.
    public var progressPercent: Int {
        if state == .completed { return 100 }
        guard bytesTotal > 0 else { return 0 }
        return Int(min(100, max(0, bytesCopied * 100 / bytesTotal)))
    }
}

/// The replication state of an image across its geography's other regions.
public struct ReplicationStatus: Hashable, Sendable {
    /// The image name.
    public var image: String
    /// Aggregated over `regions` (see ``aggregate(_:)``).
    public var aggregatedState: ReplicationState
    /// One entry per region of the geography other than the image's home region, sorted by region.
    public var regions: [RegionReplication]
    /// The image was deleted: the last status a watcher gets about it (`regions` as last known).
    public var deleted: Bool
    /// Creates a status, deriving `aggregatedState` from `regions`.
    public init(image: String, regions: [RegionReplication], deleted: Bool = false) {
        self.image = image
        self.regions = regions
        self.aggregatedState = Self.aggregate(regions)
        self.deleted = deleted
    }

    /// Whether nothing follows this status for its image: COMPLETED, FAILED or deleted.
    public var isFinal: Bool { deleted || aggregatedState == .completed || aggregatedState == .failed }

    /// `replicating` while any region is pending or replicating, else `failed` if any failed,
    /// else `completed` (also with no regions at all).
    public static func aggregate(_ regions: [RegionReplication]) -> ReplicationState {
        if regions.contains(where: { $0.state == .pending || $0.state == .replicating }) { return .replicating }
        if regions.contains(where: { $0.state == .failed }) { return .failed }
        return .completed
    }
}

// MARK: - Settings

/// Which images may be a lab's template, and how a saved template is stored.
public enum TemplateImagePolicy: Sendable, Equatable {
    /// Generalized and specialized images (the default; the platform's 2020-06-26 rule). A template
    /// saved with SaveLabTemplateImage is stored SPECIALIZED.
    case any
    /// Only generalized images (the older rule of 2020-02-24); specialized ones are FAILED_PRECONDITION.
    /// A template saved with SaveLabTemplateImage is stored GENERALIZED, as the platform then did,
    /// so other educators can create labs from it.
    case generalizedOnly

    /// The OS state SaveLabTemplateImage gives a saved template under this policy.
    public var savedTemplateOSState: OSState {
        switch self {
        case .any: .specialized
        case .generalizedOnly: .generalized
        }
    }
}
