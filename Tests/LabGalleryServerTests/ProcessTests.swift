import Foundation
import GeneratedProtos
import H2RPC
import H2RPCNGHTTP2Transport
import LabGalleryCore
import Synchronization
import TestSupport
import Testing

/// The real `labgallery-server` executable: startup contract, signals, and crash safety (kill -9).
///
/// Needs the debug build of the product (`swift build --build-tests` or `make test` builds it).
@Suite(.serialized) struct ProcessTests {
    @Test func startsListensWritesAdminTokenAndStopsCleanly() async throws {
        let dir = try TempDirectory()
        let first = try await ServerProcess.launch(dataDir: dir.url, name: "first")
        #expect(
            first.firstLine.wholeMatch(of: /listening on 127\.0\.0\.1:\d+/) != nil,
            "first stdout line: \(first.firstLine)")

        let tokenFile = dir.url.appendingPathComponent("admin.token")
        let mode = try FileManager.default.attributesOfItem(atPath: tokenFile.path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let token = try String(contentsOf: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("lg_") && token.count >= 40)

        let rpc = RPCClient(
            transport: try H2ClientTransport(host: "127.0.0.1", port: first.port),
            interceptors: [Authorization(bearer: token)])
        let c = Clients(rpc: rpc)
        #expect(try await c.health.check(.init()).status == .serving)
        _ = try await c.createGallery("g")
        rpc.close()

        #expect(try await first.stop(signal: SIGTERM) == 0, "SIGTERM drains and exits 0")
        let log = first.stderr
        #expect(log.contains("admin token written to \(tokenFile.path)"))
        #expect(log.contains("stopped"))
        #expect(!log.contains(token), "the token never reaches the log")

        // A restart keeps the data and the token, writes no new token, and SIGINT also exits 0.
        let second = try await ServerProcess.launch(dataDir: dir.url, name: "second")
        let rpc2 = RPCClient(
            transport: try H2ClientTransport(host: "127.0.0.1", port: second.port),
            interceptors: [Authorization(bearer: token)])
        #expect(try await Clients(rpc: rpc2).galleries.getGallery(.init(name: "galleries/g")).name == "galleries/g")
        rpc2.close()
        #expect(try await second.stop(signal: SIGINT) == 0)
        #expect(!second.stderr.contains("admin token written"))
    }

    @Test func killDashNineMidBurstLosesNoAcknowledgedWrite() async throws {
        let dir = try TempDirectory()
        var server = try await ServerProcess.launch(dataDir: dir.url, name: "before-kill")
        let token = try String(contentsOf: dir.url.appendingPathComponent("admin.token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        func connect(_ port: Int) throws -> Clients {
            Clients(
                rpc: RPCClient(
                    transport: try H2ClientTransport(host: "127.0.0.1", port: port),
                    interceptors: [Authorization(bearer: token)]))
        }
        let setup = try connect(server.port)
        try await setup.createGallery("base")

        // A burst of concurrent writers, each on its own connection, recording what was acknowledged.
        let acked = BurstLog()
        let pid = server.pid
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<12 {
                let c = try connect(server.port)
                group.addTask {
                    for i in 0... {
                        do {
                            let g = try await c.createGallery("w\(writer)-\(i)")
                            acked.state.withLock { $0.galleries.append(g.name) }
                            // Several chunks, so some uploads are mid-stream when the server dies.
                            let bytes = testBytes(40_000, seed: UInt64(writer * 1000 + i))
                            let image = try await c.upload(
                                gallery: "galleries/base", id: "w\(writer)-\(i)", bytes: bytes, chunkSize: 4096)
                            acked.state.withLock { $0.images[image.name] = image.sha256 }
                            let sha = try await sha256Hex(bytes)
                            #expect(image.sha256 == sha)
                        } catch {
                            // Only the kill may end the burst.
                            let afterKill = acked.killed.load(ordering: .acquiring)
                            #expect(afterKill, "write failed before the kill: \(error)")
                            c.rpc.close()
                            return
                        }
                    }
                }
            }
            group.addTask {
                try await eventually("60 acknowledged writes") {
                    acked.state.withLock { $0.galleries.count + $0.images.count } >= 60
                }
                acked.killed.store(true, ordering: .releasing)
                kill(pid, SIGKILL)
            }
            try await group.waitForAll()
        }
        #expect(await server.waitForExit() == SIGKILL)
        setup.rpc.close()
        let (galleries, images) = acked.state.withLock { ($0.galleries, $0.images) }
        #expect(galleries.count + images.count >= 60)

        // Restart on the same data directory: every acknowledged write is there.
        server = try await ServerProcess.launch(dataDir: dir.url, name: "after-kill")
        let c = try connect(server.port)
        for name in galleries {
            #expect(try await c.galleries.getGallery(.init(name: name)).name == name)
        }
        for (name, sha) in images {
            #expect(try await c.images.getImage(.init(name: name)).sha256 == sha)
        }
        c.rpc.close()
        #expect(try await server.stop(signal: SIGTERM) == 0)

        // The database is intact, and no unreferenced blob, unknown or temp file is left (the
        // restart's recovery ran).
        try await blocking {
            let core = try LabGalleryService.open(dataDirectory: dir.url)
            let sqlite = try #require(core.storage as? SQLiteStorage)
            #expect(try sqlite.integrityCheck() == "ok")
            let stored = try core.storage.read { tx in
                try tx.images(in: GalleryName(id: "base"), after: nil, limit: nil)
            }
            #expect(stored.count >= images.count)
            let blobs = TempDirectory.files(under: dir.url.appendingPathComponent("regions/eastus/blobs"))
            #expect(
                Set(stored.map { String($0.blobPath.split(separator: "/").last!) })
                    == Set(blobs.map { String($0.split(separator: "/").last!) }),
                "every blob is referenced and every referenced blob exists")
            #expect(TempDirectory.files(under: dir.url.appendingPathComponent("regions/eastus/tmp")).isEmpty)
            let report = try core.recoverFiles()
            #expect(report.removedTempFiles.isEmpty && report.removedBlobs.isEmpty && report.lostAndFound.isEmpty)
            #expect(try core.fsck().isClean)
            try core.storage.close()
        }
    }
}

/// What the burst writers got acknowledged, and whether the kill was sent.
final class BurstLog: Sendable {
    struct State {
        var galleries: [String] = []
        var images: [String: String] = [:]
    }
    let state = Mutex(State())
    let killed = Atomic<Bool>(false)
}

/// A temp directory removed when the value is released.
final class TempDirectory {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("lgs-proc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    /// Regular files under `root`, as paths relative to it.
    static func files(under root: URL) -> [String] {
        guard let e = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else {
            return []
        }
        return e.compactMap { item -> String? in
            guard let url = item as? URL, (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true
            else { return nil }
            return String(url.path.dropFirst(root.path.count + 1))
        }.sorted()
    }
}

/// A `labgallery-server` child process with stdout and stderr captured to files.
final class ServerProcess {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let binary = packageRoot.appendingPathComponent(".build/debug/labgallery-server")

    let process: Process
    let stdoutURL: URL
    let stderrURL: URL
    let firstLine: String
    let port: Int
    var pid: Int32 { process.processIdentifier }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    private init(process: Process, stdoutURL: URL, stderrURL: URL, firstLine: String, port: Int) {
        self.process = process
        self.stdoutURL = stdoutURL
        self.stderrURL = stderrURL
        self.firstLine = firstLine
        self.port = port
    }

    /// Starts the server on port 0 and waits for its `listening on HOST:PORT` line.
    static func launch(dataDir: URL, name: String) async throws -> ServerProcess {
        try #require(
            FileManager.default.isExecutableFile(atPath: binary.path),
            "\(binary.path) is missing: build it first with `swift build --product labgallery-server` (or `swift build --build-tests`)"
        )
        let logs = dataDir.deletingLastPathComponent().appendingPathComponent(dataDir.lastPathComponent + "-logs")
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        let out = logs.appendingPathComponent("\(name).stdout")
        let err = logs.appendingPathComponent("\(name).stderr")
        try Data().write(to: out)
        try Data().write(to: err)
        let process = Process()
        process.executableURL = binary
        process.arguments = ["--port", "0", "--data-dir", dataDir.path]
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        for _ in 0..<2400 {  // up to 2 minutes: only catches a server that never starts
            let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            if let newline = text.firstIndex(of: "\n") {
                let line = String(text[..<newline])
                guard let port = line.split(separator: ":").last.flatMap({ Int($0) }) else { break }
                return ServerProcess(process: process, stdoutURL: out, stderrURL: err, firstLine: line, port: port)
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        if process.isRunning { process.terminate() }
        let log = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        throw ProcessFailure("server \(name) did not report listening; stderr: \(log)")
    }

    /// Sends `signal` and returns the exit status (waits for the process to end).
    func stop(signal: Int32) async throws -> Int32 {
        kill(process.processIdentifier, signal)
        await waitUntilExit(process)
        return process.terminationReason == .exit ? process.terminationStatus : -process.terminationStatus
    }

    /// Waits for the process to end; returns the signal that killed it, or 0 for a normal exit.
    func waitForExit() async -> Int32 {
        await waitUntilExit(process)
        return process.terminationReason == .uncaughtSignal ? process.terminationStatus : 0
    }
}

struct ProcessFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
