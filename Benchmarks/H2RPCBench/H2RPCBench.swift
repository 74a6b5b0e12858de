import ArgumentParser
import GeneratedProtos
import H2RPC
#if canImport(Glibc)
import Glibc
#endif

/// Client-side benchmarks of H2RPC against a running interop-server.
@main
struct H2RPCBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "h2rpc-bench",
        abstract: "Client-side H2RPC benchmarks against a running interop-server.",
        subcommands: [Stream.self, Cancel.self])
}

struct Target: ParsableArguments {
    @Option(help: "Server host.") var host = "127.0.0.1"
    @Option(help: "Server port.") var port: Int

    func client() throws -> Grpc_Testing_TestService.Client {
        Grpc_Testing_TestService.Client(wrapping: RPCClient(transport: try H2ClientTransport(host: host, port: port)))
    }
}

extension H2RPCBench {
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
                            request.responseParameters = Array(repeating: Grpc_Testing_ResponseParameters(size: Int32(size)), count: count)
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
            print("stream messages=\(received) size=\(size) streams=\(streams) seconds=\((seconds * 1000).rounded() / 1000) msgs_per_sec=\(Int(Double(received) / seconds))")
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
            request.responseParameters = Array(repeating: Grpc_Testing_ResponseParameters(size: 1024, intervalUs: 1000), count: 1000)
            let req = request
            var done = 0
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<calls {
                    if i >= concurrency { try await group.next(); done += 1 }
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
}
