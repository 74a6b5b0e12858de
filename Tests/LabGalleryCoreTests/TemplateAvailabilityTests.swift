import Foundation
import Testing

@testable import LabGalleryCore

/// ListLabAccountImages' `available` / reason and CreateLab's accept / refuse are one rule.
@Suite struct TemplateAvailabilityTests {
    typealias Reason = TemplateUnavailability.Reason

    /// Gallery `g` in r1 (geography Test: r1, r2, r3) attached to four accounts: `home` (r1), `near`
    /// (r2), `failing` (r3), `far` (x1, geography Other). Images: `gen` (generalized), `spec`
    /// (specialized), `off` (generalized, disabled for every account). The engine is not started,
    /// so every replica is PENDING; once started, r2 completes and r3 (unreachable) fails.
    struct Setup {
        let f: Fixture
        let engine: ReplicationEngine
        let accounts = ["home", "near", "failing", "far"]
        let images = ["gen", "spec", "off"]
        init(_ policy: TemplateImagePolicy) async throws {
            f = try await Fixture(LabGalleryConfiguration(regionCatalog: replicationCatalog, templateImages: policy))
            try await f.gallery("g", region: "r1")
            for (account, region) in [("home", "r1"), ("near", "r2"), ("failing", "r3"), ("far", "x1")] {
                try await f.account(account, region: region, gallery: .attach(gallery: "galleries/g"))
            }
            try await f.upload("galleries/g", "gen", bytes: Array(repeating: 1, count: 1000), osState: .generalized)
            try await f.upload("galleries/g", "spec", bytes: Array(repeating: 2, count: 1000), osState: .specialized)
            try await f.upload("galleries/g", "off", bytes: Array(repeating: 3, count: 1000), osState: .generalized)
            for account in accounts {
                _ = try await f.service.setImagesEnabled(
                    labAccount: "labAccounts/\(account)", images: ["galleries/g/images/off"],
                    enabled: false, caller: admin)
            }
            engine = ReplicationEngine(
                service: f.service, configuration: fastReplication(["r3": link(unreachable: true)], maxAttempts: 1))
        }

        func list(_ account: String) async throws -> [String: LabAccountImage] {
            let list = try await f.service.listLabAccountImages(labAccount: "labAccounts/\(account)", caller: reader)
            return Dictionary(
                uniqueKeysWithValues: list.map { (String($0.image.name.split(separator: "/").last!), $0) })
        }

        /// Runs replication to its end: r2 COMPLETED, r3 FAILED for every image.
        func replicate() async throws {
            try await startEngine(engine)
            for image in images {
                let w = try await f.service.watchReplication(image: "galleries/g/images/\(image)", caller: reader)
                var last: ReplicationStatus?
                while let s = try await w.next() { last = s }
                #expect(last?.regions.map(\.state) == [.completed, .failed])
            }
            await engine.stop()
        }
    }

    /// The reason expected for `image` in `account`, in CreateLab's order: disabled, policy, region.
    func expected(_ account: String, _ image: String, policy: TemplateImagePolicy, replicated: Bool) -> Reason? {
        if image == "off" { return .disabled }
        if image == "spec", policy == .generalizedOnly { return .policy }
        switch account {
        case "home": return nil
        case "far": return .otherGeography
        case "near": return replicated ? nil : .replicationInProgress
        default: return replicated ? .replicationFailed : .replicationInProgress
        }
    }

    /// For every account and listed image: CreateLab succeeds exactly when the listing says
    /// available, and otherwise refuses with the listed reason, word for word. SetImagesEnabled's
    /// answer agrees with the listing too.
    func expectCreateLabAgrees(_ x: Setup, labPrefix: String, sourceLocation: SourceLocation = #_sourceLocation)
        async throws
    {
        for account in x.accounts {
            let listed = try await x.f.service.listLabAccountImages(
                labAccount: "labAccounts/\(account)", caller: reader)
            #expect(listed.count == x.images.count, sourceLocation: sourceLocation)
            for entry in listed {
                let labID = "\(labPrefix)-\(entry.image.name.split(separator: "/").last!)"
                do {
                    _ = try await x.f.service.createLab(
                        labAccount: "labAccounts/\(account)", labID: labID, displayName: "",
                        templateImage: entry.image.name, caller: educator)
                    #expect(
                        entry.available,
                        "\(account): CreateLab accepted \(entry.image.name), listed unavailable: \(entry.unavailable?.message ?? "")",
                        sourceLocation: sourceLocation)
                } catch {
                    #expect(
                        !entry.available,
                        "\(account): CreateLab refused \(entry.image.name), listed available: \(error)",
                        sourceLocation: sourceLocation)
                    #expect(error.code == .failedPrecondition, "\(error)", sourceLocation: sourceLocation)
                    #expect(
                        error.message == entry.unavailable?.message,
                        "\(account): the listed reason is CreateLab's message", sourceLocation: sourceLocation)
                }
            }
            // SetImagesEnabled answers with the same entries (re-enabling nothing new: `gen` stays enabled).
            let set = try await x.f.service.setImagesEnabled(
                labAccount: "labAccounts/\(account)", images: ["galleries/g/images/gen"],
                enabled: true, caller: admin)
            #expect(set == listed.filter { $0.image.name == "galleries/g/images/gen" }, sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: [TemplateImagePolicy.any, .generalizedOnly])
    func listedAvailabilityIsExactlyWhatCreateLabAccepts(policy: TemplateImagePolicy) async throws {
        let x = try await Setup(policy)
        for replicated in [false, true] {
            if replicated { try await x.replicate() }
            for account in x.accounts {
                let listed = try await x.list(account)
                for image in x.images {
                    let entry = try #require(listed[image])
                    let want = expected(account, image, policy: policy, replicated: replicated)
                    #expect(entry.unavailable?.reason == want, "\(account) \(image) replicated: \(replicated)")
                    #expect(entry.available == (want == nil))
                    #expect(entry.enabled == (image != "off"), "`enabled` is kept as is, apart from availability")
                }
            }
            try await expectCreateLabAgrees(x, labPrefix: replicated ? "after" : "before")
        }
    }

    @Test func reasonsSayWhatIsWrongAndWhatToDo() async throws {
        let x = try await Setup(.generalizedOnly)
        func reason(_ account: String, _ image: String) async throws -> String {
            let listed = try await x.list(account)
            return try #require(listed[image]?.unavailable?.message)
        }
        let disabled = try await reason("home", "off")
        #expect(
            disabled.contains("galleries/g/images/off") && disabled.contains("disabled for labAccounts/home")
                && disabled.contains("SetImagesEnabled"))
        let policy = try await reason("home", "spec")
        #expect(policy.contains("SPECIALIZED") && policy.contains("only GENERALIZED"))
        let far = try await reason("far", "gen")
        #expect(far.contains("x1") && far.contains("another geography") && far.contains("never replicates"))
        let pending = try await reason("near", "gen")
        #expect(pending.contains("r2") && pending.contains("PENDING, 0%") && pending.contains("WatchReplication"))

        // A copy in progress says how far it is.
        let name = try ImageName(parsing: "galleries/g/images/gen", field: "image")
        let pendingRow = try #require(
            try x.f.service.storage.read { try $0.replicationRows(of: name) }.first { $0.record.region == "r2" })
        var copying = pendingRow
        copying.record.state = .replicating
        copying.record.bytesCopied = 250
        _ = try x.f.service.storage.write { try $0.updateReplication(copying) }
        #expect(try await reason("near", "gen").contains("REPLICATING, 25%"))
        _ = try x.f.service.storage.write { try $0.updateReplication(pendingRow) }  // back to PENDING for the engine

        try await x.replicate()
        let failed = try await reason("failing", "gen")
        #expect(
            failed.contains("r3") && failed.contains("replication to r3 failed") && failed.contains("RetryReplication"))
        #expect(try await x.list("near")["gen"]?.available == true)
    }
}
