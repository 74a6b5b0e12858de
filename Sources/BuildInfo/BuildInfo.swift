/// What `--version` prints: the release version (set here, the one place) and the git commit the
/// binary was built from (written at build time by `BuildCommitPlugin`; `unknown` when built
/// outside a git checkout).
public enum BuildInfo {
    /// The release version.
    public static let version = "0.11.0"

    /// The short git commit of the build, or `unknown`.
    public static let commit = buildCommit

    /// `<program> <version> (commit <commit>)`, the `--version` line.
    public static func versionLine(program: String) -> String {
        "\(program) \(version) (commit \(commit))"
    }
}
