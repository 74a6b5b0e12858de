import Foundation
import GeneratedProtos
import H2RPC
import H2RPCNGHTTP2Transport
import LabGalleryCore
import Synchronization
import TestSupport
import Testing

/// Content-addressed blobs across crashes, `labgallery-server fsck`, and a data directory that lost
/// its database — all on the real executable.
@Suite(.serialized) struct CrashSafetyTests {
    @Test func killDashNineAtAnyPointLeavesNoReferencedBlobMissingAndNoUnreferencedBlob() async throws {
        let dir = try TempDirectory()
        let contents = (0..<3).map { testBytes(48_000, seed: UInt64(500 + $0)) }
        var kept: [String: String] = [:]  // image → sha256 of what survives
        var rng = SystemRandomNumberGenerator()
        for round in 0..<4 {
            let server = try await ServerProcess.launch(dataDir: dir.url, name: "round\(round)")
            let token = try String(contentsOf: dir.url.appendingPathComponent("admin.token"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            func connect() throws -> Clients {
                Clients(
                    rpc: RPCClient(
                        transport: try H2ClientTransport(host: "127.0.0.1", port: server.port),
                        interceptors: [Authorization(bearer: token)]))
            }
            let setup = try connect()
            if round == 0 {
                try await setup.createGallery("g")
                try await setup.createLabAccount("a", gallery: .attachGallery("galleries/g"))
            }
            // Every acknowledged image must still be there, with its bytes.
            for (name, sha) in kept { #expect(try await setup.images.getImage(.init(name: name)).sha256 == sha) }
            let log = CrashLog()
            let killAfter = Int.random(in: 8...40, using: &rng)
            let pid = server.pid
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<4 {
                    let c = try connect()
                    group.addTask {
                        for i in 0... {
                            let name = "galleries/g/images/r\(round)-w\(writer)-\(i)"
                            do {
                                // Shared contents: images, labs and deletions race over the same blobs.
                                let bytes = contents[(writer + i) % contents.count]
                                let image = try await c.upload(
                                    gallery: "galleries/g", id: "r\(round)-w\(writer)-\(i)", bytes: bytes,
                                    chunkSize: 8192)
                                log.record(image.name, sha: image.sha256)
                                let lab = "l\(round)-\(writer)-\(i)"
                                _ = try await c.labs.createLab(
                                    .init(
                                        labAccount: "labAccounts/a", labId: lab, lab: .init(templateImage: image.name)))
                                _ = try await c.labs.deleteLab(.init(name: "labAccounts/a/labs/\(lab)"))
                                if i % 2 == 1 {
                                    log.deleting(image.name)
                                    _ = try await c.images.deleteImage(.init(name: image.name))
                                    log.deleted(image.name)
                                }
                            } catch {
                                #expect(log.killed, "\(name) failed before the kill: \(error)")
                                c.rpc.close()
                                return
                            }
                        }
                    }
                }
                group.addTask {
                    try await eventually("\(killAfter) operations") { log.operations >= killAfter }
                    log.kill(pid)
                }
                try await group.waitForAll()
            }
            #expect(await server.waitForExit() == SIGKILL)
            setup.rpc.close()
            kept.merge(log.survivors) { $1 }
            for name in log.deletedNames { kept[name] = nil }
            // A delete cut by the kill may or may not have committed.
            for name in log.inDoubt { kept[name] = nil }
        }
        // The last start ran recovery; stop it cleanly and check the data directory from outside.
        let last = try await ServerProcess.launch(dataDir: dir.url, name: "final")
        #expect(try await last.stop(signal: SIGTERM) == 0)
        let fsck = try await runServerCommand(["fsck", "--data-dir", dir.url.path])
        #expect(fsck.status == 0, "fsck: \(fsck.stdout)")
        #expect(
            fsck.stdout.contains("0 problem(s), 0 warning(s)"),
            "no missing, corrupt or unreferenced blob: \(fsck.stdout)")
        #expect(
            TempDirectory.files(under: dir.url.appendingPathComponent("lost+found")).isEmpty,
            "every file a crash left behind was known to the database (no blob reached lost+found)")
        #expect(!kept.isEmpty)
    }

    @Test func fsckReportsMissingBlobsAndExitsNonZero() async throws {
        let dir = try TempDirectory()
        try await storeOneImage(dir, bytes: 30_000)

        let clean = try await runServerCommand(["fsck", "--data-dir", dir.url.path])
        #expect(
            clean.status == 0 && clean.stdout.contains("1 blob(s), 30000 byte(s) checked: 0 problem(s)"),
            "\(clean.stdout)")
        let blob = try #require(
            TempDirectory.files(under: dir.url.appendingPathComponent("regions/eastus/blobs")).first)
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("regions/eastus/blobs/\(blob)"))
        let broken = try await runServerCommand(["fsck", "--data-dir", dir.url.path])
        #expect(broken.status == 1)
        #expect(broken.stdout.contains("problem: missing blob regions/eastus/blobs/\(blob)"), "\(broken.stdout)")
    }

    @Test func aDataDirectoryThatLostItsDatabaseIsRefusedNotEmptied() async throws {
        let dir = try TempDirectory()
        try await storeOneImage(dir, bytes: 10_000)
        for suffix in ["", "-wal", "-shm"] {
            try? FileManager.default.removeItem(
                atPath: dir.url.appendingPathComponent("labgallery.sqlite").path + suffix)
        }
        let blobs = TempDirectory.files(under: dir.url.appendingPathComponent("regions"))
        await #expect(throws: ProcessFailure.self) {
            _ = try await ServerProcess.launch(dataDir: dir.url, name: "without-db")
        }
        let stderr =
            (try? String(
                contentsOf: dir.url.deletingLastPathComponent().appendingPathComponent(
                    dir.url.lastPathComponent + "-logs/without-db.stderr"), encoding: .utf8)) ?? ""
        #expect(stderr.contains("no database") && stderr.contains("Restore"), "\(stderr)")
        #expect(TempDirectory.files(under: dir.url.appendingPathComponent("regions")) == blobs, "nothing was deleted")
    }
}

/// Runs the real server on `dir` long enough to store one image of `bytes` bytes in gallery `g`, then stops it.
private func storeOneImage(_ dir: TempDirectory, bytes: Int) async throws {
    let server = try await ServerProcess.launch(dataDir: dir.url, name: "store")
    let token = try String(contentsOf: dir.url.appendingPathComponent("admin.token"), encoding: .utf8)
        .trimmingCharacters(in: .whitespacesAndNewlines)
    let c = Clients(
        rpc: RPCClient(
            transport: try H2ClientTransport(host: "127.0.0.1", port: server.port),
            interceptors: [Authorization(bearer: token)]))
    try await c.createGallery("g")
    try await c.upload(gallery: "galleries/g", id: "img", bytes: testBytes(bytes))
    c.rpc.close()
    #expect(try await server.stop(signal: SIGTERM) == 0)
}

/// What a crash round's writers did, for the checks after the kill.
final class CrashLog: Sendable {
    private struct State {
        var operations = 0
        var killed = false
        var stored: [String: String] = [:]
        var deleting: Set<String> = []
        var deleted: [String] = []
    }
    private let state = Mutex(State())

    var operations: Int { state.withLock { $0.operations } }
    var killed: Bool { state.withLock { $0.killed } }
    func record(_ image: String, sha: String) {
        state.withLock {
            $0.stored[image] = sha
            $0.operations += 1
        }
    }
    func deleting(_ image: String) { state.withLock { _ = $0.deleting.insert(image) } }
    func deleted(_ image: String) {
        state.withLock {
            $0.deleting.remove(image)
            $0.deleted.append(image)
            $0.operations += 1
        }
    }
    func kill(_ pid: Int32) {
        state.withLock { $0.killed = true }
        Foundation.kill(pid, SIGKILL)
    }
    /// Acknowledged images (deleted ones included: the caller removes them).
    var survivors: [String: String] { state.withLock { $0.stored } }
    var deletedNames: [String] { state.withLock { $0.deleted } }
    /// Images whose deletion was cut by the kill.
    var inDoubt: [String] { state.withLock { Array($0.deleting) } }
}

/// Runs `labgallery-server ARGS` to its end (off the cooperative pool); its exit status and stdout.
func runServerCommand(_ arguments: [String]) async throws -> (status: Int32, stdout: String) {
    try await blocking {
        let process = Process()
        process.executableURL = ServerProcess.binary
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }
}
