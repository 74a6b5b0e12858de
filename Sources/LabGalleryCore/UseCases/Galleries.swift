import Foundation

extension LabGalleryService {
    /// CreateGallery (admin): a gallery outside any lab account. Fields: `gallery_id`, `gallery.region`.
    public func createGallery(id: String, displayName: String, region: String, caller: Principal)
        async throws(LabGalleryError) -> Gallery
    {
        try await blocking { () throws(LabGalleryError) in
            try require(.admin, for: caller)
            let name = GalleryName(id: try ResourceID.validate(id, field: "gallery_id"))
            try DisplayName.validate(displayName, field: "gallery.display_name")
            let geography = try catalog.requireGeography(of: region, field: "gallery.region")
            let gallery = Gallery(
                name: name.description, displayName: displayName, region: region, geography: geography)
            return try write { tx in
                if try tx.gallery(name) != nil { throw LabGalleryError.alreadyExists(name.description) }
                try tx.insertGallery(gallery)
                return gallery
            }
        }
    }

    /// GetGallery (reader). Field: `name`.
    public func getGallery(name: String, caller: Principal) async throws(LabGalleryError) -> Gallery {
        try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            let n = try GalleryName(parsing: name, field: "name")
            return try read { tx in try requireGallery(n, tx) }
        }
    }

    /// ListGalleries (reader), ordered by id. Fields: `page_size`, `page_token`.
    public func listGalleries(page: PageRequest = .init(), caller: Principal) async throws(LabGalleryError) -> Page<
        Gallery
    > {
        try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            let cursor = try PageCursor(page, kind: "galleries")
            let rows = try read { tx in try tx.galleries(after: cursor.after, limit: cursor.limit + 1) }
            return cursor.page(rows.map(withGeography)) { String($0.name.dropFirst("galleries/".count)) }
        }
    }

    /// DeleteGallery (admin). Refused while attached to any lab account, and while a lab's template
    /// was created from one of its images. Deletes the gallery's images (rows, replication records,
    /// blobs) and role assignments. Field: `name`.
    public func deleteGallery(name: String, caller: Principal) async throws(LabGalleryError) {
        try await blocking { () throws(LabGalleryError) in
            try require(.admin, for: caller)
            let n = try GalleryName(parsing: name, field: "name")
            var deleted: [ImageName] = []
            let (partials, doomed): ([String], [String]) = try write { tx in
                _ = try requireGallery(n, tx)
                let attached = try tx.countLabAccounts(attachedTo: n)
                guard attached == 0 else {
                    throw LabGalleryError.failedPrecondition(
                        message:
                            "\(n) is attached to \(attached) lab account(s); detach it first with DetachGallery (confirm: true)"
                    )
                }
                let labs = try tx.labs(usingTemplatesIn: n)
                guard labs.isEmpty else {
                    throw LabGalleryError.failedPrecondition(
                        message:
                            "images of \(n) are templates of \(labs.joined(separator: ", ")); delete those labs first")
                }
                let images = try tx.images(in: n, after: nil, limit: nil)
                var blobs = images.map(\.blobPath)
                var partials: [String] = []
                for i in images {
                    let rows = try tx.replicationRows(of: try ImageName(parsing: i.image.name, field: "name"))
                    blobs += rows.compactMap(\.blobPath)
                    partials += rows.compactMap(\.partialPath)
                }
                deleted = try images.map { try ImageName(parsing: $0.image.name, field: "name") }
                try tx.deleteGallery(n)
                return (partials, try release(blobs, tx))
            }
            // Stop replication jobs (and end watches) before removing their files.
            for i in deleted { replicationHooks.imageDeleted(i) }
            replicationHooks.galleryDeleted(n)
            for p in partials { FileOps.removeQuietly(layout.url(p)) }
            collect(doomed)
        }
    }

    /// AttachGallery (admin). FAILED_PRECONDITION if the account already has a gallery attached
    /// (detach it first). Grants `lab-services` Contributor on the gallery. Fields: `lab_account`, `gallery`.
    public func attachGallery(labAccount: String, gallery: String, caller: Principal) async throws(LabGalleryError)
        -> LabAccount
    {
        try await blocking { () throws(LabGalleryError) in
            try require(.admin, for: caller)
            let a = try LabAccountName(parsing: labAccount, field: "lab_account")
            let g = try GalleryName(parsing: gallery, field: "gallery")
            return try write { tx in
                var account = try requireLabAccount(a, tx)
                _ = try requireGallery(g, tx)
                if let current = account.attachedGallery {
                    throw LabGalleryError.failedPrecondition(
                        message:
                            "\(a) already has \(current) attached and a lab account can have only one gallery; detach it first with DetachGallery (confirm: true), then attach \(g)"
                    )
                }
                try tx.setAttachedGallery(g, of: a)
                try tx.grant(.labServicesContributor, on: g)
                account.attachedGallery = g.description
                return account
            }
        }
    }

    /// DetachGallery (admin). Requires `confirm == true` (INVALID_ARGUMENT naming `confirm`);
    /// FAILED_PRECONDITION if nothing is attached. `gallery`, when given (non-empty), is the gallery
    /// the caller means to detach (INVALID_ARGUMENT naming `gallery` if malformed): if another gallery
    /// is attached, FAILED_PRECONDITION naming both, and nothing changes. Resets the account's
    /// per-image enable/disable overrides, and removes `lab-services` Contributor when no other
    /// account still has the gallery attached. Existing labs keep their templates (blobs they reference).
    /// Fields: `lab_account`, `confirm`, `gallery`.
    public func detachGallery(labAccount: String, confirm: Bool, gallery: String? = nil, caller: Principal)
        async throws(LabGalleryError) -> LabAccount
    {
        try await blocking { () throws(LabGalleryError) in
            try require(.admin, for: caller)
            let a = try LabAccountName(parsing: labAccount, field: "lab_account")
            var expected: GalleryName?
            if let gallery, !gallery.isEmpty { expected = try GalleryName(parsing: gallery, field: "gallery") }
            guard confirm else {
                throw LabGalleryError.invalid("confirm", "detaching a gallery must be confirmed; set confirm: true")
            }
            return try write { tx in
                var account = try requireLabAccount(a, tx)
                guard let current = account.attachedGallery else {
                    throw LabGalleryError.failedPrecondition(message: "\(a) has no gallery attached; nothing to detach")
                }
                let attached = try GalleryName(parsing: current, field: "attached_gallery")
                if let expected, expected != attached {
                    throw LabGalleryError.failedPrecondition(
                        message:
                            "\(a) has \(attached) attached, not \(expected); nothing was detached. Check which gallery is attached (GetLabAccount) and detach again naming \(attached), or leave gallery empty"
                    )
                }
                try detach(a, from: attached, tx)
                account.attachedGallery = nil
                return account
            }
        }
    }

    /// ListRoleAssignments (reader): role assignments on a gallery. Field: `gallery`.
    public func listRoleAssignments(gallery: String, caller: Principal) async throws(LabGalleryError)
        -> [RoleAssignment]
    {
        try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            let g = try GalleryName(parsing: gallery, field: "gallery")
            return try read { tx in
                _ = try requireGallery(g, tx)
                return try tx.roleAssignments(on: g)
            }
        }
    }
}
