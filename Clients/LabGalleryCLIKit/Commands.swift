import ArgumentParser
import Foundation
import LabGalleryClient

// MARK: - lab-account

struct LabAccountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab-account", abstract: "Create, list, show and delete lab accounts.",
        subcommands: [Create.self, List.self, Show.self, Delete.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a lab account, optionally creating (--new-gallery) or attaching (--gallery) a gallery.")
        @Argument(help: "The lab account id, e.g. school.") var name: String
        @Option(help: "The region its labs run in, e.g. westus2.") var region: String
        @Option(name: .customLong("new-gallery"), help: "Create this gallery in the account's region and attach it.")
        var newGallery: String?
        @Option(help: "Attach this existing gallery.") var gallery: String?
        @Option(help: "A human-readable name.") var displayName = ""
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func validate() throws {
            if newGallery != nil && gallery != nil {
                throw ValidationError("--new-gallery and --gallery exclude each other")
            }
        }

        func run() async throws {
            let setup: LabGalleryClient.GallerySetup? =
                newGallery.map { .createNew(id: $0) } ?? gallery.map { .attach($0) }
            let id = name.hasPrefix("labAccounts/") ? String(name.dropFirst("labAccounts/".count)) : name
            let account = try await connection.client().createLabAccount(
                id: id, displayName: displayName, region: region, gallery: setup)
            try Output.emit(LabAccountJSON(account), output.output) { Output.fields(account.fields) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List lab accounts.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let accounts = try await connection.client().allLabAccounts()
            try Output.emit(LabAccountList(accounts), output.output) {
                Output.table(LabAccount.headers, accounts.map(\.row))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a lab account.")
        @Argument(help: "school or labAccounts/school.") var name: String
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let account = try await connection.client().getLabAccount(name)
            try Output.emit(LabAccountJSON(account), output.output) { Output.fields(account.fields) }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a lab account.")
        @Argument(help: "school or labAccounts/school.") var name: String
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            try await connection.client().deleteLabAccount(name)
            let full = ResourceName.labAccount(name)
            try Output.emit(Deleted(deleted: full), output.output) { "deleted \(full)\n" }
        }
    }
}

// MARK: - gallery

struct GalleryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gallery",
        abstract: "Create, list, show, delete, attach and detach galleries; list their role assignments.",
        subcommands: [Create.self, List.self, Show.self, Delete.self, Attach.self, Detach.self, Roles.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a gallery (outside any lab account).")
        @Argument(help: "The gallery id, e.g. shared.") var name: String
        @Option(help: "The home region, e.g. westus2.") var region: String
        @Option(help: "A human-readable name.") var displayName = ""
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let id = name.hasPrefix("galleries/") ? String(name.dropFirst("galleries/".count)) : name
            let gallery = try await connection.client().createGallery(id: id, displayName: displayName, region: region)
            try Output.emit(GalleryJSON(gallery), output.output) { Output.fields(gallery.fields) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List galleries.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let galleries = try await connection.client().allGalleries()
            try Output.emit(GalleryList(galleries), output.output) {
                Output.table(Gallery.headers, galleries.map(\.row))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a gallery.")
        @Argument(help: "shared or galleries/shared.") var name: String
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let gallery = try await connection.client().getGallery(name)
            try Output.emit(GalleryJSON(gallery), output.output) { Output.fields(gallery.fields) }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a gallery (refused while attached).")
        @Argument(help: "shared or galleries/shared.") var name: String
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            try await connection.client().deleteGallery(name)
            let full = ResourceName.gallery(name)
            try Output.emit(Deleted(deleted: full), output.output) { "deleted \(full)\n" }
        }
    }

    struct Attach: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Attach a gallery to a lab account (grants lab-services Contributor on it).")
        @Argument(help: "shared or galleries/shared.") var gallery: String
        @Option(help: "The lab account.") var labAccount: String
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            do {
                let account = try await connection.client().attachGallery(gallery, to: labAccount)
                try Output.emit(LabAccountJSON(account), output.output) { Output.fields(account.fields) }
            } catch let error as LabGalleryClientError where error.code == .failedPrecondition {
                // The server names the rule; name the command that fixes it.
                Console.err(
                    "hint: detach the current gallery first: labgallery gallery detach --lab-account \(labAccount)\n")
                throw error
            }
        }
    }

    struct Detach: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Detach the gallery of a lab account (asks for confirmation unless --yes).",
            discussion: "Without a terminal on stdin the command refuses unless --yes is given (exit code 3). "
                + "Only the gallery shown at the prompt is detached: if another was attached meanwhile, the server refuses (exit code 19)."
        )
        @Option(help: "The lab account.") var labAccount: String
        @Flag(name: [.short, .long], help: "Do not ask for confirmation.") var yes = false
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws { try await run(confirmation: .console) }

        /// Detaches, asking `confirmation` first unless `--yes`.
        func run(confirmation: ConfirmationPrompt) async throws {
            let client = try connection.client()
            var confirmed: String?
            if !yes {
                try confirmation.requireAnswerer(
                    "refusing to detach without confirmation: stdin is not a terminal; pass --yes")
                let account = try await client.getLabAccount(labAccount)
                guard let gallery = account.attachedGallery else {
                    throw CLIError(
                        message: "\(account.name) has no attached gallery",
                        exitCode: ExitCodes.status(.failedPrecondition))
                }
                try await confirmation.ask(
                    "Detach \(gallery) from \(account.name)? Its images become unavailable to the account's new labs.",
                    declined: "not detached")
                confirmed = gallery
            }
            // Name the confirmed gallery: if another was attached meanwhile, the server refuses
            // (FAILED_PRECONDITION) instead of detaching what the operator did not confirm.
            let account = try await client.detachGallery(from: labAccount, confirm: true, gallery: confirmed)
            try Output.emit(LabAccountJSON(account), output.output) { Output.fields(account.fields) }
        }
    }

    struct Roles: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the role assignments on a gallery.")
        @Argument(help: "shared or galleries/shared.") var gallery: String
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let roles = try await connection.client().listRoleAssignments(gallery: gallery)
            try Output.emit(RoleAssignmentList(roles), output.output) {
                Output.table(["PRINCIPAL", "ROLE"], roles.map { [$0.principal, $0.role] })
            }
        }
    }
}

// MARK: - lab

struct LabCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab", abstract: "Create, list, show and delete labs; save a lab's template as an image.",
        subcommands: [Create.self, List.self, Show.self, Delete.self, SaveImage.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a lab from a template image of the account's attached gallery (it must be enabled).")
        @Argument(help: "The lab id, e.g. biology-101.") var name: String
        @Option(help: "The lab account.") var labAccount: String
        @Option(help: "The template image (a bare id means the account's attached gallery).") var template: String
        @Option(help: "A human-readable name.") var displayName = ""
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let client = try connection.client()
            let image = try await Names.image(template, labAccount: labAccount, client: client)
            let lab = try await client.createLab(
                labAccount: labAccount, id: name, displayName: displayName, templateImage: image)
            try Output.emit(LabJSON(lab), output.output) { Output.fields(lab.fields) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the labs of a lab account.")
        @Option(help: "The lab account.") var labAccount: String
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let labs = try await connection.client().allLabs(labAccount: labAccount)
            try Output.emit(LabList(labs), output.output) { Output.table(Lab.headers, labs.map(\.row)) }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a lab.")
        @Argument(help: "labAccounts/A/labs/L, A/L, or L with --lab-account.") var name: String
        @Option(help: "The lab account (for a bare lab id).") var labAccount: String?
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let lab = try await connection.client().getLab(try Names.lab(name, labAccount: labAccount))
            try Output.emit(LabJSON(lab), output.output) { Output.fields(lab.fields) }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a lab.")
        @Argument(help: "labAccounts/A/labs/L, A/L, or L with --lab-account.") var name: String
        @Option(help: "The lab account (for a bare lab id).") var labAccount: String?
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let full = try Names.lab(name, labAccount: labAccount)
            try await connection.client().deleteLab(full)
            try Output.emit(Deleted(deleted: full), output.output) { "deleted \(full)\n" }
        }
    }

    struct SaveImage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "save-image",
            abstract: "Save the lab's template as a SPECIALIZED image in the account's attached gallery.")
        @Argument(help: "labAccounts/A/labs/L, A/L, or L with --lab-account.") var lab: String
        @Option(help: "The new image's id.") var imageId: String
        @Option(help: "The lab account (for a bare lab id).") var labAccount: String?
        @Option(help: "A human-readable name.") var displayName = ""
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            let image = try await connection.client().saveLabTemplateImage(
                lab: try Names.lab(lab, labAccount: labAccount), imageID: imageId, displayName: displayName)
            try Output.emit(ImageJSON(image), output.output) { Output.fields(image.fields) }
        }
    }
}

// MARK: - cost

struct CostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cost", abstract: "Show a gallery's monthly storage cost: one line per image replica.")
    @Argument(help: "shared or galleries/shared.") var gallery: String
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    func run() async throws {
        let cost = try await connection.client().getGalleryCost(gallery: gallery)
        try Output.emit(GalleryCostJSON(cost), output.output) {
            var text = "gallery: \(cost.gallery)\n"
            text += Output.table(
                ["IMAGE", "REGION", "SIZE", "MONTHLY (\(cost.currency))"],
                cost.lines.map { [$0.image, $0.region, Output.bytes($0.sizeBytes), $0.monthlyCost] })
            text += "monthly total: \(cost.monthlyTotal) \(cost.currency)\n"
            if !cost.oneTimeReplicationEgress.isEmpty {
                text += "one-time replication egress: \(cost.oneTimeReplicationEgress) \(cost.currency)\n"
            }
            return text
        }
    }
}
