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
}
