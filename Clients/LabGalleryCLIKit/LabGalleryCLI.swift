import ArgumentParser
import BuildInfo
import Foundation
import LabGalleryClient

/// `labgallery`: the operator CLI of a LabGallery server. The executable's entry point calls
/// ``main()``; everything else (commands, argument parsing, output, prompts) lives in this library.
public struct LabGalleryCLI: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "labgallery",
        abstract: "Operate a LabGallery server: lab accounts, galleries, images, labs, replication, cost.",
        discussion: """
            Connection: --endpoint host:port (or LABGALLERY_ENDPOINT, default 127.0.0.1:50051) and \
            --token, --token-file (or LABGALLERY_TOKEN; when every endpoint is loopback, falling back \
            to ./labgallery-data/admin.token). --tls connects with TLS (--ca-file, and --cert/--key \
            for mTLS); a token is never sent in cleartext to an endpoint that is not loopback unless \
            --insecure says so.

            Several instances: repeat --endpoint (or LABGALLERY_ENDPOINT=h1:p,h2:p). Calls are spread \
            round-robin; one whose instance cannot be reached goes to the next; reads (show, list, \
            status, watch) also move on UNAVAILABLE, writes do not (they may have been applied). TLS \
            and token options apply to every endpoint.

            Global options (--endpoint, --token, --tls, --timeout, -o) go before or after the \
            subcommand: `labgallery --endpoint H:P gallery list` = `labgallery gallery list --endpoint H:P`.

            Names: ids or full resource names. A gallery is `shared` or `galleries/shared`, a lab \
            account `school` or `labAccounts/school`; an image `galleries/G/images/I`, `G/I`, or `I` \
            when the command knows the gallery (--gallery, or the attached gallery of --lab-account); \
            a lab `labAccounts/A/labs/L`, `A/L`, or `L` with --lab-account A.

            Exit codes: 0 success; 1 local failure (unreadable file, bad flag value); 2 replication \
            ended FAILED; 3 not confirmed (declined, or no terminal and no --yes); 10+N the server \
            answered gRPC status N (13 INVALID_ARGUMENT, 15 NOT_FOUND, 16 ALREADY_EXISTS, \
            17 PERMISSION_DENIED, 19 FAILED_PRECONDITION, 22 UNIMPLEMENTED, 24 UNAVAILABLE, \
            26 UNAUTHENTICATED, …); 64 usage error.
            """,
        version: BuildInfo.versionLine(program: "labgallery"),
        subcommands: [
            LabAccountCommand.self, GalleryCommand.self, ImageCommand.self, LabCommand.self,
            ReplicationCommand.self, CostCommand.self,
        ]
    )

    public init() {}

    /// Parses, runs, and maps failures to the documented exit codes.
    public static func main() async {
        do {
            var command = try parse(Array(CommandLine.arguments.dropFirst()))
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if let failure = failure(error) {
                Console.err(failure.message)
                Self.exit(withError: ExitCode(failure.exitCode))
            }
            Self.exit(withError: error)  // help, --version, completion scripts, usage errors (64)
        }
    }

    /// Parses `arguments` (without the program name) as `main` does: the global options may come
    /// before the subcommand too (see ``GlobalOptions``).
    static func parse(_ arguments: [String]) throws -> any ParsableCommand {
        try parseAsRoot(GlobalOptions.hoisted(arguments))
    }

    /// What the CLI prints on stderr and exits with for a failure it reports itself: a server (or
    /// connection) status is `error: CODE: message` and 10 + the code; a ``CLIError`` is
    /// `error: message` and its code. nil for ArgumentParser's own errors (help, usage errors),
    /// which `exit(withError:)` reports.
    static func failure(_ error: any Error) -> (message: String, exitCode: Int32)? {
        switch error {
        case let error as LabGalleryClientError:
            ("error: \(error.code): \(Output.safe(error.message))\n", ExitCodes.status(error.code))
        case let error as CLIError: ("error: \(Output.safe(error.message))\n", error.exitCode)
        default: nil
        }
    }

    /// The exit code of any failure: ``failure(_:)``'s, else ArgumentParser's (64 for usage errors).
    static func exitCode(forFailure error: any Error) -> Int32 {
        failure(error)?.exitCode ?? exitCode(for: error).rawValue
    }
}

/// The exit codes (documented in the root command's help and README).
enum ExitCodes {
    static let localFailure: Int32 = 1
    static let replicationFailed: Int32 = 2
    static let notConfirmed: Int32 = 3
    /// 10 + the gRPC status code, so every status has its own code.
    static func status(_ code: LabGalleryClientError.Code) -> Int32 { 10 + Int32(code.rawValue) }
}

/// A failure of the CLI itself (not a server status).
struct CLIError: Error {
    var message: String
    var exitCode: Int32 = ExitCodes.localFailure
}

/// How to reach the server (every command that talks to one includes these).
struct ConnectionOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Server address host:port, [v6]:port or unix:/path; repeat it for several instances "
                + "(env LABGALLERY_ENDPOINT, a comma-separated list; default 127.0.0.1:50051).",
            valueName: "host:port"))
    var endpoint: [String] = []

    @Option(
        help: "Bearer token (env LABGALLERY_TOKEN; default for a loopback endpoint: ./labgallery-data/admin.token).")
    var token: String?

    @Option(help: ArgumentHelp("Read the bearer token from this file.", valueName: "path"))
    var tokenFile: String?

    @Flag(help: "Connect with TLS, verifying the server's certificate and host name.")
    var tls = false

    @Option(help: ArgumentHelp("With --tls: the PEM CA file to trust (default: the system's).", valueName: "path"))
    var caFile: String?

    @Option(help: ArgumentHelp("With --tls (mTLS): this client's PEM certificate chain.", valueName: "path"))
    var cert: String?

    @Option(help: ArgumentHelp("With --tls (mTLS): the PEM private key of --cert.", valueName: "path"))
    var key: String?

    @Flag(help: "Allow sending the token in cleartext (without --tls) to an endpoint that is not loopback.")
    var insecure = false

    @Option(
        help: ArgumentHelp("Deadline of each call in seconds (streams and uploads have none).", valueName: "seconds"))
    var timeout: Double = 30

    /// The client, from flags, then the environment, then the local defaults.
    func client() throws -> LabGalleryClient {
        try LabGalleryClient(
            configuration: configuration(
                environment: ProcessInfo.processInfo.environment,
                tokenFile: "labgallery-data/admin.token"))
    }

    /// The client's configuration: each setting from its flag (the token: `--token`, then
    /// `--token-file`), else the environment (`LABGALLERY_ENDPOINT`, a comma-separated list;
    /// `LABGALLERY_TOKEN`; empty values count as unset), else the default (`127.0.0.1:50051`; when
    /// every endpoint is loopback, the token in `tokenFile`, if it can be read: the local admin
    /// token never leaves the machine).
    func configuration(environment env: [String: String], tokenFile: String) throws -> LabGalleryClient.Configuration {
        let endpoints = try self.endpoints(environment: env)
        var token = self.token
        if token == nil, let path = self.tokenFile {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw CLIError(message: "--token-file \(path): cannot read the file")
            }
            token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if token?.isEmpty != false { throw CLIError(message: "--token-file \(path): the file is empty") }
        }
        token = token ?? env["LABGALLERY_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if token == nil, endpoints.allSatisfy({ LabGalleryClient.isLoopback(host: $0.host) }),
            let local = try? String(contentsOfFile: tokenFile, encoding: .utf8)
        {
            token = local.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard timeout > 0 else { throw CLIError(message: "--timeout must be positive") }
        if !tls && (caFile != nil || cert != nil || key != nil) {
            throw CLIError(message: "--ca-file, --cert and --key need --tls", exitCode: 64)
        }
        if (cert == nil) != (key == nil) { throw CLIError(message: "--cert and --key go together", exitCode: 64) }
        return .init(
            endpoints: endpoints, token: token, useTLS: tls, defaultTimeout: .milliseconds(Int(timeout * 1000)),
            caFile: caFile, certificateFile: cert, keyFile: key, allowInsecureToken: insecure)
    }

    /// Every `--endpoint` (each may also be a comma list), else `LABGALLERY_ENDPOINT`'s list, else
    /// the default. A malformed entry is `invalidArgument` naming where it came from and which it is.
    func endpoints(environment env: [String: String]) throws -> [Endpoint] {
        let (source, values): (String, [String]) =
            if !endpoint.isEmpty {
                ("--endpoint", endpoint)
            } else if let list = env["LABGALLERY_ENDPOINT"], !list.isEmpty {
                ("LABGALLERY_ENDPOINT", [list])
            } else {
                ("the default", ["127.0.0.1:50051"])
            }
        var endpoints: [Endpoint] = []
        for value in values {
            do {
                endpoints += try Endpoint.list(value)
            } catch {
                throw LabGalleryClientError(error.code, "\(source): \(error.message)")
            }
        }
        return endpoints
    }
}

/// `--output table|json`.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

struct OutputOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "table (for people) or json (stable, snake_case keys as in the proto).")
    var output: OutputFormat = .table
}

/// Unbuffered writes to stdout/stderr (one path for both results and live redraws).
enum Console {
    static func out(_ s: String) { FileHandle.standardOutput.write(Data(s.utf8)) }
    static func err(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
    static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }
    static var stdinIsTerminal: Bool { isatty(STDIN_FILENO) == 1 }
}

// MARK: - Name resolution

enum Names {
    /// An image reference: full name or `G/I` as is; a bare id within `gallery`.
    static func image(_ ref: String, gallery: String?) throws -> String {
        if ref.contains("/") { return ResourceName.image(ref) }
        guard let gallery else {
            throw CLIError(
                message: "image \"\(ref)\": give galleries/G/images/\(ref), G/\(ref), or --gallery G", exitCode: 64)
        }
        return "\(ResourceName.gallery(gallery))/images/\(ref)"
    }

    /// An image reference where bare ids mean the lab account's attached gallery.
    static func image(_ ref: String, labAccount: String, client: LabGalleryClient) async throws -> String {
        if ref.contains("/") { return ResourceName.image(ref) }
        let account = try await client.getLabAccount(labAccount)
        guard let gallery = account.attachedGallery else {
            throw CLIError(
                message: "image \"\(ref)\": \(account.name) has no attached gallery; give the full image name",
                exitCode: 64)
        }
        return "\(gallery)/images/\(ref)"
    }

    /// A lab reference: full name or `A/L` as is; a bare id within `labAccount`.
    static func lab(_ ref: String, labAccount: String?) throws -> String {
        if ref.contains("/") { return ResourceName.lab(ref) }
        guard let labAccount else {
            throw CLIError(
                message: "lab \"\(ref)\": give labAccounts/A/labs/\(ref), A/\(ref), or --lab-account A", exitCode: 64)
        }
        return "\(ResourceName.labAccount(labAccount))/labs/\(ref)"
    }
}
