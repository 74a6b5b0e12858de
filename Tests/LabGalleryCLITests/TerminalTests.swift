import Foundation
import LabGalleryClient
import TestSupport
import Testing

/// A tmux session on its own socket (so nothing else's tmux is touched), 120×40 by default, running bash.
final class TmuxSession {
    let socket = "lgc-\(UUID().uuidString.prefix(8))"

    let environment: [String: String]
    let directory: URL
    let columns: Int

    init(environment: [String: String], directory: URL, columns: Int = 120) {
        self.environment = environment
        self.directory = directory
        self.columns = columns
    }

    func start() async throws {
        var args = ["new-session", "-d", "-s", "t", "-x", "\(columns)", "-y", "40", "-c", directory.path]
        for (k, v) in environment { args += ["-e", "\(k)=\(v)"] }
        args += ["bash --norc --noprofile"]
        try await tmux(args)
    }

    @discardableResult
    func tmux(_ args: [String]) async throws -> String {
        let outURL = FileManager.default.temporaryDirectory.appendingPathComponent("tmux-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: outURL) }
        let status = try await spawn(["tmux", "-L", socket] + args, stdout: outURL.path)
        guard status == 0 else {
            throw CLIMissing(message: "tmux \(args.first ?? "") failed (is tmux installed? apt-get install -y tmux)")
        }
        return (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
    }

    /// Types `text` and presses Enter.
    func type(_ text: String) async throws {
        try await tmux(["send-keys", "-t", "t", "-l", text])
        try await tmux(["send-keys", "-t", "t", "Enter"])
    }

    /// The visible screen.
    func screen() async throws -> String { try await tmux(["capture-pane", "-p", "-t", "t"]) }

    /// Polls the screen until `done` holds (calling `each` on every capture); returns the last capture.
    func wait(timeout: Duration = .seconds(30), each: (String) -> Void = { _ in }, until done: (String) -> Bool)
        async throws -> String
    {
        let end = ContinuousClock.now + timeout
        while true {
            let s = try await screen()
            each(s)
            if done(s) { return s }
            if ContinuousClock.now > end {
                Issue.record("timed out waiting; screen:\n\(s)")
                return s
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func kill() async { _ = try? await tmux(["kill-server"]) }
}

/// posix_spawnp + waitpid on a plain thread. Not Foundation's `Process`: it notices the exit of
/// `tmux new-session` only when every inherited descriptor closes, and the tmux server it forks
/// keeps one open for as long as it runs.
func spawn(_ argv: [String], stdout path: String) async throws -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    // The test's threads block most signals, and a child inherits the mask: unblock them all,
    // or the tmux server cannot be stopped (kill-server) and bash ignores ^C.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var none = sigset_t()
    sigemptyset(&none)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
    var cArgs = argv.map { strdup($0) } + [nil]
    defer { for a in cArgs { free(a) } }
    var pid = pid_t()
    let rc = posix_spawnp(&pid, argv[0], &actions, &attributes, &cArgs, environ)
    guard rc == 0 else { throw CLIMissing(message: "cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
    let child = pid
    return await withCheckedContinuation { continuation in
        Thread.detachNewThread {
            var status: Int32 = 0
            while waitpid(child, &status, 0) == -1 && errno == EINTR {}
            continuation.resume(returning: (status >> 8) & 0xff)
        }
    }
}

/// The command's `echo EXIT=$?` printed its line (the typed command shows `EXIT=$?`, not a line of its own).
func finished(_ screen: String) -> Bool { screen.split(separator: "\n").contains { $0.hasPrefix("EXIT=") } }

@Suite("labgallery in a real terminal (tmux)")
struct TerminalTests {
    @Test("upload bar, live replication bars redrawn in place, and the detach prompt")
    func liveDisplay() async throws {
        guard FileManager.default.isExecutableFile(atPath: cliPath) else {
            throw CLIMissing(
                message:
                    "\(cliPath) is missing: build it first with `swift build --product labgallery` (make test does)")
        }
        // 1 MiB/s per region and a 3 MiB image: about 3 s of visible progress.
        try await withLiveServer(replication: slowReplication(bytesPerSecond: 1 << 20)) { s in
            let client = try s.client()
            _ = try await client.createLabAccount(id: "school", region: "north", gallery: .createNew(id: "shared"))
            let file = try tempImageFile(3 << 20, name: "big.vhd")
            let term = TmuxSession(
                environment: ["LABGALLERY_ENDPOINT": s.endpoint, "LABGALLERY_TOKEN": s.adminToken, "PS1": "$ "],
                directory: s.dataDir)
            try await term.start()
            do { try await session(term, s, client, file) } catch {
                await term.kill()
                throw error
            }
            await term.kill()
        }
    }

    func session(_ term: TmuxSession, _ s: LiveServer, _ client: LabGalleryClient, _ file: URL) async throws {
        // Upload: one bar line redrawn with \r, ending at 100 % with bytes, rate and ETA.
        try await term.type(
            "\(cliPath) image upload \(file.path) --gallery shared --os-state generalized --os-type linux; echo EXIT=$?"
        )
        var screen = try await term.wait { finished($0) }
        #expect(screen.split(separator: "\n").contains("EXIT=0"))
        let bars = screen.split(separator: "\n").filter { $0.contains("] ") && $0.contains("ETA") }
        #expect(bars.count == 1, "one bar, redrawn in place:\n\(screen)")
        #expect(bars.first?.contains("100%") == true && bars.first?.contains("3.0 MiB/3.0 MiB") == true, "\(screen)")

        // Watch: one line per region, redrawn in place while the bytes move.
        try await term.tmux(["send-keys", "-t", "t", "clear", "Enter"])
        try await term.type("\(cliPath) replication watch shared/big; echo EXIT=$?")
        var sawProgress = false
        screen = try await term.wait(
            each: { s in
                let south = s.split(separator: "\n").filter { $0.contains("south") }
                #expect(south.count <= 1, "a region's line is redrawn, never repeated:\n\(s)")
                if let line = south.first, line.contains("REPLICATING"), line.contains("#"), line.contains("/s") {
                    sawProgress = true
                }
            }, until: { finished($0) })
        #expect(sawProgress, "a REPLICATING bar with a rate was on screen at some point")
        #expect(screen.split(separator: "\n").contains("EXIT=0"))
        let lines = screen.split(separator: "\n")
        for region in ["south", "east"] {
            let regionLines = lines.filter { $0.contains(region) }
            #expect(regionLines.count == 1, "\(screen)")
            #expect(
                regionLines.first?.contains("COMPLETED") == true && regionLines.first?.contains("100.0%") == true,
                "\(screen)")
        }
        #expect(lines.contains { $0.hasPrefix("galleries/shared/images/big  COMPLETED") })
        #expect(!screen.contains("[2K") && !screen.contains("[?25"), "escape sequences are interpreted, not printed")

        // Detach names the gallery the operator confirmed: if another was attached while the
        // prompt was up, the server refuses and the other one stays attached.
        try await term.tmux(["send-keys", "-t", "t", "clear", "Enter"])
        _ = try await client.createGallery(id: "other", displayName: "", region: "north")
        try await term.type("\(cliPath) gallery detach --lab-account school; echo EXIT=$?")
        _ = try await term.wait {
            $0.contains("Detach galleries/shared from labAccounts/school?") && $0.contains("[y/N]")
        }
        _ = try await client.detachGallery(from: "school", confirm: true)
        _ = try await client.attachGallery("other", to: "school")
        try await term.type("y")
        screen = try await term.wait { finished($0) }
        #expect(screen.split(separator: "\n").contains("EXIT=19"), "\(screen)")
        #expect(screen.contains("FAILED_PRECONDITION") && screen.contains("not galleries/shared"), "\(screen)")
        #expect(try await client.getLabAccount("school").attachedGallery == "galleries/other")

        // Detach asks on a terminal; "y" confirms.
        try await term.tmux(["send-keys", "-t", "t", "clear", "Enter"])
        try await term.type("\(cliPath) gallery detach --lab-account school; echo EXIT=$?")
        _ = try await term.wait {
            $0.contains("Detach galleries/other") && $0.contains("[y/N]") && !$0.contains("EXIT=19")
        }
        try await term.type("y")
        screen = try await term.wait { finished($0) }
        #expect(screen.split(separator: "\n").contains("EXIT=0"), "\(screen)")
        #expect(try await client.getLabAccount("school").attachedGallery == nil)
    }
}
