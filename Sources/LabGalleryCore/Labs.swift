import Foundation

extension LabGalleryService {
    /// CreateLab (educator). The template image must be in the account's attached gallery and
    /// enabled for the account (else FAILED_PRECONDITION naming the image); with
    /// `templateImages: .generalizedOnly` a specialized image is FAILED_PRECONDITION too.
    /// The lab references the image's blob in the account's region: nothing is copied.
    /// Fields: `lab_account`, `lab_id`, `lab.template_image`.
    public func createLab(labAccount: String, labID: String, displayName: String, templateImage: String,
                          caller: Principal) async throws(LabGalleryError) -> Lab {
        try await blocking { () throws(LabGalleryError) in
            try require(.educator, for: caller)
            let a = try LabAccountName(parsing: labAccount, field: "lab_account")
            let name = LabName(labAccount: a, id: try ResourceID.validate(labID, field: "lab_id"))
            let imageName = try ImageName(parsing: templateImage, field: "lab.template_image")
            let policy = configuration.templateImages

            /// Checks every rule; returns the image and the path of its bytes in the account's region.
            func check(_ tx: any StorageTransaction) throws -> (StoredImage, String) {
                let account = try requireLabAccount(a, tx)
                if try tx.lab(name) != nil { throw LabGalleryError.alreadyExists(name.description) }
                let attached = try requireAttachedGallery(account)
                guard imageName.gallery == attached else {
                    throw LabGalleryError.failedPrecondition(message: "template image \(imageName) is not in \(a)'s attached gallery \(attached); pick an image of \(attached) (ListLabAccountImages)")
                }
                let image = try requireImage(imageName, tx)
                guard !(try tx.disabledImages(for: a).contains(imageName)) else {
                    throw LabGalleryError.failedPrecondition(message: "template image \(imageName) is disabled for \(a); enable it first with SetImagesEnabled")
                }
                if policy == .generalizedOnly, image.image.osState == .specialized {
                    throw LabGalleryError.failedPrecondition(message: "template image \(imageName) is SPECIALIZED and this server accepts only GENERALIZED template images; pick a generalized image")
                }
                return (image, try availableCopy(of: image, name: imageName, in: account.region, tx))
            }

            // The lab's template is the image's blob in the account's region (its home blob or the
            // COMPLETED replica there): referenced, never copied, in one transaction.
            let lab = Lab(name: name.description, displayName: displayName, templateImage: imageName.description)
            try Self.checkCancellation()
            return try write { tx in
                let (image, source) = try check(tx)
                try requireLiveBlob(source, tx)
                try tx.insertLab(StoredLab(lab: lab, templatePath: source, templateOSType: image.image.osType))
                return lab
            }
        }
    }

    /// The path of `image`'s bytes in `region`: its home blob, or its COMPLETED replica there;
    /// otherwise FAILED_PRECONDITION saying whether replication there is in progress or failed.
    func availableCopy(of image: StoredImage, name: ImageName, in region: String, _ tx: any StorageTransaction) throws -> String {
        if image.image.region == region { return image.blobPath }
        let row = try tx.replicationRows(of: name).first { $0.record.region == region }
        guard let row else {
            throw LabGalleryError.failedPrecondition(message: "template image \(name) is stored in \(image.image.region) and never replicates to the lab account's region \(region) (another geography); use a gallery in the account's geography")
        }
        let r = row.record
        switch r.state {
        case .completed:
            if let blob = row.blobPath { return blob }
            throw LabGalleryError.internal(message: "replica of \(name) in \(region) is COMPLETED but has no file")
        case .failed:
            throw LabGalleryError.failedPrecondition(message: "template image \(name) is not available in the lab account's region \(region): replication to \(region) failed (\(r.error ?? "unknown error")); call RetryReplication for \(name), then create the lab again")
        case .pending, .replicating:
            throw LabGalleryError.failedPrecondition(message: "template image \(name) is not available in the lab account's region \(region) yet: replication to \(region) is still in progress (\(r.state.rawValue), \(r.progressPercent)%); wait for it (WatchReplication) and create the lab again")
        }
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
    public func listLabs(labAccount: String, page: PageRequest = .init(), caller: Principal) async throws(LabGalleryError) -> Page<Lab> {
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
