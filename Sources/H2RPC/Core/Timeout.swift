/// The `grpc-timeout` header: 1–8 ASCII digits and a unit (H, M, S, m, u, n).
public enum GRPCTimeout {
    /// Parses a header value; nil if malformed.
    public static func parse<Bytes: Collection<UInt8>>(_ value: Bytes) -> Duration? {
        guard value.count >= 2, value.count <= 9 else { return nil }
        var amount: Int64 = 0
        var index = value.startIndex
        for _ in 0..<(value.count - 1) {
            let c = value[index]
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            amount = amount * 10 + Int64(c - UInt8(ascii: "0"))
            index = value.index(after: index)
        }
        switch value[index] {
        case UInt8(ascii: "H"): return .seconds(amount * 3600)
        case UInt8(ascii: "M"): return .seconds(amount * 60)
        case UInt8(ascii: "S"): return .seconds(amount)
        case UInt8(ascii: "m"): return .milliseconds(amount)
        case UInt8(ascii: "u"): return .microseconds(amount)
        case UInt8(ascii: "n"): return .nanoseconds(amount)
        default: return nil
        }
    }

    /// Formats a duration with the finest unit whose amount fits in 8 digits (rounded up,
    /// so a deadline is never shortened on the wire).
    public static func format(_ duration: Duration) -> String {
        let (seconds, attos) = duration.components
        if seconds < 0 || (seconds == 0 && attos <= 0) { return "1n" }
        let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let units: [(Int64, Character)] = [
            (1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"),
            (60_000_000_000, "M"), (3_600_000_000_000, "H"),
        ]
        let totalNanos: Int64 = nanos.overflow ? Int64.max : nanos.partialValue &+ (attos + 999_999_999) / 1_000_000_000
        for (scale, unit) in units {
            let amount = (totalNanos + scale - 1) / scale
            if amount <= 99_999_999 { return "\(amount)\(unit)" }
        }
        return "99999999H"
    }
}
