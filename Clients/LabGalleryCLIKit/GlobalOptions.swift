import ArgumentParser

/// The options every command takes (``ConnectionOptions``, ``OutputOptions``), accepted before the
/// subcommand too: `labgallery --endpoint X gallery list` is `labgallery gallery list --endpoint X`.
///
/// ArgumentParser reads an `@OptionGroup` option only after its own command's name, so
/// ``hoisted(_:)`` rewrites the arguments first: the global options found before the first
/// subcommand move to just after the subcommand path, where they parse as if written there (and an
/// option repeated after the subcommand still wins, being later). A new global option joins by one
/// line in ``table``.
enum GlobalOptions {
    /// One global option: its names, and whether it takes a value.
    struct Spec {
        var names: [String]
        var takesValue: Bool
    }

    /// Every global option. Add a line here when ``ConnectionOptions`` or ``OutputOptions`` gains one.
    static let table: [Spec] = [
        Spec(names: ["--endpoint"], takesValue: true),
        Spec(names: ["--token"], takesValue: true),
        Spec(names: ["--token-file"], takesValue: true),
        Spec(names: ["--tls"], takesValue: false),
        Spec(names: ["--ca-file"], takesValue: true),
        Spec(names: ["--cert"], takesValue: true),
        Spec(names: ["--key"], takesValue: true),
        Spec(names: ["--insecure"], takesValue: false),
        Spec(names: ["--timeout"], takesValue: true),
        Spec(names: ["-o", "--output"], takesValue: true),
    ]

    /// `arguments` (without the program name) with the global options written before the first
    /// subcommand moved to after the subcommand path. `--name value` and `--name=value` both move
    /// (as do `-o value` and `-o=value`); anything else stops the scan (`--help`, `--version`, an
    /// unknown option, `--`), and the arguments are then returned unchanged when no subcommand
    /// follows, for ArgumentParser to report.
    static func hoisted(
        _ arguments: [String], root: any ParsableCommand.Type = LabGalleryCLI.self
    ) -> [String] {
        var moved: [String] = []
        var i = 0
        scan: while i < arguments.count {
            let token = arguments[i]
            let name = token.split(separator: "=", maxSplits: 1).first.map(String.init) ?? token
            guard let spec = table.first(where: { $0.names.contains(name) }) else { break scan }
            if !spec.takesValue {
                guard name == token else { break scan }  // `--tls=x`: ArgumentParser's error to give
                moved.append(token)
                i += 1
            } else if name != token {
                moved.append(token)
                i += 1
            } else {
                guard i + 1 < arguments.count else { break scan }  // the value is missing
                moved += [token, arguments[i + 1]]
                i += 2
            }
        }
        guard !moved.isEmpty else { return arguments }
        // The subcommand path: each name in turn, as long as it names a subcommand.
        var command = root
        var end = i
        while end < arguments.count,
            let sub = command.configuration.subcommands.first(where: { names(of: $0).contains(arguments[end]) })
        {
            command = sub
            end += 1
        }
        guard end > i else { return arguments }
        return Array(arguments[i..<end]) + moved + Array(arguments[end...])
    }

    /// The names a command is called by: its command name and its aliases.
    private static func names(of command: any ParsableCommand.Type) -> [String] {
        [command._commandName] + command.configuration.aliases
    }
}
