import Blocking
import Foundation

/// The yes/no question before a destructive step: asked on stderr, answered on stdin. Without a
/// terminal on stdin nobody can answer, so the command refuses (exit 3) unless `--yes` skipped it.
/// Its input and output are injected, so tests drive it without a terminal or a process.
struct ConfirmationPrompt: Sendable {
    /// Whether someone can answer (stdin is a terminal).
    var canAsk: @Sendable () -> Bool
    /// Writes the question (stderr).
    var write: @Sendable (String) -> Void
    /// Reads one answer line; nil at end of input.
    var readAnswer: @Sendable () async throws -> String?

    /// The terminal: stdin and stderr. Waiting for the operator blocks a thread, so the read runs on
    /// `BlockingExecutor`, never on one of the cooperative pool's threads.
    static let console = ConfirmationPrompt(
        canAsk: { Console.stdinIsTerminal },
        write: { Console.err($0) },
        readAnswer: { try await BlockingExecutor.shared.run { readLine() } })

    /// Throws a ``CLIError`` with `refusal` and exit code 3 when nobody can answer.
    func requireAnswerer(_ refusal: String) throws {
        guard canAsk() else { throw CLIError(message: refusal, exitCode: ExitCodes.notConfirmed) }
    }

    /// Asks `question` followed by ` [y/N] ` and returns when the answer is yes; anything else
    /// (including no answer at all) throws a ``CLIError`` with `declined` and exit code 3.
    func ask(_ question: String, declined: String) async throws {
        write(question + " [y/N] ")
        guard Self.isYes(try await readAnswer()) else {
            throw CLIError(message: declined, exitCode: ExitCodes.notConfirmed)
        }
    }

    /// `y` or `yes`, in any case, surrounding spaces ignored; the default (empty, end of input) is no.
    static func isYes(_ answer: String?) -> Bool {
        let answer = answer?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        return answer == "y" || answer == "yes"
    }
}
