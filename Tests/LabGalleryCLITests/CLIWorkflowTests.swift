import Foundation
import LabGalleryClient
import LabGalleryServer
import TestSupport
import Testing

@testable import LabGalleryCLIKit

/// The `labgallery` binary against a live server: the seed workflow, its JSON parsed with
/// JSONDecoder into the CLI's own output types (`GalleryJSON`, `LabAccountImageList`…).
@Suite("labgallery CLI")
struct CLIWorkflowTests {
    @Test("the seed workflow, end to end")
    func seedWorkflow() async throws {
        try await withLiveServer(replication: slowReplication(bytesPerSecond: 8 << 20)) { s in
            func cli(_ args: String..., stdin: String? = nil) async throws -> CLIResult {
                try await runCLI(args, server: s, stdin: stdin)
            }
            func ok(_ r: CLIResult, sourceLocation: SourceLocation = #_sourceLocation) {
                #expect(r.status == 0, "exit \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
            }

            // Create a gallery; create a lab account attached to it.
            var r = try await cli(
                "gallery", "create", "shared", "--region", "north", "--display-name", "Shared", "--output", "json")
            ok(r)
            #expect(
                try r.json(GalleryJSON.self)
                    == GalleryJSON(
                        Gallery(name: "galleries/shared", displayName: "Shared", region: "north", geography: "Testland")
                    ))
            r = try await cli(
                "lab-account", "create", "school", "--region", "north", "--gallery", "shared", "-o", "json")
            ok(r)
            #expect(try r.json(LabAccountJSON.self).attachedGallery == "galleries/shared")
            r = try await cli("gallery", "roles", "galleries/shared", "-o", "json")
            ok(r)
            #expect(
                try r.json(RoleAssignmentList.self).roleAssignments == [
                    RoleAssignmentJSON(RoleAssignment(principal: "lab-services", role: "Contributor"))
                ])

            // Attaching a second gallery is refused, and the fix is named.
            ok(try await cli("gallery", "create", "other", "--region", "north"))
            r = try await cli("gallery", "attach", "other", "--lab-account", "school")
            #expect(r.status == 19)  // 10 + FAILED_PRECONDITION
            #expect(r.stderr.contains("FAILED_PRECONDITION"))
            #expect(r.stderr.contains("labgallery gallery detach --lab-account school"))

            // Upload a generalized image with progress (plain lines on a non-terminal stderr).
            let file = try tempImageFile(2 << 20, name: "Ubuntu_22.04.vhd")
            r = try await cli(
                "image", "upload", file.path, "--gallery", "shared", "--os-state", "generalized", "--os-type", "linux",
                "-o", "json")
            ok(r)
            let uploaded = try r.json(ImageJSON.self)
            #expect(uploaded.name == "galleries/shared/images/ubuntu-22-04" && uploaded.sizeBytes == 2 << 20)
            #expect(r.stderr.contains("upload: 100%") && r.stderr.contains("ETA") && r.stderr.contains("/s"))
            let second = try tempImageFile(256 << 10, name: "windows.vhd")
            ok(
                try await cli(
                    "image", "upload", second.path, "--gallery", "shared", "--os-state", "generalized", "--os-type",
                    "windows", "--id", "win"))

            // List images of the account: enabled by default.
            r = try await cli("image", "list", "--lab-account", "school", "-o", "json")
            ok(r)
            let listed = try r.json(LabAccountImageList.self).images
            #expect(
                Set(listed.map(\.image.name)) == [
                    "galleries/shared/images/ubuntu-22-04", "galleries/shared/images/win",
                ])
            #expect(listed.allSatisfy { $0.enabled && $0.available && $0.unavailableReason == nil })
            #expect(r.stdout.contains("\"available\" : true") && r.stdout.contains("\"unavailable_reason\" : null"))
            r = try await cli("image", "list", "--gallery", "shared", "-o", "json")
            ok(r)
            #expect(try r.json(ImageList.self).images.count == 2)

            // Disable one; a lab from it is refused; a lab from an enabled one works.
            r = try await cli("image", "disable", "--lab-account", "school", "win", "-o", "json")
            ok(r)
            let disabled = try #require(
                try r.json(LabAccountImageList.self).images.first { $0.image.name.hasSuffix("/win") })
            #expect(!disabled.enabled && !disabled.available)
            #expect(disabled.unavailableReason?.contains("disabled for labAccounts/school") == true)
            r = try await cli("image", "list", "--lab-account", "school")
            ok(r)
            let table = r.stdout.split(separator: "\n").map {
                $0.components(separatedBy: "  ").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            }
            #expect(table.first?.suffix(3) == ["ENABLED", "AVAILABLE", "REASON"], "\(r.stdout)")
            let win = try #require(table.first { $0.first == "galleries/shared/images/win" }, "\(r.stdout)")
            #expect(
                win.suffix(3).prefix(2) == ["no", "no"] && win.last?.contains("SetImagesEnabled") == true, "\(r.stdout)"
            )
            #expect(
                table.first { $0.first == "galleries/shared/images/ubuntu-22-04" }?.suffix(2) == ["yes", "yes"],
                "\(r.stdout)")
            r = try await cli("lab", "create", "bio", "--lab-account", "school", "--template", "win")
            #expect(r.status == 19, "\(r.stderr)")
            r = try await cli(
                "lab", "create", "bio", "--lab-account", "school", "--template", "shared/ubuntu-22-04", "-o", "json")
            ok(r)
            #expect(try r.json(LabJSON.self).templateImage == "galleries/shared/images/ubuntu-22-04")
            r = try await cli("lab", "list", "--lab-account", "school", "-o", "json")
            ok(r)
            #expect(try r.json(LabList.self).labs.map(\.name) == ["labAccounts/school/labs/bio"])

            // Save the lab's template as a specialized image; watch its replication to the end.
            r = try await cli(
                "lab", "save-image", "bio", "--lab-account", "school", "--image-id", "bio-v2", "-o", "json")
            ok(r)
            let saved = try r.json(ImageJSON.self)
            #expect(saved.osState == OSState.specialized.rawValue && saved.source == ImageSource.savedFromLab.rawValue)
            r = try await cli("replication", "watch", "bio-v2", "--gallery", "shared")
            ok(r)
            #expect(!r.stdout.contains("\u{1B}["))  // not a terminal: plain lines, no cursor movement
            let lines = r.stdout.split(separator: "\n")
            #expect(lines.contains { $0.contains("south") && $0.contains("COMPLETED") })
            #expect(lines.contains { $0.contains("east") && $0.contains("COMPLETED") })
            #expect(lines.last == "galleries/shared/images/bio-v2  COMPLETED")
            r = try await cli("replication", "status", "shared/bio-v2", "-o", "json")
            ok(r)
            let status = try r.json(ReplicationStatusJSON.self)
            #expect(status.aggregatedState == ReplicationState.completed.rawValue && status.regions.count == 2)

            // Detach: refused without a terminal and without --yes; confirmed with --yes.
            r = try await cli("gallery", "detach", "--lab-account", "school")
            #expect(r.status == 3 && r.stderr.contains("--yes"))
            r = try await cli("gallery", "detach", "--lab-account", "school", "--yes", "-o", "json")
            ok(r)
            #expect(try r.json(LabAccountJSON.self).attachedGallery == nil)
            #expect(r.stdout.contains("\"attached_gallery\" : null"))

            // The cost of the gallery: one line per replica.
            r = try await cli("cost", "shared", "-o", "json")
            ok(r)
            let cost = try r.json(GalleryCostJSON.self)
            #expect(cost.gallery == "galleries/shared")
            #expect(Set(cost.lines.filter { $0.image == saved.name }.map(\.region)) == ["north", "south", "east"])
            #expect(Decimal(string: cost.monthlyTotal) != nil)
            r = try await cli("cost", "shared")
            ok(r)
            #expect(r.stdout.contains("monthly total"))
        }
    }

    @Test("tables, listing, show/delete by short names, exit codes, completion, --tls")
    func commandsAndExitCodes() async throws {
        try await withLiveServer { s in
            func cli(_ args: String..., token: String? = nil) async throws -> CLIResult {
                try await runCLI(args, server: s, token: token)
            }
            var r = try await cli("lab-account", "create", "school", "--region", "north", "--new-gallery", "shared")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("attached gallery") && r.stdout.contains("galleries/shared"))
            r = try await cli("lab-account", "list", "-o", "json")
            #expect(try r.json(LabAccountList.self).labAccounts.map(\.name) == ["labAccounts/school"])
            r = try await cli("gallery", "list")
            #expect(r.stdout.hasPrefix("NAME") && r.stdout.contains("galleries/shared"))
            r = try await cli("gallery", "show", "nope")
            #expect(r.status == 15 && r.stderr.hasPrefix("error: NOT_FOUND: "))
            r = try await cli("gallery", "create", "shared", "--region", "north")
            #expect(r.status == 16)
            r = try await cli("gallery", "list", token: "not-a-token")
            #expect(r.status == 26 && r.stderr.contains("UNAUTHENTICATED"))
            r = try await cli("gallery", "create", "x", "--region", "north", token: try await s.token("rita", .reader))
            #expect(r.status == 17)
            r = try await cli("gallery", "list", "--tls")  // TLS to a cleartext port: the handshake fails
            #expect(r.status == 24 && r.stderr.contains("TLS handshake"))
            r = try await cli("gallery", "list", "--endpoint", "127.0.0.1:1")
            #expect(r.status == 24 && r.stderr.contains("UNAVAILABLE"))
            r = try await cli("image", "list")
            #expect(r.status == 64)
            r = try await cli("image", "show", "ubuntu")
            #expect(r.status == 64 && r.stderr.contains("--gallery"))
            r = try await cli(
                "image", "upload", "/nonexistent.vhd", "--gallery", "shared", "--os-state", "generalized", "--os-type",
                "linux")
            #expect(r.status == 13 && r.stderr.contains("cannot read"))
            r = try await cli("lab-account", "delete", "labAccounts/school", "-o", "json")
            #expect(r.status == 0 && r.stdout.contains("\"deleted\" : \"labAccounts/school\""))
            r = try await cli("--generate-completion-script", "bash")
            #expect(r.status == 0 && r.stdout.contains("lab-account") && r.stdout.contains("save-image"))
        }
    }

    @Test("replication watch exits non-zero when a region fails; retry re-queues it")
    func watchFailure() async throws {
        let config = slowReplication(
            bytesPerSecond: 8 << 20, regions: ["east": .init(latencyMilliseconds: 0, unreachable: true)], maxAttempts: 2
        )
        try await withLiveServer(replication: config) { s in
            _ = try await runCLI(["gallery", "create", "g", "--region", "north"], server: s)
            let file = try tempImageFile(128 << 10)
            #expect(
                try await runCLI(
                    [
                        "image", "upload", file.path, "--gallery", "g", "--os-state", "generalized", "--os-type",
                        "linux", "--id", "img",
                    ],
                    server: s
                ).status == 0)
            var r = try await runCLI(["replication", "watch", "g/img"], server: s)
            #expect(r.status == 2, "\(r.stdout)\n\(r.stderr)")
            #expect(r.stderr.contains("failed: galleries/g/images/img in east"))
            #expect(r.stderr.contains("labgallery replication retry"))
            r = try await runCLI(["replication", "watch", "--gallery", "g", "-o", "json"], server: s)
            #expect(r.status == 2)
            let statuses = try r.stdout.split(separator: "\n").map {
                try JSONDecoder().decode(ReplicationStatusJSON.self, from: Data($0.utf8))
            }
            #expect(statuses.last?.aggregatedState == ReplicationState.failed.rawValue)
            r = try await runCLI(["replication", "retry", "g/img", "--region", "east", "-o", "json"], server: s)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(
                try r.json(ReplicationStatusJSON.self).regions.first { $0.region == "east" }?.state
                    != ReplicationState.failed.rawValue)
        }
    }
}
