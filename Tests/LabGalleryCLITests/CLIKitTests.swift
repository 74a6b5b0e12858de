import ArgumentParser
import Foundation
import LabGalleryClient
import Synchronization
import TestSupport
import Testing

@testable import LabGalleryCLIKit

// The CLI library without a process: parsing, validation, exit codes, names, rendering and the
// confirmation prompt. (CLIWorkflowTests and TerminalTests run the real binary.)

/// Parses `arguments` as the root command does and returns the command, which must be a `C`.
func parse<C: ParsableCommand>(
    _ arguments: [String], as commandType: C.Type, sourceLocation: SourceLocation = #_sourceLocation
) throws -> C {
    let command = try LabGalleryCLI.parseAsRoot(arguments)
    return try #require(command as? C, "parsed as \(type(of: command))", sourceLocation: sourceLocation)
}

/// The exit code and stderr message the CLI gives when parsing `arguments` fails.
func parseFailure(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) -> (
    exitCode: Int32, message: String
)? {
    do {
        _ = try LabGalleryCLI.parseAsRoot(arguments)
        Issue.record("\(arguments) parsed", sourceLocation: sourceLocation)
        return nil
    } catch {
        return (LabGalleryCLI.exitCode(forFailure: error), LabGalleryCLI.message(for: error))
    }
}

@Suite("labgallery: argument parsing")
struct ParsingTests {
    @Test("commands, arguments and defaults")
    func commands() throws {
        let create = try parse(
            ["gallery", "create", "shared", "--region", "north", "-o", "json"], as: GalleryCommand.Create.self)
        #expect(create.name == "shared" && create.region == "north" && create.displayName == "")
        #expect(create.output.output == .json)
        #expect(
            create.connection.endpoint.isEmpty && create.connection.token == nil && !create.connection.tls
                && create.connection.timeout == 30)

        let upload = try parse(
            [
                "image", "upload", "a.vhd", "--gallery", "g", "--os-state", "GENERALIZED", "--os-type", "Linux",
                "--sha256", "ab", "--timeout", "2.5", "--endpoint", "[::1]:7",
            ], as: ImageCommand.Upload.self)
        #expect(upload.osState == .generalized && upload.osType == .linux && upload.sha256 == "ab" && upload.id == nil)
        #expect(
            upload.output.output == .table && upload.connection.timeout == 2.5
                && upload.connection.endpoint == ["[::1]:7"])

        let retry = try parse(
            ["replication", "retry", "g/img", "--region", "south", "--region", "east"],
            as: ReplicationCommand.Retry.self)
        #expect(retry.image == "g/img" && retry.regions == ["south", "east"] && retry.gallery == nil)

        let detach = try parse(["gallery", "detach", "--lab-account", "school", "-y"], as: GalleryCommand.Detach.self)
        #expect(detach.yes && detach.labAccount == "school")
        #expect(try !parse(["gallery", "detach", "--lab-account", "school"], as: GalleryCommand.Detach.self).yes)

        let watch = try parse(
            ["replication", "watch", "--gallery", "g", "--follow", "--output", "json"],
            as: ReplicationCommand.Watch.self)
        #expect(watch.image == nil && watch.gallery == "g" && watch.follow && watch.output.output == .json)

        let enable = try parse(
            ["image", "enable", "--lab-account", "school", "a", "g/b"], as: ImageCommand.Enable.self)
        #expect(enable.args.images == ["a", "g/b"] && enable.args.labAccount == "school")

        let account = try parse(
            ["lab-account", "create", "school", "--region", "north", "--new-gallery", "shared"],
            as: LabAccountCommand.Create.self)
        #expect(account.newGallery == "shared" && account.gallery == nil)
    }

    @Test("usage errors exit 64 and say what is wrong")
    func usageErrors() {
        let cases: [([String], String)] = [
            (
                ["lab-account", "create", "s", "--region", "r", "--new-gallery", "a", "--gallery", "b"],
                "exclude each other"
            ),
            (["image", "list"], "exactly one of --gallery and --lab-account"),
            (["image", "list", "--gallery", "g", "--lab-account", "a"], "exactly one of --gallery and --lab-account"),
            (["image", "enable", "--lab-account", "a"], "image"),
            (["replication", "watch"], "give an image, or --gallery G"),
            (["image", "upload", "f", "--gallery", "g", "--os-state", "generalized", "--os-type", "mac"], "os-type"),
            (["gallery", "create", "x"], "--region"),
            (["gallery", "list", "--nope"], "--nope"),
            (["gallery", "list", "-o", "yaml"], "yaml"),
            (["frobnicate"], "frobnicate"),
        ]
        for (arguments, fragment) in cases {
            guard let failure = parseFailure(arguments) else { continue }
            #expect(failure.exitCode == 64, "\(arguments)")
            #expect(failure.message.contains(fragment), "\(arguments): \(failure.message)")
        }
    }

    @Test("help exits 0")
    func help() throws {
        for arguments in [["--help"], ["gallery", "detach", "--help"], ["help", "image", "upload"]] {
            // Parsing --help gives ArgumentParser's help command, which ends the run with a clean exit.
            var command = try LabGalleryCLI.parseAsRoot(arguments)
            do {
                try command.run()
                Issue.record("\(arguments) ran")
            } catch {
                #expect(LabGalleryCLI.exitCode(forFailure: error) == 0, "\(arguments)")
                #expect(LabGalleryCLI.failure(error) == nil)
            }
        }
    }

    @Test("--os-type and --os-state take lower-case names, any case")
    func enumArguments() {
        #expect(
            OSType(argument: "WINDOWS") == .windows && OSType(argument: "linux") == .linux
                && OSType(argument: "unspecified") == nil)
        #expect(OSState(argument: "Specialized") == .specialized && OSState(argument: "GENERALIZED") == .generalized)
        #expect(OSState(argument: "") == nil)
        #expect(
            OSType.allValueStrings == ["windows", "linux"] && OSState.allValueStrings == ["generalized", "specialized"])
    }

    @Test("connection settings: flag, else environment (empty is unset), else default")
    func connection() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgcli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let tokenFile = dir.appendingPathComponent("admin.token").path
        let none = dir.appendingPathComponent("missing.token").path
        try Data("file-token\n".utf8).write(to: URL(fileURLWithPath: tokenFile))
        func options(_ arguments: String...) throws -> ConnectionOptions {
            try parse(["gallery", "list"] + arguments, as: GalleryCommand.List.self).connection
        }

        var c = try options().configuration(environment: [:], tokenFile: none)
        #expect(
            c.host == "127.0.0.1" && c.port == 50051 && c.token == nil && !c.useTLS && c.defaultTimeout == .seconds(30))
        c = try options().configuration(environment: [:], tokenFile: tokenFile)
        #expect(c.token == "file-token")
        let env = ["LABGALLERY_ENDPOINT": "gallery.lab:6000", "LABGALLERY_TOKEN": "env-token"]
        c = try options().configuration(environment: env, tokenFile: tokenFile)
        #expect(c.host == "gallery.lab" && c.port == 6000 && c.token == "env-token")
        c = try options().configuration(
            environment: ["LABGALLERY_ENDPOINT": "", "LABGALLERY_TOKEN": ""], tokenFile: tokenFile)
        #expect(c.host == "127.0.0.1" && c.port == 50051 && c.token == "file-token")
        c = try options("--endpoint", "[::1]:7000", "--token", "flag-token", "--timeout", "0.25", "--tls")
            .configuration(environment: env, tokenFile: tokenFile)
        #expect(
            c.host == "::1" && c.port == 7000 && c.token == "flag-token" && c.useTLS
                && c.defaultTimeout == .milliseconds(250))

        #expect(throws: CLIError.self) {
            try options("--timeout", "0").configuration(environment: [:], tokenFile: none)
        }
        do {
            _ = try options("--endpoint", "host:port").configuration(environment: [:], tokenFile: none)
            Issue.record("a malformed endpoint was accepted")
        } catch {
            #expect(LabGalleryCLI.exitCode(forFailure: error) == 13)  // INVALID_ARGUMENT
        }
        // TLS flags.
        c = try options("--tls", "--ca-file", "/ca.pem", "--cert", "/c.pem", "--key", "/c.key")
            .configuration(environment: [:], tokenFile: none)
        #expect(c.useTLS && c.caFile == "/ca.pem" && c.certificateFile == "/c.pem" && c.keyFile == "/c.key")
        #expect(throws: CLIError.self) {
            try options("--ca-file", "/ca.pem").configuration(environment: [:], tokenFile: none)
        }
        #expect(throws: CLIError.self) {
            try options("--tls", "--cert", "/c.pem").configuration(environment: [:], tokenFile: none)
        }
        do {
            _ = try options("--tls", "--ca-file", "/nonexistent/ca.pem").client()
            Issue.record("a missing CA file was accepted")
        } catch {
            #expect(LabGalleryCLI.exitCode(forFailure: error) == 13)
            #expect(LabGalleryCLI.failure(error)?.message.contains("/nonexistent/ca.pem") == true)
        }
    }

    @Test("the local admin token only for a loopback endpoint; --token-file; no cleartext token off the machine")
    func tokenRules() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgcli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let adminFile = dir.appendingPathComponent("admin.token").path
        let ownFile = dir.appendingPathComponent("mine.token").path
        try Data("admin-token\n".utf8).write(to: URL(fileURLWithPath: adminFile))
        try Data("my-token\n".utf8).write(to: URL(fileURLWithPath: ownFile))
        func options(_ arguments: String...) throws -> ConnectionOptions {
            try parse(["gallery", "list"] + arguments, as: GalleryCommand.List.self).connection
        }
        var c = try options("--endpoint", "localhost:7000").configuration(environment: [:], tokenFile: adminFile)
        #expect(c.token == "admin-token")
        c = try options("--endpoint", "gallery.lab:7000").configuration(environment: [:], tokenFile: adminFile)
        #expect(c.token == nil)  // the local admin token never goes to another machine
        c = try options("--endpoint", "gallery.lab:7000", "--tls").configuration(environment: [:], tokenFile: adminFile)
        #expect(c.token == nil)
        c = try options("--token-file", ownFile, "--endpoint", "gallery.lab:7000", "--tls")
            .configuration(environment: ["LABGALLERY_TOKEN": "env-token"], tokenFile: adminFile)
        #expect(c.token == "my-token")
        #expect(throws: CLIError.self) {
            try options("--token-file", dir.appendingPathComponent("missing").path)
                .configuration(environment: [:], tokenFile: adminFile)
        }
        // A token in cleartext to a non-loopback endpoint: FAILED_PRECONDITION (exit 19) unless --insecure.
        do {
            _ = try options("--endpoint", "gallery.lab:7000", "--token", "t").client()
            Issue.record("a cleartext token to gallery.lab was accepted")
        } catch {
            #expect(LabGalleryCLI.exitCode(forFailure: error) == 19)
            #expect(LabGalleryCLI.failure(error)?.message.contains("--insecure") == true)
        }
        _ = try options("--endpoint", "gallery.lab:7000", "--token", "t", "--insecure").client()
        _ = try options("--endpoint", "gallery.lab:7000", "--token", "t", "--tls").client()
    }
}

@Suite("labgallery: exit codes and names")
struct ExitCodeTests {
    @Test("a server status N exits 10 + N and prints error: CODE: message")
    func statuses() throws {
        let failure = try #require(LabGalleryCLI.failure(LabGalleryClientError(.notFound, "galleries/x not found")))
        #expect(failure.message == "error: NOT_FOUND: galleries/x not found\n" && failure.exitCode == 15)
        let expected: [(LabGalleryClientError.Code, Int32)] = [
            (.cancelled, 11), (.unknown, 12), (.invalidArgument, 13), (.deadlineExceeded, 14), (.notFound, 15),
            (.alreadyExists, 16), (.permissionDenied, 17), (.resourceExhausted, 18), (.failedPrecondition, 19),
            (.aborted, 20), (.outOfRange, 21), (.unimplemented, 22), (.internal, 23), (.unavailable, 24),
            (.dataLoss, 25), (.unauthenticated, 26),
        ]
        for (code, exit) in expected {
            #expect(LabGalleryCLI.exitCode(forFailure: LabGalleryClientError(code, "m")) == exit, "\(code)")
        }
    }

    @Test("local failures: 1 by default, 2 replication failed, 3 not confirmed; ArgumentParser's errors are its own")
    func local() {
        #expect(
            LabGalleryCLI.failure(CLIError(message: "--timeout must be positive"))! == (
                "error: --timeout must be positive\n", 1
            ))
        #expect(LabGalleryCLI.exitCode(forFailure: CLIError(message: "m", exitCode: ExitCodes.replicationFailed)) == 2)
        #expect(LabGalleryCLI.exitCode(forFailure: CLIError(message: "m", exitCode: ExitCodes.notConfirmed)) == 3)
        #expect(LabGalleryCLI.failure(ValidationError("x")) == nil)
        #expect(LabGalleryCLI.exitCode(forFailure: ValidationError("x")) == 64)
        #expect(LabGalleryCLI.exitCode(forFailure: ExitCode(7)) == 7)
    }

    @Test("image and lab references")
    func names() throws {
        #expect(try Names.image("ubuntu", gallery: "shared") == "galleries/shared/images/ubuntu")
        #expect(try Names.image("ubuntu", gallery: "galleries/shared") == "galleries/shared/images/ubuntu")
        #expect(try Names.image("shared/ubuntu", gallery: nil) == "galleries/shared/images/ubuntu")
        #expect(try Names.image("galleries/a/images/b", gallery: "other") == "galleries/a/images/b")
        #expect(try Names.lab("bio", labAccount: "school") == "labAccounts/school/labs/bio")
        #expect(try Names.lab("school/bio", labAccount: nil) == "labAccounts/school/labs/bio")
        let attempts: [() throws -> Void] = [
            { _ = try Names.image("ubuntu", gallery: nil) }, { _ = try Names.lab("bio", labAccount: nil) },
        ]
        for attempt in attempts {
            do {
                try attempt()
                Issue.record("a bare id without its parent was accepted")
            } catch {
                #expect(LabGalleryCLI.exitCode(forFailure: error) == 64)
            }
        }
    }

    @Test("upload ids default to the file name, made valid")
    func defaultID() {
        func id(_ file: String) -> String { ImageCommand.Upload.defaultID(URL(fileURLWithPath: file)) }
        #expect(id("/tmp/Ubuntu_22.04.vhd") == "ubuntu-22-04")
        #expect(id("2024 image.vhdx") == "image-2024-image")
        #expect(id("__Win--11__.vhd") == "win-11")
        #expect(id(String(repeating: "a", count: 80) + ".vhd").count == 63)
    }
}

/// Collects what a test's fake terminal is given.
final class Transcript: Sendable {
    private let text = Mutex("")
    func append(_ s: String) { text.withLock { $0 += s } }
    var value: String { text.withLock { $0 } }
}

@Suite("labgallery: the confirmation prompt")
struct ConfirmationTests {
    func confirmation(terminal: Bool = true, answer: String?, transcript: Transcript = Transcript())
        -> ConfirmationPrompt
    {
        ConfirmationPrompt(canAsk: { terminal }, write: { transcript.append($0) }, readAnswer: { answer })
    }

    @Test("y or yes (any case, spaces ignored) confirms; anything else, or no answer, declines with exit 3")
    func answers() async throws {
        for answer in ["y", "Y", "yes", " YES ", "Yes\t"] {
            let transcript = Transcript()
            try await confirmation(answer: answer, transcript: transcript).ask(
                "Detach galleries/a from labAccounts/s?", declined: "not detached")
            #expect(transcript.value == "Detach galleries/a from labAccounts/s? [y/N] ")
        }
        for answer in ["", "n", "no", "yep", "y y", nil] as [String?] {
            do {
                try await confirmation(answer: answer).ask("Detach?", declined: "not detached")
                Issue.record("\(String(describing: answer)) confirmed")
            } catch let error as CLIError {
                #expect(error.message == "not detached" && error.exitCode == 3)
            }
        }
    }

    @Test("without a terminal nothing is asked: exit 3")
    func noTerminal() throws {
        let transcript = Transcript()
        #expect(throws: CLIError.self) {
            try confirmation(terminal: false, answer: "y", transcript: transcript).requireAnswerer("pass --yes")
        }
        #expect(transcript.value.isEmpty)
        do {
            try confirmation(terminal: false, answer: "y").requireAnswerer("pass --yes")
        } catch {
            #expect(LabGalleryCLI.failure(error)! == ("error: pass --yes\n", 3))
        }
        try confirmation(terminal: true, answer: nil).requireAnswerer("pass --yes")
    }

    @Test("gallery detach asks naming the attached gallery and detaches only that one (in-process server, no binary)")
    func detach() async throws {
        try await withLiveServer { s in
            let client = try s.client()
            _ = try await client.createLabAccount(id: "school", region: "north", gallery: .createNew(id: "shared"))
            _ = try await client.createGallery(id: "other", displayName: "", region: "north")
            let detach = try parse(
                [
                    "gallery", "detach", "--lab-account", "school", "--endpoint", s.endpoint, "--token", s.adminToken,
                    "-o", "json",
                ], as: GalleryCommand.Detach.self)

            // Declined: nothing changes.
            var transcript = Transcript()
            do {
                try await detach.run(confirmation: confirmation(answer: "n", transcript: transcript))
                Issue.record("detached without a yes")
            } catch {
                #expect(LabGalleryCLI.exitCode(forFailure: error) == 3)
            }
            #expect(
                transcript.value
                    == "Detach galleries/shared from labAccounts/school? Its images become unavailable to the account's new labs. [y/N] "
            )
            #expect(try await client.getLabAccount("school").attachedGallery == "galleries/shared")

            // Another gallery attached while the question was up: the server refuses (19), the other stays.
            let swap = ConfirmationPrompt(
                canAsk: { true }, write: { _ in },
                readAnswer: {
                    _ = try await client.detachGallery(from: "school", confirm: true)
                    _ = try await client.attachGallery("other", to: "school")
                    return "y"
                })
            do {
                try await detach.run(confirmation: swap)
                Issue.record("detached a gallery the operator did not confirm")
            } catch {
                #expect(LabGalleryCLI.exitCode(forFailure: error) == 19, "\(error)")
            }
            #expect(try await client.getLabAccount("school").attachedGallery == "galleries/other")

            // Confirmed: detached.
            transcript = Transcript()
            try await detach.run(confirmation: confirmation(answer: "yes", transcript: transcript))
            #expect(transcript.value.hasPrefix("Detach galleries/other from labAccounts/school?"))
            #expect(try await client.getLabAccount("school").attachedGallery == nil)

            // Not a terminal: refused before asking (and before any call).
            transcript = Transcript()
            do {
                try await detach.run(confirmation: confirmation(terminal: false, answer: "y", transcript: transcript))
                Issue.record("detached without a terminal")
            } catch {
                #expect(LabGalleryCLI.exitCode(forFailure: error) == 3)
                #expect(LabGalleryCLI.failure(error)?.message.contains("pass --yes") == true)
            }
            #expect(transcript.value.isEmpty)
        }
    }
}

@Suite("labgallery: tables and progress")
struct RenderingTests {
    @Test("tables pad every column but the last to its widest cell")
    func tables() throws {
        #expect(
            Output.table(["NAME", "REGION"], [["galleries/a", "north"], ["b", "south-east"]])
                == "NAME         REGION\ngalleries/a  north\nb            south-east\n")
        #expect(
            Output.fields([("name", "galleries/a"), ("display name", "A")])
                == "name          galleries/a\ndisplay name  A\n")
        let account = LabAccount(
            name: "labAccounts/school", displayName: "School", region: "north", attachedGallery: nil)
        #expect(
            try Output.render(LabAccountJSON(account), .table) { Output.fields(account.fields) }
                == "name              labAccounts/school\ndisplay name      School\nregion            north\nattached gallery  -\n"
        )
        #expect(
            try Output.render(LabAccountJSON(account), .json) { "unused" }
                == "{\n  \"attached_gallery\" : null,\n  \"display_name\" : \"School\",\n  \"name\" : \"labAccounts/school\",\n  \"region\" : \"north\"\n}\n"
        )
        let listed = JSONGolden.unavailable
        #expect(
            Output.table(Image.headers + LabAccountImage.headers, [listed.image.row + listed.row]).split(
                separator: "\n"
            ).last?
            .hasSuffix(
                "  no       no         image galleries/shared/images/bio-v2 is disabled for labAccounts/school: SetImagesEnabled"
            ) == true)
    }

    @Test("sizes, rates, durations")
    func units() {
        #expect(Output.bytes(0) == "0 B" && Output.bytes(1023) == "1023 B" && Output.bytes(1536) == "1.5 KiB")
        #expect(Output.bytes(3 << 20) == "3.0 MiB" && Output.bytes(68_719_476_736) == "64.0 GiB")
        #expect(Output.rate(524_288) == "512.0 KiB/s")
        #expect(Output.duration(6) == "6s" && Output.duration(125) == "2m5s" && Output.duration(7260) == "2h1m")
        #expect(Output.duration(.infinity) == "--" && Output.duration(-1) == "--")
    }

    @Test("the upload bar: percent, bytes, rate, ETA")
    func uploadBar() {
        let p = UploadProgress(bytesSent: 1 << 20, totalBytes: 4 << 20)
        #expect(
            UploadProgressBar.render(p, elapsed: .seconds(2), bar: false)
                == " 25%  1.0 MiB/4.0 MiB  512.0 KiB/s  ETA 6s")
        #expect(
            UploadProgressBar.render(p, elapsed: .seconds(2), bar: true)
                == "[#######-----------------------]  25%  1.0 MiB/4.0 MiB  512.0 KiB/s  ETA 6s")
        #expect(
            UploadProgressBar.render(UploadProgress(bytesSent: 2048, totalBytes: nil), elapsed: .seconds(1), bar: true)
                == "2.0 KiB  2.0 KiB/s")
    }

    @Test("the replication table")
    func replicationTable() {
        #expect(
            JSONGolden.status.table.split(separator: "\n", omittingEmptySubsequences: false) == [
                "image: galleries/shared/images/ubuntu",
                "state: REPLICATING",
                "REGION     STATE        PROGRESS  COPIED           ATTEMPTS  ERROR",
                "eastus     REPLICATING  33.3%     1.0 MiB/3.0 MiB  1         ",
                "westus     FAILED       0.0%      0 B/3.0 MiB      5         region westus unreachable",
                "centralus  COMPLETED    100.0%    3.0 MiB/3.0 MiB  2         ",
                "",
            ])
    }

    @Test("replication watch: plain lines per state or 10 % step, JSON lines, live redraws")
    func replicationDisplay() throws {
        func status(_ state: ReplicationState, _ percent: Double) -> ReplicationStatus {
            ReplicationStatus(
                image: "galleries/g/images/i", aggregatedState: state.isTerminal ? state : .replicating,
                regions: [
                    RegionReplication(
                        region: "south", state: state, bytesCopied: Int64(percent * 10), bytesTotal: 1000,
                        progressPercent: percent, error: nil, attempts: 1)
                ])
        }
        let sequence = [
            status(.pending, 0), status(.replicating, 12), status(.replicating, 15), status(.replicating, 31),
            status(.completed, 100),
        ]

        let plain = Transcript()
        let display = ReplicationDisplay(mode: .plain, write: { plain.append($0) })
        for s in sequence { try display.show(s) }
        display.finish()
        let lines = plain.value.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines.count == 5, "\(lines)")  // 15 % is in the same 10 % step as 12 %
        #expect(lines.first == "galleries/g/images/i  south  PENDING  0%")
        #expect(lines.dropFirst().first?.hasPrefix("galleries/g/images/i  south  REPLICATING  12%") == true)
        #expect(lines.last == "galleries/g/images/i  COMPLETED")
        #expect(!plain.value.contains("\u{1B}"))

        let json = Transcript()
        let jsonDisplay = ReplicationDisplay(mode: .json, write: { json.append($0) })
        for s in sequence { try jsonDisplay.show(s) }
        let documents = json.value.split(separator: "\n")
        #expect(documents.count == sequence.count)
        #expect(
            try documents.map { try JSONDecoder().decode(ReplicationStatusJSON.self, from: Data($0.utf8)) }
                == sequence.map(ReplicationStatusJSON.init))

        let live = Transcript()
        let liveDisplay = ReplicationDisplay(mode: .live, write: { live.append($0) })
        try liveDisplay.show(sequence[0])
        #expect(
            live.value.hasPrefix(
                "\u{1B}[?25l\r\u{1B}[2Kgalleries/g/images/i  REPLICATING\n\r\u{1B}[2K  south  PENDING    "))
        let first = live.value.count
        try liveDisplay.show(sequence[4])
        #expect(String(live.value.dropFirst(first)).hasPrefix("\u{1B}[2A\r\u{1B}[2Kgalleries/g/images/i  COMPLETED\n"))
        liveDisplay.finish()
        #expect(live.value.hasSuffix("\u{1B}[?25h"))
    }
}
