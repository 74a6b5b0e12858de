"""Enum translator: a proto enum as a Swift RawRepresentable enum with `.UNRECOGNIZED`."""


def write_enum(w, e):
    w.doc(e.comment, "The proto enum `%s`." % e.name)
    with w.block("public enum %s: RawRepresentable, CaseIterable, Sendable, Hashable {" % e.local_name):
        w.line("/// Proto enums are 32-bit on the wire.")
        w.line("public typealias RawValue = Int32")
        for name, v, comment in e.cases:
            w.doc(comment, "`%s` = %d." % (v.name, v.number))
            w.line("case %s" % name)
        w.line("/// A value this version of the schema does not know, kept as is.")
        w.line("case UNRECOGNIZED(Int32)")
        w.blank()
        w.line("/// The default value (`%s`)." % e.zero)
        w.line("public init() { self = .%s }" % e.zero)
        w.blank()
        _write_init_raw_value(w, e)
        w.blank()
        _write_raw_value(w, e)
        w.blank()
        w.line("/// Every known value.")
        w.line("public static let allCases: [%s] = [%s]" % (e.local_name, ", ".join("." + c[0] for c in e.cases)))


def _write_init_raw_value(w, e):
    w.line("/// The value for a wire number; unknown numbers become `.UNRECOGNIZED`.")
    with w.block("public init(rawValue: Int32) {"), w.switch("rawValue"):
        for name, v, _ in e.cases:
            w.line("case %d: self = .%s" % (v.number, name))
        w.line("default: self = .UNRECOGNIZED(rawValue)")


def _write_raw_value(w, e):
    w.line("/// The wire number.")
    with w.block("public var rawValue: Int32 {"), w.switch("self"):
        for name, v, _ in e.cases:
            w.line("case .%s: return %d" % (name, v.number))
        w.line("case .UNRECOGNIZED(let value): return value")
