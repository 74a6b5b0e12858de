import ArgumentParser
import GeneratedProtos
import H2RPC
import H2RPCNGHTTP2Transport
import UnaryLoad

#if canImport(Glibc)
    import Glibc
#endif

/// Client-side benchmarks of H2RPC against a running interop-server.
@main
struct H2RPCBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "h2rpc-bench",
        abstract: "Client-side H2RPC benchmarks against a running interop-server.",
        subcommands: [Unary.self, Stream.self, Cancel.self, Upload.self])
}

struct Target: ParsableArguments {
    @Option(help: "Server host.") var host = "127.0.0.1"
    @Option(help: "Server port.") var port: Int

    func client() throws -> Grpc_Testing_TestService.Client {
        Grpc_Testing_TestService.Client(wrapping: RPCClient(transport: try H2ClientTransport(host: host, port: port)))
    }
}

extension H2RPCBench {
    /// Unary calls/s and latency from our generated client: `--connections` transports (one
    /// HTTP/2 connection each) × `--concurrency` concurrent calls, the load grpc-swift2-bench
    /// and Benchmarks/unary_client.py put on the same server.
    struct Unary: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Unary client load (calls/s, p50, p99).")
        @OptionGroup var target: Target
        @Option(help: "Connections (one transport each).") var connections = 8
        @Option(help: "Concurrent calls per connection.") var concurrency = 32
        @Option(help: "Warm-up seconds (not measured).") var warmup = 1.0
        @Option(help: "Measured seconds.") var duration = 10.0
        @Option(help: "Response payload bytes.") var size = 16

        func run() async throws {
            let clients = try (0..<connections).map { _ in try target.client() }
            var request = Grpc_Testing_SimpleRequest()
            request.responseSize = Int32(size)
            let req = request
            let size = self.size
            let result = try await UnaryLoad.run(
                connections: connections, concurrency: concurrency, warmup: warmup, duration: duration
            ) { connection in
                let response = try await clients[connection].unaryCall(req)
                guard response.payload?.body.count == size else {
                    throw ValidationError("body of \(response.payload?.body.count ?? 0) bytes, not \(size)")
                }
            }
            print(result.line)
        }
    }

    /// Server-streaming throughput: messages/s of `--size` bytes over `--streams` concurrent calls.
    struct Stream: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Server-streaming throughput (messages/s).")
        @OptionGroup var target: Target
        @Option(help: "Messages in all.") var messages = 1_000_000
        @Option(help: "Payload bytes per message.") var size = 1024
        @Option(help: "Concurrent streams.") var streams = 4

        func run() async throws {
            let client = try target.client()
            let perStream = messages / streams
            // Requests above ~600k parameters would exceed the 4 MiB message limit: split calls.
            let perCall = min(perStream, 100_000)
            let start = ContinuousClock.now
            let received = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<streams {
                    group.addTask {
                        var n = 0
                        var left = perStream
                        while left > 0 {
                            let count = min(perCall, left)
                            var request = Grpc_Testing_StreamingOutputCallRequest()
                            request.responseParameters = Array(
                                repeating: Grpc_Testing_ResponseParameters(size: Int32(size)), count: count)
                            let call = try await client.streamingOutputCall(request)
                            for try await response in call where response.payload?.body.count == size { n += 1 }
                            left -= count
                        }
                        return n
                    }
                }
                return try await group.reduce(0, +)
            }
            let elapsed = (ContinuousClock.now - start).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            guard received == perStream * streams else {
                throw ValidationError("received \(received) of \(perStream * streams) messages")
            }
            print(
                "stream messages=\(received) size=\(size) streams=\(streams) seconds=\((seconds * 1000).rounded() / 1000) msgs_per_sec=\(Int(Double(received) / seconds))"
            )
        }
    }

    /// Opens `--calls` streaming calls, reads the first response of each and cancels it.
    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel calls mid-stream (for the RSS check).")
        @OptionGroup var target: Target
        @Option(help: "Calls to cancel.") var calls = 10_000
        @Option(help: "Concurrent calls.") var concurrency = 100

        func run() async throws {
            let client = try target.client()
            var request = Grpc_Testing_StreamingOutputCallRequest()
            // 1000 responses of 1 KiB, 1 ms apart: the call is always mid-stream when cancelled.
            request.responseParameters = Array(
                repeating: Grpc_Testing_ResponseParameters(size: 1024, intervalUs: 1000), count: 1000)
            let req = request
            var done = 0
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<calls {
                    if i >= concurrency {
                        try await group.next()
                        done += 1
                    }
                    group.addTask {
                        let call = try await client.streamingOutputCall(req)
                        var it = call.makeAsyncIterator()
                        _ = try await it.next()
                        call.cancel()
                    }
                }
                try await group.waitForAll()
            }
            print("cancel calls=\(calls) done")
        }
    }

    /// Client-streaming throughput of large messages, in one process: an H2RPC server whose
    /// UploadImage handler only counts the chunk bytes, and an H2RPC client sending `--mib`
    /// MiB in `--chunk`-byte messages from one reused buffer (as labgallery-bench does).
    /// Prints wall time and the process's CPU time: the cost of the RPC stack alone, no disk.
    struct Upload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Client-streaming throughput of 1 MiB messages, server in process.")
        @Option(help: "MiB to upload per round.") var mib = 256
        @Option(help: "Bytes per chunk message.") var chunk = 1 << 20
        @Option(help: "Rounds (the best and the median are printed).") var rounds = 3

        struct Sink: RegistrableRPCService {
            func registerMethods(with router: inout RPCRouter) {
                router.registerClientStreaming(Labgallery_V1_ImageService.Method.uploadImage) {
                    (requests: RequestStream<Labgallery_V1_UploadImageRequest>, _: ServerContext) async throws
                        -> Labgallery_V1_Image in
                    var size = 0
                    var check: UInt8 = 0
                    for try await message in requests {
                        if case .chunk(let bytes) = message.data {
                            size += bytes.count
                            check &+= bytes[bytes.count - 1]
                        }
                    }
                    var image = Labgallery_V1_Image()
                    image.sizeBytes = Int64(size)
                    image.sha256 = String(check)
                    return image
                }
            }
        }

        func run() async throws {
            let transport = try H2ServerTransport(port: 0)
            let server = RPCServer(transport: transport, services: [Sink()])
            try server.start()
            let rpc = RPCClient(transport: try H2ClientTransport(host: "127.0.0.1", port: transport.boundPort))
            defer { rpc.close() }
            let images = Labgallery_V1_ImageService.Client(wrapping: rpc)
            var buffer = [UInt8](repeating: 0, count: chunk)
            for i in buffer.indices { buffer[i] = UInt8(truncatingIfNeeded: i &* 7) }
            let total = mib << 20
            var walls: [Double] = []
            var cpus: [Double] = []
            for _ in 0..<(rounds + 1) {
                let cpu0 = Self.cpuSeconds()
                let start = ContinuousClock.now
                let call = images.uploadImage()
                try await call.send(.init(data: .header(.init(gallery: "galleries/bench", imageId: "x"))))
                var sent = 0
                while sent < total {
                    let n = min(chunk, total - sent)
                    try await call.send(.init(data: .chunk(n == buffer.count ? buffer : Array(buffer[0..<n]))))
                    sent += n
                }
                call.finish()
                let image = try await call.response()
                guard image.sizeBytes == Int64(total) else {
                    throw ValidationError("server counted \(image.sizeBytes) bytes of \(total)")
                }
                let d = (ContinuousClock.now - start).components
                walls.append(Double(d.seconds) + Double(d.attoseconds) / 1e18)
                cpus.append(Self.cpuSeconds() - cpu0)
            }
            walls.removeFirst()
            cpus.removeFirst()  // warm-up
            func fmt(_ v: [Double]) -> String {
                let s = v.sorted()
                func ms(_ x: Double) -> String { "\((x * 1000).rounded() / 1000)" }
                return "best=\(ms(s[0])) median=\(ms(s[s.count / 2]))"
            }
            print("upload mib=\(mib) chunk=\(chunk) rounds=\(rounds) wall_s: \(fmt(walls)) cpu_s: \(fmt(cpus))")
            await server.shutdown(gracePeriod: .seconds(1))
        }

        static func cpuSeconds() -> Double {
            var u = rusage()
            getrusage(RUSAGE_SELF.rawValue, &u)
            return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
        }
    }
}
