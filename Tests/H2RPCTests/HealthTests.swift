import GeneratedProtos
import H2RPC
import H2RPCHealth
import Testing

@Suite struct HealthTests {
    @Test(arguments: TransportKind.allCases)
    func checkAndWatch(kind: TransportKind) async throws {
        let health = HealthService()
        let h = try Harness(kind, services: [health])
        let client = Grpc_Health_V1_Health.Client(wrapping: h.client)
        #expect(try await client.check(.init(service: "")).status == .serving)
        await #expect {
            _ = try await client.check(.init(service: "no.such.Service"))
        } throws: { ($0 as? RPCError)?.code == .notFound }

        health.setStatus(.serving, for: "labgallery.v1.GalleryService")
        let watch = try await client.watch(.init(service: "labgallery.v1.GalleryService"))
        var iterator = watch.makeAsyncIterator()
        #expect(try await iterator.next()?.status == .serving)
        health.setStatus(.notServing, for: "labgallery.v1.GalleryService")
        #expect(try await iterator.next()?.status == .notServing)
        // Watching an unknown service reports SERVICE_UNKNOWN rather than failing.
        let unknown = try await client.watch(.init(service: "later"))
        var u = unknown.makeAsyncIterator()
        #expect(try await u.next()?.status == .serviceUnknown)
        watch.cancel()
        unknown.cancel()
        await h.stop()
    }

    /// Shutdown ends every watch, including one that starts while the server drains.
    @Test(arguments: TransportKind.allCases)
    func watchesEndWithShutdown(kind: TransportKind) async throws {
        let health = HealthService()
        let h = try Harness(kind, services: [health])
        let client = Grpc_Health_V1_Health.Client(wrapping: h.client)
        let before = try await client.watch(.init(service: ""))
        var b = before.makeAsyncIterator()
        #expect(try await b.next()?.status == .serving)
        health.shutdown()
        #expect(try await b.next()?.status == .notServing)
        #expect(try await b.next() == nil, "the watch ended")
        let after = try await client.watch(.init(service: ""))
        var a = after.makeAsyncIterator()
        #expect(try await a.next()?.status == .notServing)
        #expect(try await a.next() == nil, "a watch started after shutdown ends at once")
        await h.stop()
    }
}
