import Foundation
import LabGalleryClient
import Testing

@testable import LabGalleryCLIKit

/// The CLI's JSON output for representative values, byte for byte: these literals are the shape
/// scripts depend on. They were captured from the `Codable` conformances the client library's
/// types carried before the CLI owned its JSON shape (commit "Test: the CLI's JSON output for
/// every client model type…" ran these same literals against them), so passing here proves the
/// output did not change when the shape moved into `LabGalleryCLIKit`.
@Suite("labgallery JSON output shape")
struct JSONOutputTests {
    @Test("every model type, pretty (as commands print them) and compact (as watch -o json does)")
    func models() throws {
        for (name, value) in JSONGolden.samples {
            #expect(try Output.json(value, pretty: true) == JSONGolden.expected[name], "\(name)")
        }
        #expect(try Output.json(ReplicationStatusJSON(JSONGolden.status), pretty: false) == JSONGolden.compactStatus)
        #expect(try Output.json(ReplicationStatusJSON(JSONGolden.deleted), pretty: false) == JSONGolden.compactDeleted)
    }

    @Test("what a command prints: the document and a newline")
    func emitted() throws {
        #expect(
            try Output.render(ImageJSON(JSONGolden.uploaded), .json) { "" } == JSONGolden.expected["uploaded"]! + "\n")
        #expect(
            try Output.render(GalleryCostJSON(JSONGolden.cost), .json) { "" } == JSONGolden.expected["cost"]! + "\n")
    }

    /// `{"key" : [ elements ]}` as the pretty encoder lays it out.
    func envelope(_ key: String, _ elements: [String]) -> String {
        let body =
            elements.isEmpty
            ? ""
            : elements.map {
                $0.split(separator: "\n", omittingEmptySubsequences: false)
                    .map { $0.isEmpty ? "" : "    " + $0 }.joined(separator: "\n")
            }.joined(separator: ",\n")
        return "{\n  \"\(key)\" : [\n\(body)\n  ]\n}"
    }

    @Test("list commands wrap their items like the List responses; deletes name what went")
    func envelopes() throws {
        let e = JSONGolden.expected
        #expect(
            try Output.json(LabAccountList([JSONGolden.attached, JSONGolden.detached]), pretty: true)
                == envelope("lab_accounts", [e["attached"]!, e["detached"]!]))
        #expect(
            try Output.json(GalleryList([JSONGolden.gallery]), pretty: true) == envelope("galleries", [e["gallery"]!]))
        #expect(try Output.json(GalleryList([]), pretty: true) == envelope("galleries", []))
        #expect(
            try Output.json(ImageList([JSONGolden.uploaded, JSONGolden.saved]), pretty: true)
                == envelope("images", [e["uploaded"]!, e["saved"]!]))
        #expect(
            try Output.json(LabAccountImageList([JSONGolden.available, JSONGolden.unavailable]), pretty: true)
                == envelope("images", [e["available"]!, e["unavailable"]!]))
        #expect(try Output.json(LabList([JSONGolden.lab]), pretty: true) == envelope("labs", [e["lab"]!]))
        #expect(
            try Output.json(RoleAssignmentList([JSONGolden.role]), pretty: true) == #"""
                {
                  "role_assignments" : [
                    {
                      "principal" : "lab-services",
                      "role" : "Contributor"
                    }
                  ]
                }
                """#)
        #expect(
            try Output.json(Deleted(deleted: "galleries/shared/images/ubuntu"), pretty: true) == #"""
                {
                  "deleted" : "galleries/shared/images/ubuntu"
                }
                """#)
    }

    @Test("the output reads back into the same values (what the end-to-end tests decode)")
    func decodes() throws {
        func back<T: Codable & Equatable>(_ value: T, _ name: String) throws {
            let decoded = try JSONDecoder().decode(T.self, from: Data(try #require(JSONGolden.expected[name]).utf8))
            #expect(decoded == value, "\(name)")
        }
        try back(LabAccountJSON(JSONGolden.attached), "attached")
        try back(LabAccountJSON(JSONGolden.detached), "detached")
        try back(GalleryJSON(JSONGolden.gallery), "gallery")
        try back(ImageJSON(JSONGolden.saved), "saved")
        try back(LabAccountImageJSON(JSONGolden.unavailable), "unavailable")
        try back(LabJSON(JSONGolden.lab), "lab")
        try back(RoleAssignmentJSON(JSONGolden.role), "role")
        try back(ReplicationStatusJSON(JSONGolden.status), "status")
        try back(GalleryCostJSON(JSONGolden.cost), "cost")
    }
}

enum JSONGolden {
    static let attached = LabAccount(
        name: "labAccounts/school", displayName: "School \"A\" — café", region: "westus2",
        attachedGallery: "galleries/shared")
    static let detached = LabAccount(
        name: "labAccounts/school", displayName: "", region: "westus2", attachedGallery: nil)
    static let gallery = Gallery(
        name: "galleries/shared", displayName: "Shared images", region: "westus2", geography: "United States")
    static let uploaded = Image(
        name: "galleries/shared/images/ubuntu", displayName: "Ubuntu 22.04", osType: .linux, osState: .generalized,
        source: .uploaded, sourceLab: nil, sizeBytes: 68_719_476_736,
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", region: "westus2", author: "admin")
    static let saved = Image(
        name: "galleries/shared/images/bio-v2", displayName: "", osType: .windows, osState: .specialized,
        source: .savedFromLab, sourceLab: "labAccounts/school/labs/bio", sizeBytes: 0, sha256: "", region: "westus2",
        author: "alice")
    static let available = LabAccountImage(image: uploaded, enabled: true)
    static let unavailable = LabAccountImage(
        image: saved, enabled: false, available: false,
        unavailableReason: "image galleries/shared/images/bio-v2 is disabled for labAccounts/school: SetImagesEnabled")
    static let lab = Lab(
        name: "labAccounts/school/labs/bio", displayName: "Biology 101", templateImage: "galleries/shared/images/ubuntu"
    )
    static let role = RoleAssignment(principal: "lab-services", role: "Contributor")
    static let replicating = RegionReplication(
        region: "eastus", state: .replicating, bytesCopied: 1_048_576, bytesTotal: 3_145_728,
        progressPercent: 33.333333333333336, error: nil, attempts: 1)
    static let failed = RegionReplication(
        region: "westus", state: .failed, bytesCopied: 0, bytesTotal: 3_145_728,
        progressPercent: 0, error: "region westus unreachable", attempts: 5)
    static let completed = RegionReplication(
        region: "centralus", state: .completed, bytesCopied: 3_145_728, bytesTotal: 3_145_728,
        progressPercent: 100, error: nil, attempts: 2)
    static let status = ReplicationStatus(
        image: "galleries/shared/images/ubuntu", aggregatedState: .replicating,
        regions: [replicating, failed, completed])
    static let deleted = ReplicationStatus(
        image: "galleries/shared/images/old", aggregatedState: .unspecified, regions: [], deleted: true)
    static let cost = GalleryCost(
        gallery: "galleries/shared", currency: "USD",
        lines: [
            CostLine(
                image: "galleries/shared/images/ubuntu", region: "westus2", sizeBytes: 68_719_476_736,
                monthlyCost: "3.08"),
            CostLine(
                image: "galleries/shared/images/ubuntu", region: "eastus", sizeBytes: 68_719_476_736,
                monthlyCost: "3.08"),
        ],
        monthlyTotal: "6.16", oneTimeReplicationEgress: "1.28", billedBytes: 137_438_953_472,
        storedBytes: 68_719_476_736)
    static let emptyCost = GalleryCost(
        gallery: "galleries/empty", currency: "USD", lines: [], monthlyTotal: "0",
        oneTimeReplicationEgress: "")

    /// Each sample as the CLI encodes it.
    static let samples: [(String, any Encodable & Sendable)] = [
        ("attached", LabAccountJSON(attached)), ("detached", LabAccountJSON(detached)),
        ("gallery", GalleryJSON(gallery)),
        ("uploaded", ImageJSON(uploaded)), ("saved", ImageJSON(saved)),
        ("available", LabAccountImageJSON(available)), ("unavailable", LabAccountImageJSON(unavailable)),
        ("lab", LabJSON(lab)),
        ("role", RoleAssignmentJSON(role)), ("status", ReplicationStatusJSON(status)),
        ("deleted", ReplicationStatusJSON(deleted)),
        ("cost", GalleryCostJSON(cost)), ("emptyCost", GalleryCostJSON(emptyCost)),
    ]

    /// What the CLI prints for each sample (captured from the encoding the client library's
    /// types carried before the CLI owned its JSON shape).
    static let expected: [String: String] = [
        "attached": #"""
        {
          "attached_gallery" : "galleries/shared",
          "display_name" : "School \"A\" — café",
          "name" : "labAccounts/school",
          "region" : "westus2"
        }
        """#,
        "detached": #"""
        {
          "attached_gallery" : null,
          "display_name" : "",
          "name" : "labAccounts/school",
          "region" : "westus2"
        }
        """#,
        "gallery": #"""
        {
          "display_name" : "Shared images",
          "geography" : "United States",
          "name" : "galleries/shared",
          "region" : "westus2"
        }
        """#,
        "uploaded": #"""
        {
          "author" : "admin",
          "display_name" : "Ubuntu 22.04",
          "name" : "galleries/shared/images/ubuntu",
          "os_state" : "GENERALIZED",
          "os_type" : "LINUX",
          "region" : "westus2",
          "sha256" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
          "size_bytes" : 68719476736,
          "source" : "UPLOADED",
          "source_lab" : null
        }
        """#,
        "saved": #"""
        {
          "author" : "alice",
          "display_name" : "",
          "name" : "galleries/shared/images/bio-v2",
          "os_state" : "SPECIALIZED",
          "os_type" : "WINDOWS",
          "region" : "westus2",
          "sha256" : "",
          "size_bytes" : 0,
          "source" : "SAVED_FROM_LAB",
          "source_lab" : "labAccounts/school/labs/bio"
        }
        """#,
        "available": #"""
        {
          "available" : true,
          "enabled" : true,
          "image" : {
            "author" : "admin",
            "display_name" : "Ubuntu 22.04",
            "name" : "galleries/shared/images/ubuntu",
            "os_state" : "GENERALIZED",
            "os_type" : "LINUX",
            "region" : "westus2",
            "sha256" : "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "size_bytes" : 68719476736,
            "source" : "UPLOADED",
            "source_lab" : null
          },
          "unavailable_reason" : null
        }
        """#,
        "unavailable": #"""
        {
          "available" : false,
          "enabled" : false,
          "image" : {
            "author" : "alice",
            "display_name" : "",
            "name" : "galleries/shared/images/bio-v2",
            "os_state" : "SPECIALIZED",
            "os_type" : "WINDOWS",
            "region" : "westus2",
            "sha256" : "",
            "size_bytes" : 0,
            "source" : "SAVED_FROM_LAB",
            "source_lab" : "labAccounts/school/labs/bio"
          },
          "unavailable_reason" : "image galleries/shared/images/bio-v2 is disabled for labAccounts/school: SetImagesEnabled"
        }
        """#,
        "lab": #"""
        {
          "display_name" : "Biology 101",
          "name" : "labAccounts/school/labs/bio",
          "template_image" : "galleries/shared/images/ubuntu"
        }
        """#,
        "role": #"""
        {
          "principal" : "lab-services",
          "role" : "Contributor"
        }
        """#,
        "status": #"""
        {
          "aggregated_state" : "REPLICATING",
          "deleted" : false,
          "image" : "galleries/shared/images/ubuntu",
          "regions" : [
            {
              "attempts" : 1,
              "bytes_copied" : 1048576,
              "bytes_total" : 3145728,
              "error" : null,
              "progress_percent" : 33.333333333333336,
              "region" : "eastus",
              "state" : "REPLICATING"
            },
            {
              "attempts" : 5,
              "bytes_copied" : 0,
              "bytes_total" : 3145728,
              "error" : "region westus unreachable",
              "progress_percent" : 0,
              "region" : "westus",
              "state" : "FAILED"
            },
            {
              "attempts" : 2,
              "bytes_copied" : 3145728,
              "bytes_total" : 3145728,
              "error" : null,
              "progress_percent" : 100,
              "region" : "centralus",
              "state" : "COMPLETED"
            }
          ]
        }
        """#,
        "deleted": #"""
        {
          "aggregated_state" : "REPLICATION_STATE_UNSPECIFIED",
          "deleted" : true,
          "image" : "galleries/shared/images/old",
          "regions" : [

          ]
        }
        """#,
        "cost": #"""
        {
          "billed_bytes" : 137438953472,
          "currency" : "USD",
          "gallery" : "galleries/shared",
          "lines" : [
            {
              "image" : "galleries/shared/images/ubuntu",
              "monthly_cost" : "3.08",
              "region" : "westus2",
              "size_bytes" : 68719476736
            },
            {
              "image" : "galleries/shared/images/ubuntu",
              "monthly_cost" : "3.08",
              "region" : "eastus",
              "size_bytes" : 68719476736
            }
          ],
          "monthly_total" : "6.16",
          "one_time_replication_egress" : "1.28",
          "stored_bytes" : 68719476736
        }
        """#,
        "emptyCost": #"""
        {
          "billed_bytes" : 0,
          "currency" : "USD",
          "gallery" : "galleries/empty",
          "lines" : [

          ],
          "monthly_total" : "0",
          "one_time_replication_egress" : "",
          "stored_bytes" : 0
        }
        """#,
    ]

    /// `replication watch -o json`: one compact document per line.

    static let compactStatus =
        #"{"aggregated_state":"REPLICATING","deleted":false,"image":"galleries/shared/images/ubuntu","regions":[{"attempts":1,"bytes_copied":1048576,"bytes_total":3145728,"error":null,"progress_percent":33.333333333333336,"region":"eastus","state":"REPLICATING"},{"attempts":5,"bytes_copied":0,"bytes_total":3145728,"error":"region westus unreachable","progress_percent":0,"region":"westus","state":"FAILED"},{"attempts":2,"bytes_copied":3145728,"bytes_total":3145728,"error":null,"progress_percent":100,"region":"centralus","state":"COMPLETED"}]}"#

    static let compactDeleted =
        #"{"aggregated_state":"REPLICATION_STATE_UNSPECIFIED","deleted":true,"image":"galleries/shared/images/old","regions":[]}"#
}
