import Foundation

/// How a new lab account gets its gallery (the `oneof` of CreateLabAccountRequest).
public enum LabAccountGallerySetup: Sendable, Equatable {
    /// No gallery.
    case none
    /// Create `galleries/{galleryID}` in the account's region and attach it (`create_gallery`).
    case create(galleryID: String, displayName: String)
    /// Attach an existing gallery by name (`attach_gallery`).
    case attach(gallery: String)
}

extension LabGalleryService {
    /// CreateLabAccount (admin). Creates `labAccounts/{id}` in `region`, optionally creating
    /// (in the same region) or attaching a gallery; attaching grants `lab-services` Contributor on it.
    ///
    /// Fields: `lab_account_id`, `lab_account.region`, `create_gallery.gallery_id`, `attach_gallery`.
    public func createLabAccount(
        id: String, displayName: String, region: String,
        gallery setup: LabAccountGallerySetup = .none, caller: Principal
    ) async throws(LabGalleryError) -> LabAccount {
        try await blocking { () throws(LabGalleryError) in
            try require(.admin, for: caller)
            let name = LabAccountName(id: try ResourceID.validate(id, field: "lab_account_id"))
            try DisplayName.validate(displayName, field: "lab_account.display_name")
            _ = try catalog.requireGeography(of: region, field: "lab_account.region")
            var galleryToCreate: Gallery?
            var galleryToAttach: GalleryName?
            switch setup {
            case .none:
                break
            case .create(let galleryID, let galleryDisplayName):
                let g = GalleryName(id: try ResourceID.validate(galleryID, field: "create_gallery.gallery_id"))
                try DisplayName.validate(galleryDisplayName, field: "create_gallery.display_name")
                galleryToCreate = Gallery(
                    name: g.description, displayName: galleryDisplayName, region: region,
                    geography: try catalog.requireGeography(of: region, field: "lab_account.region"))
                galleryToAttach = g
            case .attach(let gallery):
                galleryToAttach = try GalleryName(parsing: gallery, field: "attach_gallery")
            }
            let account = LabAccount(
                name: name.description, displayName: displayName, region: region,
                attachedGallery: galleryToAttach?.description)
            return try write { tx in
                if try tx.labAccount(name) != nil { throw LabGalleryError.alreadyExists(name.description) }
                if let g = galleryToCreate {
                    if try tx.gallery(GalleryName(parsing: g.name, field: "create_gallery.gallery_id")) != nil {
                        throw LabGalleryError.alreadyExists(g.name)
                    }
                    try tx.insertGallery(g)
                } else if let g = galleryToAttach {
                    _ = try requireGallery(g, tx)
                }
                try tx.insertLabAccount(account)
                if let g = galleryToAttach { try tx.grant(.labServicesContributor, on: g) }
                return account
            }
        }
    }

    /// GetLabAccount (reader). Field: `name`.
    public func getLabAccount(name: String, caller: Principal) async throws(LabGalleryError) -> LabAccount {
        try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            let n = try LabAccountName(parsing: name, field: "name")
            return try read { tx in try requireLabAccount(n, tx) }
        }
    }

    /// ListLabAccounts (reader), ordered by id. Fields: `page_size`, `page_token`.
    public func listLabAccounts(page: PageRequest = .init(), caller: Principal) async throws(LabGalleryError) -> Page<
        LabAccount
    > {
        try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            let cursor = try PageCursor(page, kind: "labAccounts")
            let rows = try read { tx in try tx.labAccounts(after: cursor.after, limit: cursor.limit + 1) }
            return cursor.page(rows) { LabAccountName(id: String($0.name.dropFirst("labAccounts/".count))).id }
        }
    }

    /// DeleteLabAccount (admin). Refused (FAILED_PRECONDITION) while the account has labs — delete
    /// them first, since each lab references its template. An attached gallery is detached implicitly
    /// (the gallery itself survives; `lab-services` loses Contributor if no other account uses it).
    /// Field: `name`.
    public func deleteLabAccount(name: String, caller: Principal) async throws(LabGalleryError) {
        try await blocking { () throws(LabGalleryError) in
            try require(.admin, for: caller)
            let n = try LabAccountName(parsing: name, field: "name")
            try write { tx in
                let account = try requireLabAccount(n, tx)
                let labs = try tx.countLabs(in: n)
                guard labs == 0 else {
                    throw LabGalleryError.failedPrecondition(
                        message: "\(n) still has \(labs) lab(s); delete them first (ListLabs, then DeleteLab)")
                }
                try tx.clearImageOverrides(for: n)
                if let attached = account.attachedGallery {
                    try detach(n, from: GalleryName(parsing: attached, field: "attached_gallery"), tx)
                }
                try tx.deleteLabAccount(n)
            }
        }
    }

    /// Clears the attachment and drops `lab-services` Contributor when no account uses the gallery any more.
    func detach(_ account: LabAccountName, from gallery: GalleryName, _ tx: any StorageTransaction) throws {
        try tx.setAttachedGallery(nil, of: account)
        try tx.clearImageOverrides(for: account)
        if try tx.countLabAccounts(attachedTo: gallery) == 0 {
            try tx.revoke(.labServicesContributor, on: gallery)
        }
    }
}
