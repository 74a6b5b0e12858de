import Blocking
import Foundation
import TestSupport
import Testing

@testable import LabGalleryCore

/// Issue 10: what a hostile caller's input can do to messages, display names, the data
/// directory's modes and the price sheet.
@Suite struct LimitsTests {
    @Test func safeTextEscapesControlsAndCaps() {
        #expect(SafeText.escaped("plain id-1") == "plain id-1")
        #expect(SafeText.escaped("a\nb\rc\td\\e") == "a\\nb\\rc\\td\\\\e")
        #expect(SafeText.escaped("x\u{1b}[31mred\u{7f}\u{9b}") == "x\\u{1b}[31mred\\u{7f}\\u{9b}")
        #expect(SafeText.escaped("\u{202e}evil\u{2028}") == "\\u{202e}evil\\u{2028}")
        #expect(SafeText.escaped("ünïcode ok") == "ünïcode ok")
        let long = SafeText.escaped(String(repeating: "a", count: 4_000_000))
        #expect(long == String(repeating: "a", count: SafeText.inputLimit) + "…")
        #expect(SafeText.quoted("say \"hi\"\n") == "\"say \\\"hi\\\"\\n\"")
        // A whole message keeps its backslashes (its inputs were escaped once, by `quoted`).
        #expect(SafeText.sanitized("a \\\"b\\\"\u{1b}") == "a \\\"b\\\"\\u{1b}")
        #expect(SafeText.sanitized(String(repeating: "m", count: 5000)).count == SafeText.messageLimit + 1)
    }

    @Test(arguments: StorageEngine.allCases) func echoedIdsAreQuotedEscapedAndCapped(engine: StorageEngine) async throws
    {
        let f = try await Fixture(engine: engine)
        let hostile = "x\nFORGED level=critical\u{1b}[2J" + String(repeating: "z", count: 4_000_000)
        let e = await expectError(.invalidArgument, field: "gallery_id") { try await f.gallery(hostile) }
        let message = try #require(e?.message)
        #expect(!message.contains("\n") && !message.contains("\u{1b}"))
        #expect(message.contains("\"x\\nFORGED level=critical\\u{1b}[2J"))
        #expect(message.utf8.count < 1024, "\(message.utf8.count) bytes")
        let name = await expectError(.invalidArgument, field: "name") {
            _ = try await f.service.getGallery(name: "galleries/\u{1b}]0;pwned\u{7}", caller: reader)
        }
        #expect(name?.message.contains("\u{1b}") == false)
        let region = await expectError(.invalidArgument, field: "gallery.region") {
            _ = try await f.service.createGallery(id: "g", displayName: "", region: "\u{1b}[1m", caller: admin)
        }
        #expect(region?.message.contains("\u{1b}") == false)
    }

    @Test(arguments: StorageEngine.allCases) func displayNamesAreCapped(engine: StorageEngine) async throws {
        let f = try await Fixture(engine: engine)
        let ok = String(repeating: "é", count: DisplayName.maxLength)
        _ = try await f.service.createGallery(id: "g1", displayName: ok, region: "eastus", caller: admin)
        let tooLong = ok + "e"
        await expectError(.invalidArgument, field: "gallery.display_name", contains: ["257", "256"]) {
            _ = try await f.service.createGallery(id: "g2", displayName: tooLong, region: "eastus", caller: admin)
        }
        await expectError(.invalidArgument, field: "lab_account.display_name", contains: ["256"]) {
            _ = try await f.service.createLabAccount(id: "a", displayName: tooLong, region: "eastus", caller: admin)
        }
        await expectError(.invalidArgument, field: "create_gallery.display_name", contains: ["256"]) {
            _ = try await f.service.createLabAccount(
                id: "a", displayName: "", region: "eastus", gallery: .create(galleryID: "g3", displayName: tooLong),
                caller: admin)
        }
        await expectError(.invalidArgument, field: "header.display_name", contains: ["256"]) {
            _ = try await f.service.beginUpload(
                ImageUploadHeader(
                    gallery: "galleries/g1", imageID: "i", displayName: tooLong, osType: .linux,
                    osState: .generalized), caller: admin)
        }
        try await f.account("a1", gallery: .attach(gallery: "galleries/g1"))
        try await f.upload("galleries/g1", "img")
        await expectError(.invalidArgument, field: "lab.display_name", contains: ["256"]) {
            _ = try await f.service.createLab(
                labAccount: "labAccounts/a1", labID: "l1", displayName: tooLong,
                templateImage: "galleries/g1/images/img", caller: educator)
        }
    }

    @Test func dataDirectoryAndDatabaseArePrivateWhateverTheUmask() async throws {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("lgmode-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: parent) }
        let dir = parent.appendingPathComponent("data")
        let old = umask(0)  // the loosest umask: 0755 / 0644 would show as such
        defer { umask(old) }
        let service = try await BlockingExecutor.shared.run { () throws(LabGalleryError) in
            try LabGalleryService.open(dataDirectory: dir)
        }
        _ = try await service.createGallery(id: "g", displayName: "", region: "eastus", caller: admin)
        func mode(_ url: URL) throws -> Int {
            try #require(FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? Int)
        }
        #expect(try mode(dir) == 0o700)
        let db = DataLayout(root: dir).databaseURL
        #expect(try mode(db) == 0o600)
        let wal = URL(fileURLWithPath: db.path + "-wal")
        if FileManager.default.fileExists(atPath: wal.path) { #expect(try mode(wal) == 0o600) }
    }

    @Test func priceSheetValuesThatWouldOverflowAreRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lgprice-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func load(_ json: String) throws(LabGalleryError) -> PriceSheet {
            let url = dir.appendingPathComponent("p.json")
            try? Data(json.utf8).write(to: url)
            return try PriceSheet(contentsOf: url)
        }
        #expect(throws: LabGalleryError.self) {
            _ = try load(#"{"storagePerGiBMonth": "999999999999999999999999999999999999999"}"#)
        }
        #expect(throws: LabGalleryError.self) {
            _ = try load(#"{"egressPerGiB": "100000000000000000000000000000"}"#)
        }
        do {
            _ = try load(#"{"regions": {"eastus": "1000000.000000001"}}"#)
            Issue.record("a price above the maximum was accepted")
        } catch {
            #expect(error.message.contains("largest price"), "\(error.message)")
        }
        #expect(try load(#"{"storagePerGiBMonth": "1000000"}"#).storagePerGiBMonth == PriceSheet.maxPrice)
        // The largest price times the largest size does not trap.
        #expect(PriceSheet.maxPrice.perGiB(times: Int64.max) > .zero)
    }

    @Test(arguments: StorageEngine.allCases) func listLabAccountImagesPagesLikeEveryList(engine: StorageEngine)
        async throws
    {
        let f = try await Fixture(engine: engine)
        try await f.gallery("g1")
        try await f.account("a1", gallery: .attach(gallery: "galleries/g1"))
        for id in ["i1", "i2", "i3"] { try await f.upload("galleries/g1", id) }
        let first = try await f.service.listLabAccountImages(
            labAccount: "labAccounts/a1", page: PageRequest(size: 2), caller: reader)
        #expect(first.items.map(\.image.name) == ["galleries/g1/images/i1", "galleries/g1/images/i2"])
        #expect(!first.nextPageToken.isEmpty)
        let second = try await f.service.listLabAccountImages(
            labAccount: "labAccounts/a1", page: PageRequest(size: 2, token: first.nextPageToken), caller: reader)
        #expect(second.items.map(\.image.name) == ["galleries/g1/images/i3"] && second.nextPageToken.isEmpty)
        await expectError(.invalidArgument, field: "page_token") {
            _ = try await f.service.listLabAccountImages(
                labAccount: "labAccounts/a1", page: PageRequest(size: 2, token: "bogus"), caller: reader)
        }
        // The unpaged form (and so the client library and CLI) follows the pages.
        #expect(try await f.service.listLabAccountImages(labAccount: "labAccounts/a1", caller: reader).count == 3)
    }
}
