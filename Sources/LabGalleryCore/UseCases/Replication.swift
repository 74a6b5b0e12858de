/// The replication use cases: status, watches and retries, with their role checks (reader for
/// status and watches, admin for retries). The persisted state is read here; the live state,
/// the watchers and the scheduling are the ``ReplicationEngine``'s, reached through
/// ``replicationHooks``.
extension LabGalleryService {
    /// The engine's view of persistence: the service's storage and data directory, nothing else.
    public var replicationStore: any ReplicationStore { StorageReplicationStore(storage: storage, layout: layout) }

    /// GetReplicationStatus (reader): one entry per other region of the gallery's geography, with
    /// the engine's live progress when one runs (fresher than the persisted progress).
    /// Field: `image`.
    public func replicationStatus(image: String, caller: Principal) async throws(LabGalleryError) -> ReplicationStatus {
        let persisted: ReplicationStatus = try await blocking { () throws(LabGalleryError) in
            try require(.reader, for: caller)
            return try persistedStatus(try ImageName(parsing: image, field: "image"))
        }
        return replicationHooks.current?.liveStatus(persisted) ?? persisted
    }

    /// WatchReplication (reader): the first ``ReplicationWatch/next()`` is the full current state;
    /// then one full status per change (coalesced for slow readers); `nil` after a COMPLETED/FAILED
    /// one; NOT_FOUND when the image is deleted. Field: `image`.
    public func watchReplication(image: String, caller: Principal) async throws(LabGalleryError) -> ReplicationWatch {
        try require(.reader, for: caller)
        let n = try ImageName(parsing: image, field: "image")
        let engine = try runningEngine()
        return try await engine.watch(n) { () async throws(LabGalleryError) in
            try await blocking { () throws(LabGalleryError) in try persistedStatus(n) }
        }
    }

    /// WatchGalleryReplication (reader): the current status of every image of the gallery, then
    /// every change (images added later included, deleted ones with `deleted` set), until the
    /// caller stops reading; NOT_FOUND when the gallery is deleted. Field: `gallery`.
    public func watchGalleryReplication(gallery: String, caller: Principal) async throws(LabGalleryError)
        -> ReplicationWatch
    {
        try require(.reader, for: caller)
        let g = try GalleryName(parsing: gallery, field: "gallery")
        let engine = try runningEngine()
        return try await engine.watchGallery(g) { () async throws(LabGalleryError) in
            try await blocking { () throws(LabGalleryError) in
                try read { tx in
                    _ = try requireGallery(g, tx)
                    return try tx.images(in: g, after: nil, limit: nil).map { stored in
                        let n = try ImageName(parsing: stored.image.name, field: "name")
                        return ReplicationStatus(image: n.description, regions: try tx.replications(of: n))
                    }
                }
            }
        }
    }

    /// RetryReplication (admin): re-queues FAILED regions (all of them when `regions` is empty) from
    /// scratch (attempts reset). INVALID_ARGUMENT (`regions`) for a region that is not a replication
    /// target of the image; FAILED_PRECONDITION for a named region that has not failed.
    public func retryReplication(image: String, regions: [String], caller: Principal) async throws(LabGalleryError)
        -> ReplicationStatus
    {
        try require(.admin, for: caller)
        let n = try ImageName(parsing: image, field: "image")
        let rows: [ReplicationRow] = try await blocking { () throws(LabGalleryError) in
            var partials: [String] = []
            let rows: [ReplicationRow] = try write { tx in
                let stored = try requireImage(n, tx)
                var rows = try tx.replicationRows(of: n)
                let targets = rows.map(\.record.region)
                for r in regions where !targets.contains(r) {
                    let why =
                        r == stored.image.region
                        ? "it is the image's home region" : "it is not another region of the gallery's geography"
                    throw LabGalleryError.invalid(
                        "regions",
                        "\(n) does not replicate to \"\(r)\" (\(why)); its target regions are \(targets.joined(separator: ", "))"
                    )
                }
                for r in regions {
                    let row = rows.first { $0.record.region == r }!
                    guard row.record.state == .failed else {
                        throw LabGalleryError.failedPrecondition(
                            message:
                                "replication of \(n) to \(r) is \(row.record.state.rawValue), not FAILED; only failed regions can be retried"
                        )
                    }
                }
                for i in rows.indices
                where rows[i].record.state == .failed && (regions.isEmpty || regions.contains(rows[i].record.region)) {
                    if let p = JobStateMachine.restart(&rows[i]) { partials.append(p) }
                    _ = try tx.updateReplication(rows[i])
                }
                return rows
            }
            for p in partials { FileOps.removeQuietly(layout.url(p)) }
            return rows
        }
        replicationHooks.current?.retried(n, rows: rows)
        return ReplicationStatus(image: n.description, regions: rows.map(\.record))
    }

    /// The image's persisted status; NOT_FOUND (gallery or image) when it is gone. Blocks.
    func persistedStatus(_ n: ImageName) throws(LabGalleryError) -> ReplicationStatus {
        try read { tx in
            _ = try requireImage(n, tx)
            return ReplicationStatus(image: n.description, regions: try tx.replications(of: n))
        }
    }

    /// The engine serving watches, or UNAVAILABLE when none runs (start-up, shutdown).
    private func runningEngine() throws(LabGalleryError) -> ReplicationEngine {
        guard let engine = replicationHooks.current else {
            throw .unavailable(
                message: "replication is not running on this server (starting or shutting down); retry shortly")
        }
        return engine
    }
}
