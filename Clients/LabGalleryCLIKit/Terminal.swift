import Foundation

/// The width of the terminal stdout writes to, for live displays that must not wrap.
enum TerminalWidth {
    /// The fallback when neither the terminal nor `COLUMNS` says.
    static let fallback = 80

    /// The columns to draw in: the terminal's (`ioctlColumns`, when positive), else a positive
    /// `COLUMNS` from the environment, else ``fallback``.
    static func resolve(ioctlColumns: Int?, environment: [String: String]) -> Int {
        if let n = ioctlColumns, n > 0 { return n }
        if let text = environment["COLUMNS"], let n = Int(text.trimmingCharacters(in: .whitespaces)), n > 0 {
            return n
        }
        return fallback
    }

    /// The current width (asked on every redraw, so a resized terminal is followed).
    static func current() -> Int {
        var size = winsize()
        let columns = ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 ? Int(size.ws_col) : nil
        return resolve(ioctlColumns: columns, environment: ProcessInfo.processInfo.environment)
    }
}

/// Ctrl-C (SIGINT) or SIGTERM during a live display that hid the cursor: show the cursor again
/// and exit 130 (143 for SIGTERM), as a shell reports a command killed by the signal.
enum InterruptRestoresCursor {
    /// Installs the handlers (the display's command calls this before it hides the cursor).
    /// The handler only calls `write` and `_exit`, which are async-signal-safe.
    static func install() {
        signal(SIGINT) { sig in
            restoreAndExit(sig)
        }
        signal(SIGTERM) { sig in
            restoreAndExit(sig)
        }
    }

    /// Puts the default actions back (the display finished and showed the cursor itself).
    static func uninstall() {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}

/// Shows the cursor, ends the line the interrupt left the cursor on, and exits 128 + `sig`.
private func restoreAndExit(_ sig: Int32) {
    let show: StaticString = "\u{1B}[?25h\n"
    _ = write(STDOUT_FILENO, show.utf8Start, show.utf8CodeUnitCount)
    _exit(128 + sig)
}
