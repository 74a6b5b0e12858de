import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

extension LabGalleryService {
    /// CreateLab (educator). The template image must be in the account's attached gallery and
    /// available to the account now (``templateAvailability(of:name:for:disabled:_:)``: enabled, allowed
    /// by the template-image policy, stored in the account's region); otherwise FAILED_PRECONDITION
    /// naming the image, with the reason ``listLabAccountImages(labAccount:caller:)`` shows (DATA_LOSS
    /// when the database vouches for bytes that are gone). The lab references the image's blob in the
    /// account's region: nothing is copied. Fields: `lab_account`, `lab_id`, `lab.template_image`.
    public func createLab(
        labAccount: String, labID: String, displayName: String, templateImage: String,
        caller: Principal
    ) async throws(LabGalleryError) -> Lab {
        try await blocking { () throws(LabGalleryError) in
            try require(.educator, for: caller)
            let a = try LabAccountName(parsing: labAccount, field: "lab_account")
            let name = LabName(labAccount: a, id: try ResourceID.validate(labID, field: "lab_id"))
            try DisplayName.validate(displayName, field: "lab.display_name")
            let imageName = try ImageName(parsing: templateImage, field: "lab.template_image")
            let lab = Lab(name: name.description, displayName: displayName, templateImage: imageName.description)
            try Self.checkCancellation()
            // One transaction: every rule, then the lab row referencing the blob.
            return try write { tx in
                let account = try requireLabAccount(a, tx)
                if try tx.lab(name) != nil { throw LabGalleryError.alreadyExists(name.description) }
                let attached = try requireAttachedGallery(account)
                guard imageName.gallery == attached else {
                    throw LabGalleryError.failedPrecondition(
                        message:
                            "template image \(imageName) is not in \(a)'s attached gallery \(attached); pick an image of \(attached) (ListLabAccountImages)"
                    )
                }
                let image = try requireImage(imageName, tx)
                // The rule ListLabAccountImages shows as `available` / `unavailable_reason`.
                switch try templateAvailability(
                    of: image, name: imageName, for: account, disabled: tx.disabledImages(for: a), tx)
                {
                case .available(let source):
                    try requireLiveBlob(source, tx)
                    try tx.insertLab(StoredLab(lab: lab, templatePath: source, templateOSType: image.image.osType))
                    try Self.checkCancellation()  // a call already answered DEADLINE_EXCEEDED commits nothing
                    return lab
                case .unavailable(let why) where why.reason == .dataLoss:
                    throw LabGalleryError.dataLoss(message: why.message)
                case .unavailable(let why):
                    throw LabGalleryError.failedPrecondition(message: why.message)
                }
            }
        }
    }

    /// Whether `image` (of `account`'s attached gallery) can template a new lab of `account` now.
    /// The one rule behind both CreateLab (which refuses with the reason's message) and
    /// ListLabAccountImages / SetImagesEnabled (which show it), so nothing listed as available is
    /// refused and nothing refused is listed as available. Checked in order:
    /// 1. not disabled for the account (`disabled`: the account's overrides);
    /// 2. the template-image policy: under ``TemplateImagePolicy/generalizedOnly`` a SPECIALIZED image is refused;
    /// 3. its bytes are in the account's region: its home blob, or its COMPLETED replica there
    ///    (otherwise: another geography, replication in progress, or replication failed).
    /// Available: the path of the bytes in the account's region (relative to the data directory).
    func templateAvailability(
        of image: StoredImage, name: ImageName, for account: LabAccount,
        disabled: Set<ImageName>, _ tx: any StorageTransaction
    ) throws -> TemplateAvailability {
        func unavailable(_ reason: TemplateUnavailability.Reason, _ message: String) -> TemplateAvailability {
            .unavailable(TemplateUnavailability(reason: reason, message: message))
        }
        if disabled.contains(name) {
            return unavailable(
                .disabled,
                "template image \(name) is disabled for \(account.name); enable it first with SetImagesEnabled")
        }
        if configuration.templateImages == .generalizedOnly, image.image.osState == .specialized {
            return unavailable(
                .policy,
                "template image \(name) is SPECIALIZED and this server accepts only GENERALIZED template images; pick a generalized image"
            )
        }
        let region = account.region
        func present(_ path: String) -> TemplateAvailability {
            if access(layout.url(path).path, F_OK) == 0 { return .available(source: path) }
            return unavailable(
                .dataLoss,
                "the bytes of template image \(name) in the lab account's region \(region) are missing (\(path)); restore them from a backup (labgallery-server fsck lists what is missing)"
            )
        }
        if image.image.region == region { return present(image.blobPath) }
        let row = try tx.replicationRows(of: name).first { $0.record.region == region }
        guard let row else {
            return unavailable(
                .otherGeography,
                "template image \(name) is stored in \(image.image.region) and never replicates to the lab account's region \(region) (another geography); use a gallery in the account's geography"
            )
        }
        let r = row.record
        switch r.state {
        case .completed:
            if let blob = row.blobPath { return present(blob) }
            return unavailable(
                .dataLoss,
                "the replica of template image \(name) in the lab account's region \(region) is COMPLETED but names no file; run labgallery-server fsck"
            )
        case .failed:
            return unavailable(
                .replicationFailed,
                "template image \(name) is not available in the lab account's region \(region): replication to \(region) failed (\(r.error ?? "unknown error")); call RetryReplication for \(name), then create the lab again"
            )
        case .pending, .replicating:
            return unavailable(
                .replicationInProgress,
                "template image \(name) is not available in the lab account's region \(region) yet: replication to \(region) is still in progress (\(r.state.rawValue), \(r.progressPercent)%); wait for it (WatchReplication) and create the lab again"
            )
        }
    }

    /// `image`'s entry in `account`'s listing: enabled unless in `disabled`, and its availability
    /// by ``templateAvailability(of:name:for:disabled:_:)``.
    func labAccountImage(
        _ image: StoredImage, name: ImageName, for account: LabAccount,
        disabled: Set<ImageName>, _ tx: any StorageTransaction
    ) throws -> LabAccountImage {
        let unavailable: TemplateUnavailability?
        switch try templateAvailability(of: image, name: name, for: account, disabled: disabled, tx) {
        case .available: unavailable = nil
        case .unavailable(let why): unavailable = why
        }
        return LabAccountImage(image: image.image, enabled: !disabled.contains(name), unavailable: unavailable)
    }

    /// GetLab (reader). Field: `name`.
    public func getLab(name: String, caller: Principal) async throws(LabGalleryError) -> Lab {
        try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            let n = try LabName(parsing: name, field: "name")
            return try read { tx in try requireLab(n, tx).lab }
        }
    }

    /// ListLabs (reader): labs of an account ordered by id. Fields: `lab_account`, `page_size`, `page_token`.
    public func listLabs(labAccount: String, page: PageRequest = .init(), caller: Principal)
        async throws(LabGalleryError) -> Page<Lab>
    {
        try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            let a = try LabAccountName(parsing: labAccount, field: "lab_account")
            let cursor = try PageCursor(page, kind: "labs:\(a.id)")
            let rows = try read { tx in
                _ = try requireLabAccount(a, tx)
                return try tx.labs(in: a, after: cursor.after, limit: cursor.limit + 1).map(\.lab)
            }
            return cursor.page(rows) { String($0.name.split(separator: "/").last ?? "") }
        }
    }

    /// DeleteLab (educator): removes the lab (and its template's blob when nothing else uses it). Field: `name`.
    public func deleteLab(name: String, caller: Principal) async throws(LabGalleryError) {
        try await blocking { () throws(LabGalleryError) in
            try require(.educator, for: caller)
            let n = try LabName(parsing: name, field: "name")
            let doomed: [String] = try write { tx in
                let lab = try requireLab(n, tx)
                try tx.deleteLab(n)
                return try release([lab.templatePath], tx)
            }
            collect(doomed)
        }
    }
}

/// The answer of ``LabGalleryService/templateAvailability(of:name:for:disabled:_:)``.
enum TemplateAvailability {
    /// Usable now; `source` is the path of its bytes in the account's region.
    case available(source: String)
    /// Not usable now, and why.
    case unavailable(TemplateUnavailability)
}
