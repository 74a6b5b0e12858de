import Foundation

/// An exact amount of money in nano-units (10⁻⁹ of the currency unit): never binary floating point.
public struct Money: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Amount × 10⁹.
    public var nanos: Int128
    /// Creates an amount from nano-units.
    public init(nanos: Int128) { self.nanos = nanos }
    /// Zero.
    public static let zero = Money(nanos: 0)

    /// Parses a non-negative decimal string with at most 9 fractional digits, e.g. "0.048125".
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), !parts[0].isEmpty, parts[0].allSatisfy(\.isASCII),
            let whole = Int128(String(parts[0])),
            whole >= 0, whole <= Money.maxWhole
        else { return nil }
        var fraction: Int128 = 0
        if parts.count == 2 {
            let f = parts[1]
            guard !f.isEmpty, f.count <= 9, f.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            fraction = Int128(String(f) + String(repeating: "0", count: 9 - f.count))!
        }
        nanos = whole * 1_000_000_000 + fraction
    }

    /// The largest whole part ``init(_:)`` parses (10¹⁸): anything above is refused, never an
    /// overflow trap.
    static let maxWhole: Int128 = 1_000_000_000_000_000_000

    /// Decimal string with at least two fractional digits and no trailing zeros beyond them: "24.64", "0.048125".
    public var description: String {
        let sign = nanos < 0 ? "-" : ""
        let v = nanos < 0 ? -nanos : nanos
        var fraction = String(v % 1_000_000_000)
        fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
        while fraction.count > 2 && fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(sign)\(v / 1_000_000_000).\(fraction)"
    }

    /// Sum.
    public static func + (a: Money, b: Money) -> Money { Money(nanos: a.nanos + b.nanos) }
    /// Ordering by amount.
    public static func < (a: Money, b: Money) -> Bool { a.nanos < b.nanos }

    /// `bytes` priced at `self` per GiB (2³⁰ bytes), rounded half up to the nano-unit.
    public func perGiB(times bytes: Int64) -> Money {
        let gib: Int128 = 1 << 30
        return Money(nanos: (Int128(bytes) * nanos * 2 + gib) / (2 * gib))
    }
}

/// Prices of gallery storage (the server's `--price-sheet` JSON file).
///
/// Defaults, in USD:
/// - storage 0.048125 per GiB-month in every region: the Azure Lab Services administrator guide's
///   shared-image-gallery example prices one 32 GB standard HDD managed disk replica at $1.54 a month
///   ("1 image × 2 versions × 8 US regions × $1.54 = $24.64 per month"); 1.54 / 32 = 0.048125. We read
///   its "32 GB" as 32 GiB (the managed-disk tier size) and price storage linearly per GiB.
/// - one-time replication egress 0.02 per GiB: Azure's published rate for inter-region data transfer
///   within North America (assumption: the same rate for every geography).
///
/// JSON: `{"currency": "USD", "storagePerGiBMonth": "0.048125", "egressPerGiB": "0.02",
/// "regions": {"westeurope": "0.052"}}` — prices as decimal strings; `regions` overrides storage per region.
public struct PriceSheet: Sendable, Equatable {
    /// ISO 4217 code.
    public var currency: String
    /// Storage price per GiB-month where ``regionalStorage`` has no entry.
    public var storagePerGiBMonth: Money
    /// Storage price per GiB-month by region.
    public var regionalStorage: [String: Money]
    /// One-time egress price per GiB copied to another region.
    public var egressPerGiB: Money

    /// The largest price a sheet may set, per GiB or GiB-month: 1,000,000. Costs are computed
    /// in 128-bit nano-units; with prices at most this, any size up to `Int64.max` bytes, summed
    /// over millions of replicas, stays far from overflowing.
    public static let maxPrice = Money(nanos: 1_000_000 * 1_000_000_000)

    /// The defaults documented above.
    public static let `default` = PriceSheet(
        currency: "USD", storagePerGiBMonth: Money("0.048125")!, regionalStorage: [:],
        egressPerGiB: Money("0.02")!)

    /// Memberwise initializer.
    public init(currency: String, storagePerGiBMonth: Money, regionalStorage: [String: Money], egressPerGiB: Money) {
        self.currency = currency
        self.storagePerGiBMonth = storagePerGiBMonth
        self.regionalStorage = regionalStorage
        self.egressPerGiB = egressPerGiB
    }

    /// Loads the JSON file described above (missing keys keep the defaults).
    public init(contentsOf url: URL) throws(LabGalleryError) {
        struct File: Decodable {
            var currency: String?
            var storagePerGiBMonth: String?
            var egressPerGiB: String?
            var regions: [String: String]?
        }
        let f: File
        do { f = try JSONDecoder().decode(File.self, from: Data(contentsOf: url)) } catch {
            throw .invalid("price_sheet", "cannot read price sheet \(url.path): \(error)")
        }
        func money(_ s: String, _ key: String) throws(LabGalleryError) -> Money {
            guard let m = Money(s) else {
                throw .invalid(
                    "price_sheet",
                    "\(key) = \(SafeText.quoted(s)) in \(url.path) is not a non-negative decimal string with at most 9 decimals (at most \(PriceSheet.maxPrice))"
                )
            }
            guard m <= PriceSheet.maxPrice else {
                throw .invalid(
                    "price_sheet",
                    "\(key) = \(SafeText.quoted(s)) in \(url.path) is above the largest price accepted, \(PriceSheet.maxPrice) per GiB (larger prices would overflow the cost arithmetic)"
                )
            }
            return m
        }
        self = .default
        if let c = f.currency {
            guard c.count == 3, c.allSatisfy({ $0.isASCII && $0.isUppercase }) else {
                throw .invalid(
                    "price_sheet", "currency \(SafeText.quoted(c)) in \(url.path) is not an ISO 4217 code like USD")
            }
            currency = c
        }
        if let s = f.storagePerGiBMonth { storagePerGiBMonth = try money(s, "storagePerGiBMonth") }
        if let s = f.egressPerGiB { egressPerGiB = try money(s, "egressPerGiB") }
        for (region, s) in f.regions ?? [:] { regionalStorage[region] = try money(s, "regions.\(region)") }
    }

    /// Storage price per GiB-month in `region`.
    public func storagePrice(in region: String) -> Money { regionalStorage[region] ?? storagePerGiBMonth }
}

/// One stored replica and its monthly price.
public struct CostLine: Hashable, Sendable {
    /// Image name.
    public var image: String
    /// Region holding the replica.
    public var region: String
    /// Bytes stored.
    public var sizeBytes: Int64
    /// Monthly price.
    public var monthlyCost: Money
    /// Memberwise initializer.
    public init(image: String, region: String, sizeBytes: Int64, monthlyCost: Money) {
        self.image = image
        self.region = region
        self.sizeBytes = sizeBytes
        self.monthlyCost = monthlyCost
    }
}

/// A gallery's storage cost, billed apart from lab usage.
public struct GalleryCost: Hashable, Sendable {
    /// Gallery name.
    public var gallery: String
    /// ISO 4217 code.
    public var currency: String
    /// One line per stored replica: the home region, then every COMPLETED replica (by image, region).
    public var lines: [CostLine]
    /// Sum of the lines.
    public var monthlyTotal: Money
    /// One-time egress of copying the COMPLETED replicas out of the home region.
    public var oneTimeReplicationEgress: Money
    /// Bytes billed: the sum of the lines' sizes.
    public var billedBytes: Int64 { lines.reduce(0) { $0 + $1.sizeBytes } }
    /// Bytes physically stored for these images: each distinct blob once (identical bytes in a
    /// region are stored once, shared by images, replicas and lab templates).
    public var storedBytes: Int64

    /// Prices `images` (each with its replication records) with `sheet`.
    ///
    /// A replica is billed once it exists: the home copy always, another region once its replication is
    /// COMPLETED (a pending, running or failed copy stores nothing billable yet). The egress covers the
    /// same completed replicas, each copied once from the home region.
    public static func compute(
        gallery: String, images: [(Image, [RegionReplication])], sheet: PriceSheet,
        storedBytes: Int64 = 0
    ) -> GalleryCost {
        var lines: [CostLine] = []
        var egress = Money.zero
        for (image, replicas) in images.sorted(by: { $0.0.name < $1.0.name }) {
            var regions = [image.region]
            for r in replicas.sorted(by: { $0.region < $1.region }) where r.state == .completed {
                regions.append(r.region)
                egress = egress + sheet.egressPerGiB.perGiB(times: image.sizeBytes)
            }
            for region in regions {
                lines.append(
                    CostLine(
                        image: image.name, region: region, sizeBytes: image.sizeBytes,
                        monthlyCost: sheet.storagePrice(in: region).perGiB(times: image.sizeBytes)))
            }
        }
        let total = lines.reduce(Money.zero) { $0 + $1.monthlyCost }
        return GalleryCost(
            gallery: gallery, currency: sheet.currency, lines: lines, monthlyTotal: total,
            oneTimeReplicationEgress: egress, storedBytes: storedBytes)
    }
}

extension LabGalleryService {
    /// GetGalleryCost (reader): the gallery's monthly storage cost priced with `sheet`
    /// (see ``GalleryCost/compute(gallery:images:sheet:)``). Field: `gallery`.
    public func galleryCost(gallery: String, sheet: PriceSheet, caller: Principal) async throws(LabGalleryError)
        -> GalleryCost
    {
        try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            let g = try GalleryName(parsing: gallery, field: "gallery")
            let (images, stored) = try read { tx in
                _ = try requireGallery(g, tx)
                var blobs: Set<String> = []
                let images = try tx.images(in: g, after: nil, limit: nil).map { stored in
                    let rows = try tx.replicationRows(of: try ImageName(parsing: stored.image.name, field: "name"))
                    blobs.insert(stored.blobPath)
                    for r in rows where r.record.state == .completed { if let b = r.blobPath { blobs.insert(b) } }
                    return (stored.image, rows.map(\.record))
                }
                let sizes = try blobs.map { path in try tx.blob(path)?.sizeBytes ?? 0 }
                return (images, sizes.reduce(0, +))
            }
            return GalleryCost.compute(gallery: g.description, images: images, sheet: sheet, storedBytes: stored)
        }
    }
}
