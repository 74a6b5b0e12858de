import Foundation

extension LabGalleryService {
    /// UploadImage, step 1 (admin): validates the header and opens a temp file in the gallery's
    /// home-region blob store. Stream the bytes with ``ImageUpload/append(_:)-(ContiguousBytes)``,
    /// then ``ImageUpload/finish()``.
    ///
    /// Fields: `gallery`, `image_id`, `os_type`, `os_state`, `sha256` (64 hex characters when given).
    /// The image is authored by `caller`.
    public func beginUpload(_ header: ImageUploadHeader, caller: Principal) async throws(LabGalleryError) -> ImageUpload
    {
        try await blocking { () throws(LabGalleryError) in
            try require(.admin, for: caller)
            let g = try GalleryName(parsing: header.gallery, field: "gallery")
            let name = ImageName(gallery: g, id: try ResourceID.validate(header.imageID, field: "image_id"))
            try DisplayName.validate(header.displayName, field: "header.display_name")
            guard let osType = header.osType else {
                throw LabGalleryError.invalid("os_type", "required: WINDOWS or LINUX")
            }
            guard let osState = header.osState else {
                throw LabGalleryError.invalid("os_state", "required: GENERALIZED or SPECIALIZED")
            }
            var expected: String?
            if let sha = header.sha256, !sha.isEmpty {
                let lower = sha.lowercased()
                guard lower.utf8.count == 64,
                    lower.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
                else {
                    throw LabGalleryError.invalid(
                        "sha256", "must be 64 hexadecimal characters (the SHA-256 of the image bytes), or empty")
                }
                expected = lower
            }
            // Early checks so a client learns before sending gigabytes; finish() checks again.
            let gallery = try read { tx in
                let gallery = try requireGallery(g, tx)
                if try tx.image(name) != nil { throw LabGalleryError.alreadyExists(name.description) }
                return gallery
            }
            let writer = try BlobWriter(in: layout.tempDirectory(region: gallery.region))
            let draft = Image(
                name: name.description, displayName: header.displayName, osType: osType, osState: osState,
                source: .uploaded, sourceLab: nil, sizeBytes: 0, sha256: "", region: gallery.region, author: caller.name
            )
            return ImageUpload(name: name, draft: draft, expectedSHA256: expected, service: self, writer: writer)
        }
    }

    /// GetImage (reader). Field: `name`.
    public func getImage(name: String, caller: Principal) async throws(LabGalleryError) -> Image {
        try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            let n = try ImageName(parsing: name, field: "name")
            return try read { tx in try requireImage(n, tx).image }
        }
    }

    /// ListImages (reader): images of a gallery ordered by id. Fields: `gallery`, `page_size`, `page_token`.
    public func listImages(gallery: String, page: PageRequest = .init(), caller: Principal)
        async throws(LabGalleryError) -> Page<Image>
    {
        try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            let g = try GalleryName(parsing: gallery, field: "gallery")
            let cursor = try PageCursor(page, kind: "images:\(g.id)")
            let rows = try read { tx in
                _ = try requireGallery(g, tx)
                return try tx.images(in: g, after: cursor.after, limit: cursor.limit + 1).map(\.image)
            }
            return cursor.page(rows) { String($0.name.split(separator: "/").last ?? "") }
        }
    }

    /// DeleteImage (admin). Refused (FAILED_PRECONDITION) while a lab's template was created from it.
    /// Removes the row, its replication records and overrides; blobs no other row references are
    /// removed after the commit. Field: `name`.
    public func deleteImage(name: String, caller: Principal) async throws(LabGalleryError) {
        try await blocking { () throws(LabGalleryError) in
            try require(.admin, for: caller)
            let n = try ImageName(parsing: name, field: "name")
            let (partials, doomed): ([String], [String]) = try write { tx in
                let image = try requireImage(n, tx)
                let labs = try tx.labs(usingTemplate: n)
                guard labs.isEmpty else {
                    throw LabGalleryError.failedPrecondition(
                        message:
                            "\(n) is the template image of \(labs.joined(separator: ", ")); delete those labs first")
                }
                let rows = try tx.replicationRows(of: n)
                try tx.deleteImage(n)
                return (rows.compactMap(\.partialPath), try release([image.blobPath] + rows.compactMap(\.blobPath), tx))
            }
            // Stop the image's jobs first so none writes after its files are removed.
            replicationHooks.imageDeleted(n)
            for p in partials { FileOps.removeQuietly(layout.url(p)) }
            collect(doomed)
        }
    }

    /// ListLabAccountImages (reader): the images of the account's attached gallery (empty when none
    /// is attached), each enabled unless disabled with ``setImagesEnabled(labAccount:images:enabled:caller:)``,
    /// and available when `CreateLab` would accept it as a template for the account now (otherwise with
    /// the reason `CreateLab` would give; see ``templateAvailability(of:name:for:disabled:_:)``).
    /// Field: `lab_account`.
    public func listLabAccountImages(labAccount: String, caller: Principal) async throws(LabGalleryError)
        -> [LabAccountImage]
    {
        var all: [LabAccountImage] = []
        var token = ""
        repeat {
            let page = try await listLabAccountImages(
                labAccount: labAccount, page: PageRequest(size: PageRequest.maxSize, token: token), caller: caller)
            all += page.items
            token = page.nextPageToken
        } while !token.isEmpty
        return all
    }

    /// ListLabAccountImages, one page (`page_size`, `page_token`), like every other List.
    public func listLabAccountImages(labAccount: String, page: PageRequest, caller: Principal)
        async throws(LabGalleryError) -> Page<LabAccountImage>
    {
        try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            let a = try LabAccountName(parsing: labAccount, field: "lab_account")
            let cursor = try PageCursor(page, kind: "labAccountImages:\(a.id)")
            let rows = try read { tx in
                let account = try requireLabAccount(a, tx)
                guard let attached = account.attachedGallery else { return [LabAccountImage]() }
                let g = try GalleryName(parsing: attached, field: "attached_gallery")
                let disabled = try tx.disabledImages(for: a)
                return try tx.images(in: g, after: cursor.after, limit: cursor.limit + 1).map { stored in
                    let n = ImageName(gallery: g, id: String(stored.image.name.split(separator: "/").last ?? ""))
                    return try labAccountImage(stored, name: n, for: account, disabled: disabled, tx)
                }
            }
            return cursor.page(rows) { String($0.image.name.split(separator: "/").last ?? "") }
        }
    }

    /// SetImagesEnabled (admin): enables or disables images of the attached gallery for one account.
    /// All or nothing: a malformed name (INVALID_ARGUMENT `images`), a missing image (NOT_FOUND) or
    /// an image of another gallery (FAILED_PRECONDITION) fails the call with nothing changed.
    /// Returns the resulting entries for the named images, in request order (duplicates once), with
    /// their availability as ``listLabAccountImages(labAccount:caller:)`` shows it.
    /// Fields: `lab_account`, `images`, `enabled`.
    public func setImagesEnabled(labAccount: String, images: [String], enabled: Bool, caller: Principal)
        async throws(LabGalleryError) -> [LabAccountImage]
    {
        try await blocking { () throws(LabGalleryError) in
            try require(.admin, for: caller)
            let a = try LabAccountName(parsing: labAccount, field: "lab_account")
            guard !images.isEmpty else { throw LabGalleryError.invalid("images", "list at least one image name") }
            var names: [ImageName] = []
            for raw in images {
                let n = try ImageName(parsing: raw, field: "images")
                if !names.contains(n) { names.append(n) }
            }
            return try write { tx in
                let account = try requireLabAccount(a, tx)
                let attached = try requireAttachedGallery(account)
                var found: [StoredImage] = []
                for n in names {
                    guard n.gallery == attached else {
                        throw LabGalleryError.failedPrecondition(
                            message:
                                "\(n) is not in \(a)'s attached gallery \(attached); only images of the attached gallery can be enabled or disabled"
                        )
                    }
                    found.append(try requireImage(n, tx))
                }
                for n in names { try tx.setImageDisabled(!enabled, image: n, for: a) }
                let disabled = try tx.disabledImages(for: a)
                return try zip(found, names).map {
                    try labAccountImage($0, name: $1, for: account, disabled: disabled, tx)
                }
            }
        }
    }

    /// SaveLabTemplateImage (educator): stores the lab's template bytes as a new image (source
    /// SAVED_FROM_LAB, `source_lab` = the lab) in the lab account's attached gallery, with
    /// replication records; the bytes are shared, not copied, when the gallery's region already holds
    /// them. The image is SPECIALIZED, or GENERALIZED under ``TemplateImagePolicy/generalizedOnly``
    /// (``TemplateImagePolicy/savedTemplateOSState``) so that CreateLab accepts it there too.
    /// FAILED_PRECONDITION if no gallery is attached; PERMISSION_DENIED if
    /// `lab-services` is not Contributor on it. Fields: `lab`, `image_id`.
    public func saveLabTemplateImage(lab: String, imageID: String, displayName: String, caller: Principal)
        async throws(LabGalleryError) -> Image
    {
        try await blocking { () throws(LabGalleryError) in
            try require(.educator, for: caller)
            let l = try LabName(parsing: lab, field: "lab")
            let id = try ResourceID.validate(imageID, field: "image_id")
            try DisplayName.validate(displayName, field: "display_name")

            /// Checks every rule; run before the copy (fail fast) and again in the storing transaction.
            func check(_ tx: any StorageTransaction) throws -> (StoredLab, Gallery, ImageName) {
                let stored = try requireLab(l, tx)
                let account = try requireLabAccount(l.labAccount, tx)
                let g = try requireAttachedGallery(account)
                let gallery = try requireGallery(g, tx)
                guard try tx.roleAssignments(on: g).contains(.labServicesContributor) else {
                    throw LabGalleryError.permissionDenied(
                        message:
                            "\(RoleAssignment.labServicesPrincipal) is not \(RoleAssignment.contributorRole) on \(g), so template images cannot be saved there; re-attach the gallery to \(account.name) (DetachGallery, then AttachGallery) to restore the grant"
                    )
                }
                let name = ImageName(gallery: g, id: id)
                if try tx.image(name) != nil { throw LabGalleryError.alreadyExists(name.description) }
                return (stored, gallery, name)
            }

            let (stored, gallery, name, blob) = try read { tx in
                let (stored, gallery, name) = try check(tx)
                return (stored, gallery, name, try tx.blob(stored.templatePath))
            }
            func image(size: Int64, sha256: String) -> Image {
                Image(
                    name: name.description, displayName: displayName, osType: stored.templateOSType,
                    osState: configuration.templateImages.savedTemplateOSState,
                    source: .savedFromLab, sourceLab: l.description, sizeBytes: size, sha256: sha256,
                    region: gallery.region, author: caller.name)
            }
            func recheck(_ tx: any StorageTransaction) throws {
                let (current, g, n) = try check(tx)
                guard n == name, g.region == gallery.region, current.templatePath == stored.templatePath else {
                    throw LabGalleryError.failedPrecondition(
                        message: "\(l.labAccount)'s attached gallery changed while saving; retry")
                }
            }
            // The template's bytes are a blob of the lab account's region. Saved into a gallery of
            // that region, or of a region that holds the same bytes, the image shares a blob: no copy.
            if let blob {
                let saved = image(size: blob.sizeBytes, sha256: blob.sha256)
                let shared: [ReplicationRow]? = try write { tx in
                    let path: String
                    if blob.region == gallery.region {
                        try requireLiveBlob(blob.path, tx)
                        path = blob.path
                    } else if let existing = try liveBlobPath(region: gallery.region, sha256: blob.sha256, tx) {
                        path = existing
                    } else {
                        return nil
                    }
                    return try insertImage(saved, name: name, blobPath: path, tx, check: recheck)
                }
                if let shared {
                    replicationHooks.imageStored(name, rows: shared)
                    return saved
                }
            }
            var writer = try FileOps.copy(
                layout.url(stored.templatePath), displayPath: stored.templatePath,
                into: layout.tempDirectory(region: gallery.region))
            return try storeImage(
                image(size: writer.size, sha256: writer.sha256), name: name, writer: &writer, check: recheck)
        }
    }
}
