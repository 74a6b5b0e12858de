import Synchronization

extension String {
    /// The last component of an image's resource name (`galleries/G/images/I` → `I`).
    fileprivate var imageID: String { split(separator: "/").last.map(String.init) ?? self }
}

/// The engine's side of status, watches and retries (``LabGalleryService`` checks role and names first).
extension ReplicationEngine {
    /// The live status of an image: the tracked one (fresher than the persisted progress); in fleet
    /// mode `persisted` with the records of the jobs this instance runs (other instances' progress is
    /// in the database).
    func liveStatus(_ persisted: ReplicationStatus) -> ReplicationStatus {
        state.withLock { s in
            guard let e = s.images[persisted.image] else { return persisted }
            guard fleet != nil else { return e.status }
            var status = persisted
            for i in status.regions.indices
            where s.jobs.running[JobKey(image: e.name, region: status.regions[i].region)] != nil {
                status.regions[i] = e.regions.first { $0.region == status.regions[i].region } ?? status.regions[i]
            }
            return status
        }
    }

    /// An image watch: the first ``ReplicationWatch/next()`` is the full current state; then one
    /// full status per change (coalesced for slow readers); `nil` after a COMPLETED/FAILED one;
    /// NOT_FOUND when the image is deleted. `persisted` reads the image's status (NOT_FOUND if gone).
    func watch(
        _ image: ImageName,
        persisted: () async throws(LabGalleryError) -> ReplicationStatus
    ) async throws(LabGalleryError) -> ReplicationWatch {
        let mailbox = WatchMailbox()
        let key = image.description
        while true {
            let deletions = state.withLock { $0.deletions }
            let status = try await persisted()
            let registration: WatchHub.Registration?? = locked { s, wake in
                if s.watches.closed {
                    wake.add(mailbox.finish(shutdown: true))
                    return .some(nil)
                }
                if s.images[key] == nil {
                    // Deleted since the read: read again (and get NOT_FOUND). Otherwise the image was
                    // stored a moment ago (its hook has not run yet) or has no jobs: track it as read.
                    if s.deletions != deletions { return nil }
                    s.images[key] = Entry(name: image, regions: status.regions)
                } else if fleet != nil {
                    // Other instances may have changed it since this one last looked.
                    _ = merge(image, status.regions, &s)
                }
                let r = s.watches.add(mailbox, scope: .image, key: key)
                wake.add(mailbox.post(s.images[key]!.status))
                return .some(r)
            }
            guard case .some(let registered) = registration else { continue }
            return ReplicationWatch(mailbox: mailbox, endsWhenTerminal: true) { [weak self] in
                guard let registered else { return }
                self?.state.withLock { s in s.watches.remove(registered) }
            }
        }
    }

    /// A gallery watch: the current status of every image of the gallery, then every change (images
    /// added later included, deleted ones with `deleted` set), until the caller stops reading;
    /// NOT_FOUND when the gallery is deleted. `persisted` reads the gallery's image statuses.
    func watchGallery(
        _ gallery: GalleryName,
        persisted: () async throws(LabGalleryError) -> [ReplicationStatus]
    ) async throws(LabGalleryError) -> ReplicationWatch {
        let mailbox = WatchMailbox()
        let key = gallery.description
        while true {
            let deletions = state.withLock { $0.deletions }
            let statuses = try await persisted()
            let registration: WatchHub.Registration?? = locked { s, wake in
                if s.watches.closed {
                    wake.add(mailbox.finish(shutdown: true))
                    return .some(nil)
                }
                if s.deletions != deletions { return nil }
                let r = s.watches.add(mailbox, scope: .gallery, key: key)
                if fleet != nil {
                    for p in statuses { _ = merge(ImageName(gallery: gallery, id: p.image.imageID), p.regions, &s) }
                }
                for p in statuses { wake.add(mailbox.post(s.images[p.image]?.status ?? p)) }
                return .some(r)
            }
            guard case .some(let registered) = registration else { continue }
            return ReplicationWatch(mailbox: mailbox, endsWhenTerminal: false) { [weak self] in
                guard let registered else { return }
                self?.state.withLock { s in s.watches.remove(registered) }
            }
        }
    }

    /// RetryReplication recorded `rows` (FAILED ones back to PENDING): queue them and tell watchers.
    func retried(_ image: ImageName, rows: [ReplicationRow]) {
        let starts = locked { s, wake -> [(JobKey, JobControl)] in
            guard s.images[image.description] != nil else { return [] }
            for row in rows { setRecord(row.record, of: image, &s) }
            guard fleet == nil else {
                wake = publish(image.description, &s, force: true)
                return []
            }
            for row in rows where row.record.state == .pending {
                let k = JobKey(image: image, region: row.record.region)
                _ = s.jobs.endBackoff(k)
                enqueueIfDue(k, &s)
            }
            wake = publish(image.description, &s, force: true)
            return schedule(&s)
        }
        announce(image.description, now: true)
        claimSoon()
        launch(starts)
    }
}
