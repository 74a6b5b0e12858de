import Foundation
import GeneratedProtos
import H2RPC
import LabGalleryCore
import Synchronization
import TestSupport
import Testing

/// Blocking work (uploads' writes and hashing, replica copies, fsync, database) never runs on
/// Swift's cooperative pool, so deadlines and health checks stay prompt while it runs.
///
/// A latency test: `make test` runs it in a process of its own (`--filter ExecutionTests`), not
/// beside the rest of the suite, whose own load would be what it measured.
@Suite(.serialized) struct ExecutionTests {
    @Test func deadlinesAndHealthChecksStayPromptWhileLongWorkRuns() async throws {
        // Replica copies at 1 MiB/s per region: each 8 MiB image keeps two copies busy for ~8 s.
        let s = try await ReplicationServer(quickReplication(bandwidth: 1 << 20))
        let c = try s.admin()
        try await c.createGallery("g", region: "r1")
        var replicating: [String] = []
        for i in 0..<2 {
            replicating.append(
                try await c.upload(
                    gallery: "galleries/g", id: "rep\(i)", bytes: testBytes(8 << 20, seed: UInt64(i)),
                    chunkSize: 1 << 20
                ).name)
        }
        // Eight uploads in flight, each streaming 256 KiB every 10 ms until told to stop.
        let stop = StopFlag()
        let chunk = testBytes(256 << 10, seed: 99)
        var uploads: [Task<Void, Never>] = []
        for i in 0..<8 {
            let call = c.images.uploadImage()
            uploads.append(
                Task {
                    do {
                        try await call.send(
                            .init(
                                data: .header(
                                    .init(
                                        gallery: "galleries/g", imageId: "up\(i)", osType: .linux, osState: .generalized
                                    ))))
                        while !stop.isSet {
                            try await call.send(.init(data: .chunk(chunk)))
                            try await Task.sleep(for: .milliseconds(10))
                        }
                    } catch {}
                    call.cancel()
                })
        }
        try await eventually("eight uploads writing") { s.files(under: "regions/r1/tmp").count == 8 }

        for _ in 0..<5 {
            // A call whose 100 ms deadline passes while it waits: it fails on time.
            let start = ContinuousClock.now
            var code: Status.Code?
            do {
                let watch = try await c.replication.watchReplication(
                    .init(image: replicating[0]), options: CallOptions(timeout: .milliseconds(100)))
                for try await _ in watch {}
            } catch let e as RPCError { code = e.code }
            let failedAfter = ContinuousClock.now - start
            #expect(code == .deadlineExceeded)
            #expect(failedAfter < .milliseconds(150), "the 100 ms deadline fired after \(failedAfter)")

            let probe = ContinuousClock.now
            let health = try await c.health.check(.init(service: ""))
            let answeredAfter = ContinuousClock.now - probe
            #expect(health.status == .serving)
            #expect(answeredAfter < .milliseconds(50), "Health/Check answered after \(answeredAfter)")
        }
        #expect(
            try await c.replication.getReplicationStatus(.init(image: replicating[0])).aggregatedState == .replicating,
            "the copies were still running during the probes")

        // The uploads are cut off: nothing of them is stored, their temp files go.
        stop.set()
        for u in uploads { await u.value }
        try await eventually("the cancelled uploads' temp files to go") { s.files(under: "regions/r1/tmp").isEmpty }
        #expect(try await c.images.listImages(.init(gallery: "galleries/g")).images.map(\.name) == replicating)
        await s.stop()
    }
}

/// A flag the test sets once and its upload tasks poll.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}
