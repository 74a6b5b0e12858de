import Foundation
import LabGalleryClient
import LabGalleryServer
import Synchronization
import TestSupport
import Testing

@Suite("LabGalleryClient library")
struct ClientLibraryTests {
    @Test("typed CRUD over one connection, short and full names, pagination")
    func crud() async throws {
        try await withLiveServer { s in
            let client = try s.client()
            let gallery = try await client.createGallery(id: "shared", displayName: "Shared", region: "north")
            #expect(
                gallery
                    == Gallery(name: "galleries/shared", displayName: "Shared", region: "north", geography: "Testland"))
            #expect(try await client.getGallery("shared") == gallery)
            #expect(try await client.getGallery("galleries/shared") == gallery)

            let account = try await client.createLabAccount(id: "school", region: "north", gallery: .attach("shared"))
            #expect(account.attachedGallery == "galleries/shared")
            #expect(
                try await client.listRoleAssignments(gallery: "shared").contains(
                    RoleAssignment(principal: "lab-services", role: "Contributor")))

            // Concurrent calls share the one connection.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<12 { group.addTask { _ = try await client.createGallery(id: "g\(i)", region: "south") } }
                try await group.waitForAll()
            }
            let page = try await client.listGalleries(pageSize: 5)
            #expect(page.items.count == 5 && page.nextPageToken != nil)
            #expect(try await client.allGalleries().count == 13)

            try await client.deleteGallery("g0")
            await expectClientError(.notFound, "galleries/g0") { _ = try await client.getGallery("g0") }
        }
    }

    @Test("errors carry the status code, the server's message and metadata; one error type")
    func errors() async throws {
        try await withLiveServer { s in
            let client = try s.client()
            _ = try await client.createGallery(id: "a", region: "north")
            _ = try await client.createGallery(id: "b", region: "north")
            _ = try await client.createLabAccount(id: "school", region: "north", gallery: .attach("a"))
            await expectClientError(.alreadyExists) { _ = try await client.createGallery(id: "a", region: "north") }
            await expectClientError(.failedPrecondition, "detach") {
                _ = try await client.attachGallery("b", to: "school")
            }
            await expectClientError(.invalidArgument, "confirm") {
                _ = try await client.detachGallery(from: "school", confirm: false)
            }
            // Naming the gallery: only that one is detached (ids or full names).
            await expectClientError(.failedPrecondition, "galleries/a", "galleries/b") {
                _ = try await client.detachGallery(from: "school", confirm: true, gallery: "b")
            }
            #expect(try await client.getLabAccount("school").attachedGallery == "galleries/a")
            #expect(
                try await client.detachGallery(from: "school", confirm: true, gallery: "galleries/a").attachedGallery
                    == nil)
            _ = try await client.attachGallery("a", to: "school")

            let anonymous = try LabGalleryClient(port: s.port, token: nil)
            await expectClientError(.unauthenticated) { _ = try await anonymous.getGallery("a") }
            let reader = try LabGalleryClient(port: s.port, token: try await s.token("rita", .reader))
            await expectClientError(.permissionDenied) { _ = try await reader.createGallery(id: "c", region: "north") }
            #expect(try await reader.getGallery("a").name == "galleries/a")

            do throws(LabGalleryClientError) {
                _ = try await client.getGallery("nope")
            } catch {
                // Typed throws: `error` is statically a LabGalleryClientError.
                #expect(error.code == .notFound)
                #expect(error.description.hasPrefix("NOT_FOUND: "))
            }
        }
    }

    @Test("uploads from a file and from an async sequence report progress; a wrong sha256 stores nothing")
    func uploads() async throws {
        try await withLiveServer { s in
            let client = try s.client()
            _ = try await client.createGallery(id: "g", region: "north")
            let file = try tempImageFile(3 << 20)
            let reports = Mutex<[UploadProgress]>([])
            let image = try await client.uploadImage(
                ImageUpload(gallery: "g", imageID: "ubuntu", osType: .linux, osState: .generalized),
                from: file, chunkSize: 512 << 10, progress: { p in reports.withLock { $0.append(p) } })
            #expect(
                image.name == "galleries/g/images/ubuntu" && image.sizeBytes == 3 << 20 && image.source == .uploaded)
            let seen = reports.withLock { $0 }
            #expect(
                seen.first?.bytesSent == 0 && seen.last?.bytesSent == 3 << 20
                    && seen.allSatisfy { $0.totalBytes == 3 << 20 })
            #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.bytesSent <= $1.bytesSent })

            // Chunks above 1 MiB are split (the server's message limit is 4 MiB).
            let chunks = AsyncStream<[UInt8]> { c in
                c.yield(testBytes(5 << 20, seed: 1))
                c.yield(testBytes(10, seed: 2))
                c.finish()
            }
            let big = try await client.uploadImage(
                ImageUpload(gallery: "galleries/g", imageID: "big", osType: .windows, osState: .specialized),
                chunks: chunks)
            #expect(big.sizeBytes == (5 << 20) + 10 && big.osType == .windows && big.osState == .specialized)

            let bad = AsyncStream<[UInt8]> { c in
                c.yield([1, 2, 3])
                c.finish()
            }
            await expectClientError(.invalidArgument, "sha256") {
                _ = try await client.uploadImage(
                    ImageUpload(
                        gallery: "g", imageID: "bad", osType: .linux, osState: .generalized,
                        sha256: String(repeating: "0", count: 64)), chunks: bad)
            }
            await expectClientError(.notFound) { _ = try await client.getImage("g/bad") }
            await expectClientError(.invalidArgument, "cannot read") {
                _ = try await client.uploadImage(
                    ImageUpload(gallery: "g", imageID: "x", osType: .linux, osState: .generalized),
                    from: URL(fileURLWithPath: "/nonexistent/file.vhd"))
            }
        }
    }

    @Test("the seed workflow through the library: enable/disable, labs, template save, watch to the end, cost")
    func workflow() async throws {
        try await withLiveServer(replication: slowReplication(bytesPerSecond: 4 << 20)) { s in
            let client = try s.client()
            _ = try await client.createLabAccount(id: "school", region: "north", gallery: .createNew(id: "shared"))
            _ = try await client.uploadImage(
                ImageUpload(gallery: "shared", imageID: "base", osType: .linux, osState: .generalized),
                chunks: AsyncStream { c in
                    c.yield(testBytes(1 << 20))
                    c.finish()
                })
            #expect(try await client.listLabAccountImages(labAccount: "school").map(\.enabled) == [true])
            #expect(try await client.listLabAccountImages(labAccount: "school").map(\.available) == [true])
            let disabled = try await client.setImagesEnabled(["shared/base"], enabled: false, labAccount: "school")
            #expect(disabled.map(\.enabled) == [false] && disabled.map(\.available) == [false])
            #expect(disabled.first?.unavailableReason?.contains("SetImagesEnabled") == true)
            await expectClientError(.failedPrecondition) {
                _ = try await client.createLab(labAccount: "school", id: "bio", templateImage: "shared/base")
            }
            _ = try await client.setImagesEnabled(["galleries/shared/images/base"], enabled: true, labAccount: "school")
            let lab = try await client.createLab(labAccount: "school", id: "bio", templateImage: "shared/base")
            #expect(lab.name == "labAccounts/school/labs/bio")
            #expect(try await client.allLabs(labAccount: "school") == [lab])
            #expect(try await client.getLab("school/bio") == lab)

            let saved = try await client.saveLabTemplateImage(lab: "school/bio", imageID: "bio-v2")
            #expect(saved.osState == .specialized && saved.source == .savedFromLab && saved.sourceLab == lab.name)

            var states: [ReplicationStatus] = []
            for try await status in client.watchReplication(image: saved.name) { states.append(status) }
            #expect(states.last?.aggregatedState == .completed)
            #expect(Set(states.last?.regions.map(\.region) ?? []) == ["south", "east"])
            #expect(
                states.last?.regions.allSatisfy { $0.state == .completed && $0.bytesCopied == $0.bytesTotal } == true)
            #expect(try await client.getReplicationStatus(image: saved.name).aggregatedState == .completed)

            let cost = try await client.getGalleryCost(gallery: "shared")
            #expect(cost.gallery == "galleries/shared")
            #expect(cost.lines.contains { $0.image == saved.name && $0.region == "east" })
            #expect(Decimal(string: cost.monthlyTotal) != nil)
        }
    }

    @Test("a failed region ends the watch with FAILED; RetryReplication re-queues it")
    func failedRegionAndRetry() async throws {
        let config = slowReplication(
            bytesPerSecond: 8 << 20, regions: ["east": .init(latencyMilliseconds: 0, unreachable: true)], maxAttempts: 2
        )
        try await withLiveServer(replication: config) { s in
            let client = try s.client()
            _ = try await client.createGallery(id: "g", region: "north")
            let image = try await client.uploadImage(
                ImageUpload(gallery: "g", imageID: "img", osType: .linux, osState: .generalized),
                chunks: AsyncStream { c in
                    c.yield(testBytes(256 << 10))
                    c.finish()
                })
            var last: ReplicationStatus?
            for try await status in client.watchReplication(image: image.name) { last = status }
            #expect(last?.aggregatedState == .failed)
            #expect(last?.regions.first { $0.region == "east" }?.state == .failed)
            #expect(last?.regions.first { $0.region == "south" }?.state == .completed)
            let retried = try await client.retryReplication(image: image.name)
            #expect(retried.regions.first { $0.region == "east" }?.state != .failed)
        }
    }

    @Test("reads retry UNAVAILABLE until the server is up; writes surface it at once")
    func retriesReadsOnly() async throws {
        // A free port with nothing listening yet: every call is refused (UNAVAILABLE) until the server starts.
        let probe = try await LiveServer()
        let port = probe.port
        let dataDir = probe.dataDir
        await probe.stop()
        let token = probe.adminToken
        let client = try LabGalleryClient(
            configuration: .init(
                port: port, token: token,
                retryPolicy: .init(maxAttempts: 30, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(200))))

        await expectClientError(.unavailable) { _ = try await client.createGallery(id: "w", region: "north") }

        let started = ContinuousClock.now
        async let read = client.allGalleries()
        try await Task.sleep(for: .milliseconds(600))
        let server = try await LiveServer(dataDir: dataDir, port: port)
        #expect(try await read.isEmpty)  // succeeded on a retry after the server came up
        #expect(ContinuousClock.now - started >= .milliseconds(600))

        // The write above was not retried behind our back: nothing was created.
        await expectClientError(.notFound) { _ = try await client.getGallery("w") }

        // No retries with a budget of one attempt.
        await server.stop()
        let once = try LabGalleryClient(
            configuration: .init(port: port, token: token, retryPolicy: .init(maxAttempts: 1)))
        await expectClientError(.unavailable) { _ = try await once.getGallery("w") }
        server.remove()
    }

    @Test("a watch re-opens after the server restarts and still sees the end")
    func watchReconnects() async throws {
        // 2 MiB at 256 KiB/s: about 8 s of replication, so the restart lands in the middle of it
        // even when a loaded machine delays the statuses.
        let server = try await LiveServer(replication: slowReplication(bytesPerSecond: 256 << 10))
        defer { server.remove() }
        let client = try server.client(
            retry: .init(maxAttempts: 40, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(250)))
        _ = try await client.createGallery(id: "g", region: "north")
        let image = try await client.uploadImage(
            ImageUpload(gallery: "g", imageID: "img", osType: .linux, osState: .generalized),
            chunks: AsyncStream { c in
                c.yield(testBytes(2 << 20))
                c.finish()
            })
        var restarted = false
        var seenAfterRestart = 0
        var last: ReplicationStatus?
        for try await status in client.watchReplication(image: image.name) {
            last = status
            if restarted { seenAfterRestart += 1 }
            if !restarted && status.aggregatedState != .completed {
                restarted = true
                await server.stop()  // ends the stream with UNAVAILABLE
                try await server.restart()  // same port and data: replication resumes
            }
        }
        #expect(restarted, "the server restarted while the image was still replicating")
        #expect(seenAfterRestart >= 1, "the re-opened watch delivered statuses")
        #expect(last?.aggregatedState == .completed)
        await server.stop()
    }

    @Test("per-call deadlines and task cancellation")
    func deadlinesAndCancellation() async throws {
        try await withLiveServer(replication: slowReplication(bytesPerSecond: 256 << 10)) { s in
            let client = try s.client()
            _ = try await client.createGallery(id: "g", region: "north")
            let image = try await client.uploadImage(
                ImageUpload(gallery: "g", imageID: "img", osType: .linux, osState: .generalized),
                chunks: AsyncStream { c in
                    c.yield(testBytes(4 << 20))
                    c.finish()
                })
            // A watch of a long replication, cancelled through its task.
            let watcher = Task {
                var n = 0
                do {
                    for try await _ in client.watchReplication(image: image.name) { n += 1 }
                    return "ended after \(n)"
                } catch let error as LabGalleryClientError {
                    return "\(error.code)"
                } catch {
                    return "unexpected \(error)"
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            watcher.cancel()
            #expect(await watcher.value == "CANCELLED")

            // The gallery watch runs until cancelled; leaving the loop cancels the call.
            var seen = 0
            for try await status in client.watchGalleryReplication(gallery: "g") {
                #expect(status.image == image.name)
                seen += 1
                if seen == 2 { break }
            }
            #expect(seen == 2)
            #expect(try await client.getGallery("g", timeout: .seconds(5)).name == "galleries/g")
            await expectClientError(.deadlineExceeded) {
                _ = try await client.getGallery("g", timeout: .nanoseconds(1))
            }
        }
    }

    @Test("endpoints, resource names, TLS")
    func configuration() throws {
        #expect(try LabGalleryClient.parseEndpoint("10.0.0.1:8080") == ("10.0.0.1", 8080))
        #expect(try LabGalleryClient.parseEndpoint("localhost") == ("localhost", 50051))
        #expect(try LabGalleryClient.parseEndpoint("[::1]:9000") == ("::1", 9000))
        #expect(throws: LabGalleryClientError.self) { try LabGalleryClient.parseEndpoint("host:port") }
        #expect(throws: LabGalleryClientError.self) { try LabGalleryClient.parseEndpoint("host:70000") }
        #expect(ResourceName.gallery("shared") == "galleries/shared")
        #expect(ResourceName.gallery("galleries/shared") == "galleries/shared")
        #expect(ResourceName.labAccount("school") == "labAccounts/school")
        #expect(ResourceName.image("shared/ubuntu") == "galleries/shared/images/ubuntu")
        #expect(ResourceName.image("galleries/shared/images/ubuntu") == "galleries/shared/images/ubuntu")
        #expect(ResourceName.lab("school/bio") == "labAccounts/school/labs/bio")
    }

    @Test("a token never crosses the network in cleartext unless allowed; TLS files are checked at init")
    func cleartextTokenRule() throws {
        for host in ["localhost", "127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "a.localhost", "LOCALHOST"] {
            #expect(LabGalleryClient.isLoopback(host: host), "\(host)")
        }
        for host in ["10.0.0.1", "gallery.lab", "::2", "128.0.0.1", "localhost.example", "::ffff:10.0.0.1"] {
            #expect(!LabGalleryClient.isLoopback(host: host), "\(host)")
        }
        do {
            _ = try LabGalleryClient(configuration: .init(host: "10.0.0.1", token: "secret"))
            Issue.record("a cleartext token to 10.0.0.1 was accepted")
        } catch {
            #expect(error.code == .failedPrecondition && error.message.contains("--insecure"))
            #expect(!error.message.contains("secret"))
        }
        _ = try LabGalleryClient(configuration: .init(host: "10.0.0.1", token: "secret", allowInsecureToken: true))
        _ = try LabGalleryClient(configuration: .init(host: "10.0.0.1", token: nil))  // nothing to leak
        _ = try LabGalleryClient(configuration: .init(host: "::1", token: "secret"))
        _ = try LabGalleryClient(configuration: .init(host: "10.0.0.1", token: "secret", useTLS: true))  // system CAs
        do {
            _ = try LabGalleryClient(configuration: .init(token: nil, useTLS: true, caFile: "/nonexistent/ca.pem"))
            Issue.record("a missing CA file was accepted")
        } catch {
            #expect(error.code == .invalidArgument && error.message.contains("/nonexistent/ca.pem"))
        }
        #expect(throws: LabGalleryClientError.self) {
            try LabGalleryClient(configuration: .init(token: nil, caFile: "/tmp/ca.pem"))  // a CA file without TLS
        }
    }
}
