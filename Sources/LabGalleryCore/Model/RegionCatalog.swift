import Foundation

/// Maps regions to geographies. A gallery's geography, and the regions its images replicate to,
/// come from here.
///
/// The built-in catalog (``builtIn``) holds Azure-like geographies; an operator can replace it with a
/// JSON file `{"geographies": {"Name": ["region", ...]}}` (see ``init(contentsOf:)``), which the server
/// exposes as a config flag.
public struct RegionCatalog: Sendable, Equatable {
    /// Geography name → its regions (sorted).
    public let geographies: [String: [String]]
    /// Region → geography name.
    private let geographyByRegion: [String: String]
    /// Where the catalog came from, for error messages ("the built-in region catalog" or a file path).
    public let origin: String

    /// Creates a catalog; throws `invalidArgument` (field `geographies`) if a region appears twice
    /// or a region name is not a valid id.
    public init(geographies: [String: [String]], origin: String = "a custom region catalog") throws(LabGalleryError) {
        var byRegion: [String: String] = [:]
        var sorted: [String: [String]] = [:]
        for (geo, regions) in geographies {
            guard !geo.isEmpty, !regions.isEmpty else {
                throw .invalid(
                    "geographies",
                    "geography \"\(geo)\" in \(origin) must have a non-empty name and at least one region")
            }
            for r in regions {
                guard ResourceID.isValid(r) else {
                    throw .invalid(
                        "geographies", "region \"\(r)\" in \(origin) is not a valid region name (a-z, 0-9, '-')")
                }
                if let other = byRegion[r] {
                    throw .invalid(
                        "geographies", "region \"\(r)\" appears in both \"\(other)\" and \"\(geo)\" in \(origin)")
                }
                byRegion[r] = geo
            }
            sorted[geo] = regions.sorted()
        }
        self.geographies = sorted
        self.geographyByRegion = byRegion
        self.origin = origin
    }

    /// Loads a JSON catalog file: `{"geographies": {"Name": ["region", ...]}}`.
    public init(contentsOf url: URL) throws(LabGalleryError) {
        struct File: Decodable { var geographies: [String: [String]] }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
        } catch {
            throw .invalid(
                "region_catalog",
                "cannot read region catalog \(url.path): \(error); expected JSON {\"geographies\": {\"Name\": [\"region\", ...]}}"
            )
        }
        try self.init(geographies: file.geographies, origin: "the region catalog file \(url.path)")
    }

    /// All known regions, sorted.
    public var regions: [String] { geographyByRegion.keys.sorted() }

    /// The geography of `region`, or `nil` if unknown.
    public func geography(of region: String) -> String? { geographyByRegion[region] }

    /// The geography of `region`, or `invalidArgument` naming `field` and listing where valid regions come from.
    public func requireGeography(of region: String, field: String) throws(LabGalleryError) -> String {
        if let geo = geographyByRegion[region] { return geo }
        let known = regions
        let shown = known.prefix(12).joined(separator: ", ") + (known.count > 12 ? ", … (\(known.count) in all)" : "")
        throw .invalid(
            field,
            "unknown region \(SafeText.quoted(region)); valid regions come from \(origin) (override with a JSON file via the server's region catalog flag): \(shown)"
        )
    }

    /// The other regions of `region`'s geography, sorted (empty for an unknown region).
    public func siblings(of region: String) -> [String] {
        guard let geo = geographyByRegion[region] else { return [] }
        return (geographies[geo] ?? []).filter { $0 != region }
    }

    /// The built-in Azure-like catalog.
    public static let builtIn: RegionCatalog = {
        // Force-try is safe: the literal below has unique, valid region names (covered by a test).
        try! RegionCatalog(
            geographies: [
                "United States": [
                    "centralus", "eastus", "eastus2", "northcentralus", "southcentralus",
                    "westcentralus", "westus", "westus2", "westus3",
                ],
                "Europe": ["northeurope", "westeurope"],
                "France": ["francecentral", "francesouth"],
                "United Kingdom": ["uksouth", "ukwest"],
                "Germany": ["germanynorth", "germanywestcentral"],
                "Switzerland": ["switzerlandnorth", "switzerlandwest"],
                "Norway": ["norwayeast", "norwaywest"],
                "Sweden": ["swedencentral", "swedensouth"],
                "Japan": ["japaneast", "japanwest"],
                "Korea": ["koreacentral", "koreasouth"],
                "Australia": ["australiacentral", "australiacentral2", "australiaeast", "australiasoutheast"],
                "Canada": ["canadacentral", "canadaeast"],
                "Asia Pacific": ["eastasia", "southeastasia"],
                "India": ["centralindia", "southindia", "westindia"],
                "Brazil": ["brazilsouth", "brazilsoutheast"],
                "South Africa": ["southafricanorth", "southafricawest"],
                "UAE": ["uaecentral", "uaenorth"],
            ], origin: "the built-in region catalog")
    }()
}
