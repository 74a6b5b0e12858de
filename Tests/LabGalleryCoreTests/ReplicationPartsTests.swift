import Foundation
import Synchronization
import TestSupport
import Testing

@testable import LabGalleryCore

/// A value shared with closures that run on other threads.
private final class Shared<T: Sendable>: Sendable {
    private let value: Mutex<T>
    init(_ v: T) { value = Mutex(v) }
    var get: T { value.withLock { $0 } }
    func set(_ v: T) { value.withLock { $0 = v } }
    func update(_ f: (inout T) -> Void) { value.withLock { f(&$0) } }
}

/// The replication engine's parts, one by one: backoff, job state machine, scheduler, watch hub,
/// and the copier over a test link that injects faults.
@Suite struct BackoffTests {
    @Test func doublesFromTheInitialDelayUpToTheCap() {
        let b = Backoff(initial: .milliseconds(100), maximum: .milliseconds(700))
        #expect(b.delay(afterAttempt: 1) == .milliseconds(100))
        #expect(b.delay(afterAttempt: 2) == .milliseconds(200))
        #expect(b.delay(afterAttempt: 3) == .milliseconds(400))
        #expect(b.delay(afterAttempt: 4) == .milliseconds(700))
        #expect(b.delay(afterAttempt: 60) == .milliseconds(700))
        #expect(b.delay(afterAttempt: 0) == .milliseconds(100), "attempts below 1 count as 1")
        #expect(
            Array(b.prefix(5)) == [
                .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(700), .milliseconds(700),
            ])
    }

    @Test func aZeroBackoffIsAlwaysZeroAndTheConfigurationUsesTheValue() {
        #expect(Backoff(initial: .zero, maximum: .zero).prefix(4).allSatisfy { $0 == .zero })
        let c = ReplicationConfiguration(backoffInitial: .seconds(1), backoffMax: .seconds(5))
        #expect(c.backoff == Backoff(initial: .seconds(1), maximum: .seconds(5)))
        #expect(c.backoff(afterAttempt: 3) == .seconds(4))
    }
}

private let image = ImageName(gallery: GalleryName(id: "g"), id: "img")

private func row(
    _ state: ReplicationState, attempts: Int = 0, copied: Int64 = 0, partial: String? = nil,
    blob: String? = nil
) -> ReplicationRow {
    ReplicationRow(
        image: image,
        record: RegionReplication(
            region: "r2", state: state, bytesCopied: copied, bytesTotal: 100,
            error: nil, attempts: attempts),
        partialPath: partial, blobPath: blob)
}

@Suite struct JobStateMachineTests {
    let machine = JobStateMachine(maxAttempts: 3, backoff: Backoff(initial: .seconds(1), maximum: .seconds(10)))

    @Test func aPendingRowStartsANewAttemptAndAnInterruptedOneContinuesIt() {
        var r = row(.pending, attempts: 1)
        #expect(machine.begin(&r, sizeBytes: 200) == 2)
        #expect(r.record.state == .replicating && r.record.bytesTotal == 200)
        var resumed = row(.replicating, attempts: 2, copied: 50)
        #expect(machine.begin(&resumed, sizeBytes: 100) == 2, "a restart continues the same attempt")
        #expect(resumed.record.bytesCopied == 50)
    }

    @Test func aFailedAttemptIsPendingWithItsReasonAndABackoffAndKeepsTheCopy() {
        var r = row(.replicating, attempts: 1, copied: 40, partial: "p")
        let (next, remove) = machine.fail(&r, .copyFailed(reason: "link down", discard: false), attempt: 1)
        #expect(next == .retry(after: .seconds(1)))
        #expect(remove.isEmpty && r.partialPath == "p" && r.record.bytesCopied == 40)
        #expect(r.record.state == .pending)
        #expect(r.record.error == "attempt 1 of 3 failed: link down; retrying in 1.0 seconds")
    }

    @Test func anUntrustedCopyIsDiscardedAndTheLastAttemptFails() {
        var r = row(.replicating, attempts: 2, copied: 40, partial: "p")
        let (next, remove) = machine.fail(&r, .copyFailed(reason: "checksum mismatch", discard: true), attempt: 2)
        #expect(
            next == .retry(after: .seconds(2)) && remove == ["p"] && r.partialPath == nil && r.record.bytesCopied == 0)

        var last = row(.replicating, attempts: 3, copied: 70, partial: "q", blob: "b")
        let (end, gone) = machine.fail(&last, .copyFailed(reason: "link down", discard: false), attempt: 3)
        #expect(end == .gaveUp && gone == ["q"])
        #expect(last.record.state == .failed && last.partialPath == nil && last.record.bytesCopied == 0)
        #expect(last.blobPath == "b", "a verified replica is never deleted because an attempt failed")
        #expect(last.record.error?.contains("gave up after 3 attempt(s)") == true)
        #expect(last.record.error?.contains("RetryReplication for galleries/g/images/img (region r2)") == true)
    }

    @Test func aRefusedDatabaseWriteIsAFailedAttemptApartFromAGoneRow() {
        var r = row(.replicating, attempts: 1, partial: "p")
        let failure = JobError.recordFailed(reason: "the database is busy")
        #expect(failure != .rowGone && !failure.discardsPartial)
        _ = machine.fail(&r, failure, attempt: 1)
        #expect(r.record.error?.contains("recording the copy in the database failed (the database is busy)") == true)
        #expect(r.partialPath == "p")
    }

    @Test func completingAndRestartingResetTheRow() {
        var r = row(.replicating, attempts: 2, copied: 60, partial: "p")
        machine.complete(&r, blob: "b")
        #expect(
            r.record.state == .completed && r.record.bytesCopied == 100 && r.partialPath == nil && r.blobPath == "b"
                && r.record.error == nil)
        var failed = row(.failed, attempts: 3, copied: 10, partial: "p")
        #expect(JobStateMachine.restart(&failed) == "p")
        #expect(
            failed.record.state == .pending && failed.record.attempts == 0 && failed.record.bytesCopied == 0
                && failed.partialPath == nil)
        #expect(JobStateMachine.isUnfinished(.pending) && JobStateMachine.isUnfinished(.replicating))
        #expect(!JobStateMachine.isUnfinished(.completed) && !JobStateMachine.isUnfinished(.failed))
    }
}

@Suite struct JobSchedulerTests {
    private func key(_ region: String, _ id: String = "img") -> JobKey {
        JobKey(image: ImageName(gallery: GalleryName(id: "g"), id: id), region: region)
    }

    @Test func startsAtMostConcurrencyJobsAndQueuesEachJobOnce() {
        var s = JobScheduler(concurrency: 2)
        for r in ["r1", "r2", "r3", "r1"] { s.enqueue(key(r), due: true) }
        s.enqueue(key("r4"), due: false)
        #expect(s.ready.count == 3)
        let first = s.start { _ in true }
        #expect(first.map(\.0.region) == ["r1", "r2"] && s.running.count == 2)
        s.enqueue(key("r1"), due: true)
        #expect(s.ready.map(\.region) == ["r3"], "a running job is not queued again")
        let waits = s.finished(key("r1"), backoff: false)
        #expect(!waits)
        let next = s.start { _ in true }
        #expect(next.map(\.0.region) == ["r3"])
    }

    @Test func aJobWaitingOutItsBackoffIsQueuedOnlyAfterIt() {
        var s = JobScheduler(concurrency: 1)
        s.enqueue(key("r1"), due: true)
        _ = s.start { _ in true }
        let waits = s.finished(key("r1"), backoff: true)
        #expect(waits)
        s.enqueue(key("r1"), due: true)
        #expect(s.ready.isEmpty && s.waiting == [key("r1")])
        let ended = s.endBackoff(key("r1"))
        let again = s.endBackoff(key("r1"))
        #expect(ended && !again)
        s.enqueue(key("r1"), due: true)
        let restarted = s.start { _ in true }
        #expect(restarted.count == 1)
    }

    @Test func deletionAndStopSignalRunningJobsAndForgetTheRest() {
        var s = JobScheduler(concurrency: 2)
        s.enqueue(key("r1"), due: true)
        s.enqueue(key("r2", "other"), due: true)
        s.enqueue(key("r3"), due: true)
        let started = s.start { _ in true }
        s.remove(image: key("r1").image, signal: .deleted)
        #expect(started.first { $0.0 == key("r1") }?.1.value == .deleted)
        #expect(started.first { $0.0 == key("r2", "other") }?.1.value == .run)
        #expect(s.ready.isEmpty, "the deleted image's queued job is gone")
        s.stop()
        #expect(started.allSatisfy { !$0.1.shouldRun })
        s.enqueue(key("r4"), due: true)
        let none = s.start { _ in true }
        #expect(s.ready.isEmpty && none.isEmpty)
        let waits = s.finished(key("r2", "other"), backoff: true)
        #expect(!waits, "no backoff after stop")
    }

    @Test func theThreadPoolRunsEveryJobOnAFixedNumberOfThreads() async throws {
        let pool = JobThreads(maxThreads: 2, name: "test job")
        let done = Shared(0)
        let threads = Shared(Set<String>())
        for _ in 0..<20 {
            pool.submit {
                let me = "\(Unmanaged.passUnretained(Thread.current).toOpaque())"
                threads.update { _ = $0.insert(me) }
                done.update { $0 += 1 }
            }
        }
        try await eventually("every job to run") { done.get == 20 }
        #expect(threads.get.count <= 2)
        pool.stop()
    }
}

@Suite struct WatchHubTests {
    private func status(_ image: String, _ state: ReplicationState, copied: Int64 = 0) -> ReplicationStatus {
        ReplicationStatus(
            image: image,
            regions: [
                RegionReplication(
                    region: "r2", state: state, bytesCopied: copied, bytesTotal: 100,
                    error: nil, attempts: 1)
            ])
    }

    @Test func aStatusFansOutToItsImageAndGalleryWatchers() async throws {
        var hub = WatchHub()
        let single = WatchMailbox()
        let gallery = WatchMailbox()
        let other = WatchMailbox()
        _ = hub.add(single, scope: .image, key: "galleries/g/images/a")
        _ = hub.add(gallery, scope: .gallery, key: "galleries/g")
        let r = hub.add(other, scope: .image, key: "galleries/g/images/b")
        #expect(hub.count == 3)
        hub.publish(status("galleries/g/images/a", .replicating), gallery: "galleries/g").resume()
        #expect(single.pendingCount == 1 && gallery.pendingCount == 1 && other.pendingCount == 0)
        hub.remove(r)
        hub.remove(r)
        #expect(hub.count == 2)
        #expect(try await single.next().image == "galleries/g/images/a")
    }

    @Test func aSlowWatcherSeesProgressCoalescedButEveryTerminalState() async throws {
        var hub = WatchHub()
        let slow = WatchMailbox()
        _ = hub.add(slow, scope: .image, key: "galleries/g/images/a")
        for copied in stride(from: Int64(0), to: 100, by: 10) {
            hub.publish(status("galleries/g/images/a", .replicating, copied: copied), gallery: "galleries/g").resume()
        }
        #expect(slow.pendingCount == 1, "progress is coalesced")
        hub.publish(status("galleries/g/images/a", .completed, copied: 100), gallery: "galleries/g").resume()
        hub.publish(status("galleries/g/images/a", .pending), gallery: "galleries/g").resume()
        #expect(slow.pendingCount == 2, "a terminal status is never overwritten")
        #expect(try await slow.next().aggregatedState == .completed)
        #expect(try await slow.next().aggregatedState == .replicating)
    }

    @Test func finishingEndsWatchesAfterWhatTheyHaveNotReadAndClosingRefusesNewOnes() async throws {
        var hub = WatchHub()
        let w = WatchMailbox()
        let g = WatchMailbox()
        _ = hub.add(w, scope: .image, key: "galleries/g/images/a")
        _ = hub.add(g, scope: .gallery, key: "galleries/g")
        hub.publish(status("galleries/g/images/a", .replicating), gallery: "galleries/g").resume()
        let gone = LabGalleryError.notFound(resource: "galleries/g/images/a", message: "gone")
        hub.finish(.image, key: "galleries/g/images/a", error: gone).resume()
        #expect(hub.count == 1)
        _ = try await w.next()
        await #expect(throws: gone) { _ = try await w.next() }
        let waiting = Task { try await g.next() }
        _ = try await waiting.value
        let blocked = Task { try await g.next() }
        hub.closeAll().resume()
        #expect(hub.closed && hub.count == 0)
        await #expect(throws: ReplicationWatchError.shutdown) { _ = try await blocked.value }
    }
}

/// A link for tests: no WAN, and faults chosen per test.
private struct TestLink: ReplicaLink {
    var unreachableReason: String?
    /// Attempts up to this one break once they reach `resetAt`.
    var resetAttempts = 0
    var resetAt: Int64 = 0
    /// Attempt 1 flips the byte at this offset.
    var flipAt: Int64?

    func setUpDelay(attempt: Int) -> Duration { .zero }
    func unreachable(attempt: Int) -> String? { unreachableReason }
    func received(_ bytes: UnsafeMutableRawBufferPointer, in t: LinkTransfer) throws(LinkFailure) -> Bool {
        if t.attempt <= resetAttempts, t.offset + Int64(bytes.count) > resetAt {
            throw LinkFailure(reason: "test link reset at \(t.offset)")
        }
        if let flip = flipAt, t.attempt == 1, flip >= t.offset, flip < t.offset + Int64(bytes.count) {
            bytes[Int(flip - t.offset)] ^= 0x01
            return true
        }
        return false
    }
    func transferTime(for sent: Int64) -> Duration { .zero }
}

@Suite struct ReplicaCopierTests {
    let dir: URL
    let source: URL
    let bytes: [UInt8]
    let sha: String
    let copier = ReplicaCopier(chunkSize: 4096, persistEvery: 8192)

    init() async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgcore-copier-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        bytes = pattern(50_000, multiplier: 7, offset: 3)
        source = dir.appendingPathComponent("source.blob")
        try Data(bytes).write(to: source)
        sha = try await sha256Hex(of: source)
    }

    private func request(attempt: Int, durable: Int64 = 0) -> ReplicaCopier.Request {
        ReplicaCopier.Request(
            source: source, sourceRegion: "r1", size: Int64(bytes.count), sha256: sha,
            partial: dir.appendingPathComponent("partial/img.part"), partialName: "partial/img.part",
            region: "r2", durableOffset: durable, attempt: attempt)
    }

    /// Runs the copier on a thread of its own (it blocks); returns the result and bytes it copied.
    private func copy(_ r: ReplicaCopier.Request, link: TestLink, durable: Shared<Int64>) async throws -> (
        ReplicaCopier.Result, Int64
    ) {
        let copier = copier
        return try await blocking { () throws -> (ReplicaCopier.Result, Int64) in
            var copied: Int64 = 0
            let progress = ReplicaCopier.Progress(
                recordStart: { offset in durable.set(offset) },
                recordDurable: { offset in
                    durable.set(offset)
                    return nil
                },
                copied: { _, n in copied += n })
            let result = try copier.copy(r, link: link, control: JobControl(), progress: progress)
            return (result, copied)
        }
    }

    @Test func copiesAndVerifiesEveryByte() async throws {
        let durable = Shared<Int64>(0)
        let (result, copied) = try await copy(request(attempt: 1), link: TestLink(), durable: durable)
        #expect(result == .verified && copied == Int64(bytes.count))
        #expect(try Data(contentsOf: request(attempt: 1).partial) == Data(bytes))
    }

    @Test func aResetAttemptResumesFromItsDurablePrefix() async throws {
        let durable = Shared<Int64>(0)
        let link = TestLink(resetAttempts: 1, resetAt: 30_000)
        await #expect(throws: JobError.self) { _ = try await copy(request(attempt: 1), link: link, durable: durable) }
        let prefix = durable.get
        #expect(prefix <= 30_000, "the durable offset never passes what was written")
        let (result, copied) = try await copy(request(attempt: 2, durable: prefix), link: link, durable: durable)
        #expect(result == .verified)
        #expect(copied == Int64(bytes.count) - prefix, "only the rest is copied again")
        #expect(try Data(contentsOf: request(attempt: 2).partial) == Data(bytes))
    }

    @Test func aCorruptedCopyFailsItsChecksumAndIsDiscarded() async throws {
        let durable = Shared<Int64>(0)
        do {
            _ = try await copy(request(attempt: 1), link: TestLink(flipAt: 12_345), durable: durable)
            Issue.record("a corrupted replica must not verify")
        } catch let error as JobError {
            #expect(error.discardsPartial && error.reason.contains("checksum mismatch"))
        }
        let (result, _) = try await copy(request(attempt: 2), link: TestLink(flipAt: 12_345), durable: durable)
        #expect(result == .verified, "the next attempt gets the bytes right")
    }

    @Test func anUnreachableRegionFailsAtOnceAndAStoppedJobStops() async throws {
        let durable = Shared<Int64>(0)
        do {
            _ = try await copy(request(attempt: 1), link: TestLink(unreachableReason: "r2 is down"), durable: durable)
            Issue.record("an unreachable region must fail")
        } catch let error as JobError {
            #expect(error == .copyFailed(reason: "r2 is down", discard: false))
        }
        let control = JobControl()
        control.send(.shutdown)
        let copier = copier
        let r = request(attempt: 1)
        let result = try await blocking { () throws -> ReplicaCopier.Result in
            try copier.copy(
                r, link: TestLink(), control: control,
                progress: .init(recordStart: { _ in }, recordDurable: { _ in nil }, copied: { _, _ in }))
        }
        #expect(result == .stopped(.shutdown))
    }

    @Test func theConfiguredFaultsAreALinkOverTheWANModel() {
        let plain = RegionLink(bandwidthBytesPerSecond: 1 << 20, latencyMilliseconds: 20).replicaLink(region: "r2")
        #expect(plain is WANLink)
        #expect(plain.transferTime(for: 1 << 20) == .seconds(1))
        let faulty = RegionLink(failFirstAttempts: 1, unreachable: true).replicaLink(region: "r2")
        #expect(faulty.unreachable(attempt: 1)?.contains("region r2 is unreachable") == true)
        #expect(faulty.setUpDelay(attempt: 1) == .milliseconds(20))
    }
}

/// The replication use cases go through the service, which checks roles and names before it
/// reaches the engine.
@Suite struct ReplicationUseCaseTests {
    @Test func rolesAndNamesAreCheckedFirstAndWatchesNeedARunningEngine() async throws {
        let f = try await Fixture(LabGalleryConfiguration(regionCatalog: replicationCatalog))
        try await f.gallery("g", region: "r1")
        let image = try await f.upload("galleries/g", "img", bytes: pattern(1000, multiplier: 3, offset: 1))
        await expectError(.permissionDenied) {
            _ = try await f.service.retryReplication(image: image.name, regions: [], caller: reader)
        }
        await expectError(.invalidArgument, field: "image") {
            _ = try await f.service.watchReplication(image: "bad", caller: reader)
        }
        await expectError(.invalidArgument, field: "gallery") {
            _ = try await f.service.watchGalleryReplication(gallery: "bad", caller: reader)
        }
        await expectError(.unavailable, contains: ["replication is not running"]) {
            _ = try await f.service.watchReplication(image: image.name, caller: reader)
        }
        // Without an engine the status is the persisted one, and a retry only records.
        let status = try await f.service.replicationStatus(image: image.name, caller: reader)
        #expect(status.regions.map(\.region) == ["r2", "r3"] && status.regions.allSatisfy { $0.state == .pending })

        // With one, the service routes to it: the watch sees the replication to its end.
        let engine = ReplicationEngine(service: f.service, configuration: fastReplication())
        try await startEngine(engine)
        #expect(try await watchAll(f.service, image.name).last?.aggregatedState == .completed)
        await engine.stop()
        await expectError(.unavailable) { _ = try await f.service.watchReplication(image: image.name, caller: reader) }
    }
}
