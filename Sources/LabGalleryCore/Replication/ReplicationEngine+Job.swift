import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// One run of a job, on a pool thread: from its row to an outcome (``JobOutcome``), recorded.
extension ReplicationEngine {
    /// Writes the row (fenced by its lease in fleet mode): ``JobError/rowGone`` when the image was
    /// deleted meanwhile, ``JobError/leaseLost`` when another instance took the job over,
    /// ``JobError/recordFailed(reason:)`` when the write fails.
    private func persist(_ row: ReplicationRow) throws(JobError) {
        guard try recording({ () throws(LabGalleryError) in try store.update(row) }) else { throw notWritten(row) }
    }

    /// Why a write of `row` did not apply: its row is gone, or (a leased row whose job still exists)
    /// its lease was taken over. When the database cannot tell, the lease counts as lost: a job that
    /// cannot prove it holds the lease touches nothing.
    func notWritten(_ row: ReplicationRow) -> JobError {
        guard row.lease != nil else { return .rowGone }
        do { return try store.job(row.image, region: row.record.region) == nil ? .rowGone : .leaseLost } catch {
            return .leaseLost
        }
    }

    /// Runs a database step of a job; its failure is ``JobError/recordFailed(reason:)``.
    private func recording<T>(_ body: () throws(LabGalleryError) -> T) throws(JobError) -> T {
        do { return try body() } catch { throw .recordFailed(reason: error.message) }
    }

    /// One attempt of a job. Returns the backoff after which to try again, or `nil` when the job
    /// is over for now (completed, failed for good, stopped, deleted).
    func run(_ key: JobKey, control: JobControl) -> Duration? {
        let found: (row: ReplicationRow, source: StoredImage)?
        do { found = try store.job(key.image, region: key.region) } catch {
            // Nothing changed yet: show why and try again later (the attempt is not counted).
            return readFailed(key, reason: "reading the job from the database failed (\(error.message))")
        }
        guard let found else { return nil }
        var row = found.row
        row.lease = control.lease
        let source = found.source
        if let outcome = state.withLock({ $0.unrecorded[key] }) {
            // The last attempt's outcome first: recorded, it decides whether to go on.
            do throws(JobError) { try persist(outcome) } catch {
                if error == .rowGone {
                    discard(outcome)
                    return nil
                }
                return configuration.backoff(afterAttempt: max(outcome.record.attempts, 1))
            }
            state.withLock { _ = $0.unrecorded.removeValue(forKey: key) }
            row = outcome
            update(row.record, of: key.image, force: true)
        }
        guard JobStateMachine.isUnfinished(row.record.state) else {
            update(row.record, of: key.image, force: true)
            return nil
        }
        let attempt = machine.begin(&row, sizeBytes: source.image.sizeBytes)
        switch attemptOutcome(&row, source: source, attempt: attempt, control: control) {
        case .completed, .stopped:
            return nil
        case .deleted:
            discard(row)
            return nil
        case .failed(let error):
            return failed(&row, error, attempt: attempt)
        }
    }

    /// Runs the attempt to its outcome: shares bytes the region holds, or copies, verifies, names
    /// and records the replica.
    private func attemptOutcome(_ row: inout ReplicationRow, source: StoredImage, attempt: Int, control: JobControl)
        -> JobOutcome
    {
        let region = row.record.region
        do throws(JobError) {
            // The region may already hold these bytes (another image, a lab template): share them.
            if row.blobPath == nil, try complete(&row, sharingIn: region, sha256: source.image.sha256) {
                update(row.record, of: row.image, force: true)
                return .completed
            }
            if row.partialPath == nil {
                row.partialPath = layout.newReplicaPartialPath(region: region, image: row.image)
                row.record.bytesCopied = 0
            }
            try persist(row)
            update(row.record, of: row.image, force: true)
            // Interrupted between recording the blob's name and the commit: the replica under its
            // final name was verified before the rename, so it only needs recording.
            let blob: String
            if let renamed = row.blobPath, access(layout.url(renamed).path, F_OK) == 0 {
                blob = renamed
            } else {
                switch try copy(&row, source: source, attempt: attempt, control: control) {
                case .stopped(let signal): return signal == .deleted ? .deleted : .stopped
                case .verified: break
                }
                if !control.shouldRun { return control.value == .deleted ? .deleted : .stopped }
                blob = try storeReplica(
                    &row, size: source.image.sizeBytes, sha256: source.image.sha256, control: control)
            }
            let partial = row.partialPath
            machine.complete(&row, blob: blob)
            guard try recording({ () throws(LabGalleryError) in try store.complete(row, blob: blob) }) else {
                throw notWritten(row)
            }
            if let partial { FileOps.removeQuietly(layout.url(partial)) }
            update(row.record, of: row.image, force: true)
            return .completed
        } catch {
            switch error {
            case .rowGone: return .deleted
            case .leaseLost: return .stopped
            default: return .failed(error)
            }
        }
    }

    /// Copies the replica into the row's partial file (see ``ReplicaCopier``).
    private func copy(_ row: inout ReplicationRow, source: StoredImage, attempt: Int, control: JobControl)
        throws(JobError) -> ReplicaCopier.Result
    {
        guard let partial = row.partialPath else { return .stopped(.shutdown) }
        let request = ReplicaCopier.Request(
            source: layout.url(source.blobPath), sourceRegion: source.image.region, size: source.image.sizeBytes,
            sha256: source.image.sha256, partial: layout.url(partial), partialName: partial, region: row.record.region,
            durableOffset: row.record.bytesCopied, attempt: attempt)
        let snapshot = row
        var current = row
        let store = store
        let progress = ReplicaCopier.Progress(
            recordStart: { [self] (offset) throws(JobError) in
                current.record.bytesCopied = offset
                try persist(current)
            },
            recordDurable: { [self] offset in
                var r = snapshot
                r.record.bytesCopied = offset
                do throws(LabGalleryError) {
                    return try store.update(r) ? nil : (notWritten(r) == .rowGone ? .deleted : .leaseLost)
                } catch {
                    return .failed("recording the copy in the database failed (\(error.message))")
                }
            },
            copied: { [self] offset, n in
                copiedBytes.add(n, ordering: .relaxed)
                current.record.bytesCopied = offset
                update(current.record, of: current.image, force: false)
            },
            willWrite: { [self] offset in
                guard let fleet, let observe = fleet.writeObserver.withLock({ $0 }), let lease = snapshot.lease else {
                    return
                }
                observe("\(snapshot.image)@\(snapshot.record.region)", lease.epoch, offset)
            })
        defer { row.record.bytesCopied = current.record.bytesCopied }
        return try copier.copy(
            request, link: configuration.link(to: row.record.region).replicaLink(region: row.record.region),
            control: control, progress: progress)
    }

    /// The verified replica becomes a blob of the region: its row (`writing`) and name are recorded
    /// before the rename, so after a crash in between a run finds the verified replica under its
    /// final name instead of copying again. Bytes the region gained meanwhile are shared instead.
    /// Returns the blob's path.
    private func storeReplica(_ row: inout ReplicationRow, size: Int64, sha256: String, control: JobControl)
        throws(JobError) -> String
    {
        let region = row.record.region
        guard
            let named = try recording({ () throws(LabGalleryError) in
                try store.nameReplica(row, sha256: sha256, size: size)
            })
        else {
            throw notWritten(row)
        }
        if named.shared { return named.path }
        row.blobPath = named.path
        guard let partial = row.partialPath else { return named.path }
        // Fleet mode: the rename writes the region's store too; only while the lease is proven.
        if control.value == .leaseLost { throw .leaseLost }
        do throws(LabGalleryError) {
            try FileOps.renameDurably(layout.url(partial), to: layout.url(named.path))
        } catch {
            throw .copyFailed(reason: "cannot store the replica in \(region): \(error.message)", discard: false)
        }
        return named.path
    }

    /// Marks the row COMPLETED sharing a live blob of `region` with these bytes, if there is one.
    private func complete(_ row: inout ReplicationRow, sharingIn region: String, sha256: String) throws(JobError)
        -> Bool
    {
        let shared = try recording { () throws(LabGalleryError) in try store.completeSharing(row, sha256: sha256) }
        guard let shared else { throw notWritten(row) }
        guard let done = shared else { return false }
        if let p = row.partialPath { FileOps.removeQuietly(layout.url(p)) }
        row = done
        return true
    }

    /// A failed attempt (see ``JobStateMachine/fail(_:_:attempt:)``), recorded; when the database
    /// refuses the record too, watchers learn the outcome now (a FAILED one ends their watch) and
    /// the job runs again after a backoff to record it first.
    private func failed(_ row: inout ReplicationRow, _ error: JobError, attempt: Int) -> Duration? {
        let key = JobKey(image: row.image, region: row.record.region)
        let (next, remove) = machine.fail(&row, error, attempt: attempt)
        if row.lease != nil { return failedLeased(&row, next: next, remove: remove) }
        for p in remove { FileOps.removeQuietly(layout.url(p)) }
        do throws(JobError) { try persist(row) } catch {
            if error == .rowGone {
                discard(row)
                return nil
            }
            let outcome = row
            state.withLock { $0.unrecorded[key] = outcome }
            var shown = row.record
            shown.error = (shown.error ?? "") + " (not yet recorded: \(error.reason))"
            update(shown, of: key.image, force: true)
            return configuration.backoff(afterAttempt: max(attempt, 1))
        }
        update(row.record, of: key.image, force: true)
        switch next {
        case .retry(let delay): return delay
        case .gaveUp: return nil
        }
    }

    /// Fleet mode's failed attempt: recorded first (fenced), files removed only once it is, since
    /// after a lost lease they are the new holder's. A refused record is not kept for later as with
    /// one instance: the lease expires and whichever instance claims the job runs the attempt again.
    private func failedLeased(_ row: inout ReplicationRow, next: JobStateMachine.Next, remove: [String]) -> Duration? {
        do throws(JobError) { try persist(row) } catch {
            if error == .rowGone { discard(row) }
            return nil
        }
        for p in remove { FileOps.removeQuietly(layout.url(p)) }
        update(row.record, of: row.image, force: true)
        switch next {
        case .retry(let delay): return delay
        case .gaveUp: return nil
        }
    }

    /// A job that cannot even read its row (no attempt made): show the reason, try again after
    /// the first backoff.
    private func readFailed(_ key: JobKey, reason: String) -> Duration? {
        locked { s, wake in
            guard var e = s.images[key.image.description],
                let i = e.regions.firstIndex(where: { $0.region == key.region })
            else { return }
            e.regions[i].error = reason
            s.images[key.image.description] = e
            wake = publish(key.image.description, &s, force: true)
        }
        return configuration.backoff(afterAttempt: 1)
    }

    /// The image was deleted under the job: remove its partial file. Blobs go with their last
    /// reference (``LabGalleryService/release(_:_:)``), except a replica renamed into place after
    /// the deletion had already removed its blob row: nothing else knows that file.
    private func discard(_ row: ReplicationRow) {
        if let p = row.partialPath { FileOps.removeQuietly(layout.url(p)) }
        guard let blob = row.blobPath else { return }
        let state: BlobRecord.State?
        do { state = try store.blobState(blob) } catch { return }
        if state == nil || state == .doomed { FileOps.removeDurably(layout.url(blob)) }
    }
}
