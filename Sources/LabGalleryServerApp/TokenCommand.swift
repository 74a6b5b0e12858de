import ArgumentParser
import Foundation
import LabGalleryCore
import LabGalleryServer
import Logging

/// `labgallery-server token create|list|revoke`: API token management on the data directory's
/// SQLite database, or with `--database URL` on the PostgreSQL database every instance shares
/// (a token created there works on every instance at once).
///
/// Safe next to a running server (SQLite serializes writers); startup file recovery is not run.
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Create, list and revoke API tokens.",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    /// Opens the core on the data directory; errors become a message and exit code 1.
    static func open(_ dataDir: DataDirectoryOption, _ database: DatabaseOption) throws -> LabGalleryService {
        do {
            return try LabGalleryService.open(
                dataDirectory: dataDir.url, database: database.url, poolSize: database.databasePoolSize)
        } catch {
            throw fail(error)
        }
    }

    static func fail(_ error: LabGalleryError) -> ExitCode {
        FileHandle.standardError.write(Data("labgallery-server: \(error.message)\n".utf8))
        return .failure
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token; prints it once on stdout (only its hash is stored).")

        @Option(help: "Principal the token authenticates as (recorded e.g. as image author).")
        var principal: String

        @Option(help: "Role: admin, educator or reader.")
        var role: Role

        @OptionGroup var dataDir: DataDirectoryOption

        @OptionGroup var database: DatabaseOption

        func run() async throws {
            let core = try TokenCommand.open(dataDir, database)
            do {
                let created = try await core.createToken(principal: principal, role: role)
                print(created.plaintext)
                FileHandle.standardError.write(
                    Data("created token \(created.info.id) for \(principal) (\(role.rawValue))\n".utf8))
            } catch {
                throw TokenCommand.fail(error)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List tokens: id, principal, role, created, revoked (never the token values).")

        @OptionGroup var dataDir: DataDirectoryOption

        @OptionGroup var database: DatabaseOption

        func run() async throws {
            let core = try TokenCommand.open(dataDir, database)
            let tokens: [TokenInfo]
            do { tokens = try await core.listTokens() } catch { throw TokenCommand.fail(error) }
            let rows =
                [["ID", "PRINCIPAL", "ROLE", "CREATED", "REVOKED"]]
                + tokens.map {
                    [$0.id, $0.principal, $0.role.rawValue, $0.createdAt.ISO8601Format(), $0.revoked ? "yes" : "no"]
                }
            let widths = (0..<5).map { column in rows.map { $0[column].count }.max() ?? 0 }
            for row in rows {
                let cells = row.enumerated().map { i, cell in
                    i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                }
                print(cells.joined(separator: "  "))
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by id (see `token list`).")

        @Argument(help: "The token id, e.g. tok-0123456789abcdef.")
        var id: String

        @OptionGroup var dataDir: DataDirectoryOption

        @OptionGroup var database: DatabaseOption

        func run() async throws {
            let core = try TokenCommand.open(dataDir, database)
            do { try await core.revokeToken(id: id) } catch { throw TokenCommand.fail(error) }
            print("revoked \(id)")
        }
    }
}
