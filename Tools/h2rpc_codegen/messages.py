"""Message translator: a proto message as a Swift value type bridged to protobuf-c."""

from . import cvalues
from .enums import write_enum
from .model import Oneof


def write_message(w, m):
    w.doc(m.comment, "The proto message `%s`." % m.full_name)
    with w.block("public struct %s: RPCMessage, Sendable, Hashable {" % m.local_name):
        _write_properties(w, m)
        w.blank()
        _write_oneof_enums(w, m)
        _write_nested_types(w, m)
        _write_initializers(w, m)
        _write_decode(w, m)
        if m.bytes_fields:
            _write_single_bytes_field(w, m)
        _write_serialized_bytes(w, m)
        _write_serialize_into(w, m)
        _write_from_c(w, m)
        _write_fill_c(w, m)


# ---- declarations ------------------------------------------------------------------------

def _write_properties(w, m):
    for x in m.members:
        if isinstance(x, Oneof):
            w.doc(x.comment, "The oneof `%s`; nil when no member is set." % x.name)
        else:
            w.doc(x.comment, "Field `%s` = %d." % (x.name, x.number))
        if isinstance(x, Oneof) or not x.boxed:
            w.line("public var %s: %s = %s" % (x.swift, x.swift_type, _initial(x)))
        else:
            _write_boxed_property(w, x)
    w.line("/// Fields this version of the schema does not know, in their wire form; decoding keeps")
    w.line("/// them and encoding writes them back.")
    w.line("public var unknownFields: [UInt8] = []")


def _write_boxed_property(w, f):
    """A field whose type contains this message: stored in a box (a struct cannot hold itself)."""
    with w.block("public var %s: %s {" % (f.swift, f.swift_type)):
        w.line("get { _%s?.value }" % f.param)
        w.line("set { _%s = newValue.map { ProtobufCBox($0) } }" % f.param)
    w.line("private var _%s: ProtobufCBox<%s>? = nil" % (f.param, f.base))


def _initial(x):
    return "nil" if isinstance(x, Oneof) else x.initial


def _write_oneof_enums(w, m):
    for o in m.oneofs:
        w.line("/// The members of the oneof `%s`." % o.name)
        indirect = "indirect " if o.indirect else ""
        with w.block("public %senum %s: Sendable, Hashable {" % (indirect, o.enum_name)):
            for f in o.fields:
                w.doc(f.comment, "Field `%s` = %d." % (f.name, f.number))
                w.line("case %s(%s)" % (f.swift, f.base))
        w.blank()


def _write_nested_types(w, m):
    for e in m.enums:
        write_enum(w, e)
        w.blank()
    for nested in m.messages:
        write_message(w, nested)
        w.blank()


def _write_initializers(w, m):
    w.line("/// The default message: every field at its default.")
    w.line("public init() {}")
    w.blank()
    if not m.members:
        return
    params = ["%s: %s = %s" % (x.param, x.swift_type, _initial(x)) for x in m.members]
    w.line("/// Creates a message from field values (omitted fields keep their defaults).")
    w.line("public init(")
    with w.indented():
        w.lines(p + ("," if i < len(params) - 1 else "") for i, p in enumerate(params))
    with w.block(") {"):
        w.lines("self.%s = %s" % (x.swift, x.swift) for x in m.members)
    w.blank()


# ---- RPCMessage --------------------------------------------------------------------------

def _write_decode(w, m):
    if m.bytes_fields:
        w.line("/// Decodes the protobuf wire form (through protobuf-c; a message that is just one")
        w.line("/// bytes field is read directly).")
    else:
        w.line("/// Decodes the protobuf wire form (through protobuf-c).")
    with w.block("public init(serializedBytes bytes: UnsafeRawBufferPointer) throws {"):
        if m.bytes_fields:
            _write_decode_single_bytes_field(w, m)
        if m.validates:
            w.line("try ProtobufC.validate(bytes, as: Self.self, Self._protobufCDescriptor)")
        with w.block("self = try ProtobufC.unpack(bytes, as: Self.self, Self._protobufCDescriptor, %s.self) {" % m.type.c_name):
            w.line("Self(_protobufC: $0)")
    w.blank()
    w.line("/// The protobuf-c descriptor of this message.")
    w.line("static let _protobufCDescriptor = ProtobufC.descriptor(%s.self, %s__init)" % (m.type.c_name, m.type.c_func))
    w.blank()


def _write_decode_single_bytes_field(w, m):
    with w.block("if let (number, contents) = ProtobufC.singleLengthDelimitedField(bytes) {"):
        w.line("var message = Self()")
        with w.switch("number"):
            for f, oneof in m.bytes_fields:
                if oneof:
                    assign = "message.%s = .%s(ProtobufC.bytes(contents))" % (oneof.swift, f.swift)
                else:
                    assign = "message.%s = ProtobufC.bytes(contents)" % f.swift
                w.line("case %d: %s; self = message; return" % (f.number, assign))
            w.line("default: break")


def _write_single_bytes_field(w, m):
    """`_singleBytesField()`: the field number and contents when the message's only field
    that protobuf-c would write is a singular bytes field (which is then the whole wire form)."""
    w.line("/// The number and contents of this message's bytes field when it is the only field")
    w.line("/// protobuf-c would write: the wire form is then that one field.")
    with w.block("func _singleBytesField() -> (Int, [UInt8])? {"):
        w.line("guard self.unknownFields.isEmpty else { return nil }")
        w.line("var found: (Int, [UInt8])? = nil")
        for x in m.members:
            if isinstance(x, Oneof):
                _write_single_bytes_oneof(w, x)
            else:
                _write_single_bytes_check(w, x)
        w.line("return found")
    w.blank()


def _write_found(w, number, value):
    w.line("if found != nil { return nil }")
    w.line("found = (%d, %s)" % (number, value))


def _write_single_bytes_check(w, f):
    sw = "self." + f.swift
    if f.kind == "bytes" and (f.optional or not f.repeated):
        opener = ("if let v = %s {" % sw) if f.optional else ("if !%s.isEmpty {" % sw)
        with w.block(opener):
            _write_found(w, f.number, "v" if f.optional else sw)
        return
    if f.repeated or (f.kind == "string" and not f.optional):
        condition = "%s.isEmpty" % sw
    elif f.optional or f.kind == "message":
        condition = "%s == nil" % sw
    elif f.kind == "bool":
        condition = "!%s" % sw
    elif f.kind == "enum":
        condition = "%s.rawValue == 0" % sw
    else:
        condition = "%s == 0" % sw  # as protobuf-c tests numbers (`== 0`: it skips -0.0 too)
    w.line("guard %s else { return nil }" % condition)


def _write_single_bytes_oneof(w, o):
    with w.switch("self.%s" % o.swift):
        w.line("case nil: break")
        for f in o.fields:
            if f.kind == "bytes":
                w.line("case .%s(let v):" % f.swift)
                with w.indented():
                    _write_found(w, f.number, "v")
        if any(f.kind != "bytes" for f in o.fields):
            w.line("default: return nil")


def _write_serialized_bytes(w, m):
    shortcut = "; a message that is just one bytes field is written directly" if m.bytes_fields else ""
    w.line("/// Encodes the protobuf wire form (through protobuf-c%s)." % shortcut)
    with w.block("public func serializedBytes() -> [UInt8] {"):
        if m.bytes_fields:
            w.line("if let (number, contents) = _singleBytesField() { return ProtobufC.encodeLengthDelimitedField(number, contents) }")
        _write_pack(w, m, "return withUnsafeTemporaryAllocation", "return ProtobufC.pack(c)")
    w.blank()


def _write_serialize_into(w, m):
    w.line("/// Encodes the protobuf wire form straight into memory from `allocate`.")
    with w.block("public func serialize(into allocate: (Int) throws -> UnsafeMutableRawBufferPointer) throws {"):
        if m.bytes_fields:
            with w.block("if let (number, contents) = _singleBytesField() {"):
                w.line("return try ProtobufC.encodeLengthDelimitedField(number, contents, into: allocate)")
        _write_pack(w, m, "try withUnsafeTemporaryAllocation", "try ProtobufC.pack(c, into: allocate)")
    w.blank()


def _write_pack(w, m, allocation, pack):
    w.line("let arena = ProtobufCArena()")
    w.line("defer { arena.release() }")
    with w.block("%s(of: %s.self, capacity: 1) { buffer in" % (allocation, m.type.c_name)):
        w.line("let c = buffer.baseAddress!")
        w.line("_protobufCFill(c, arena)")
        w.line(pack)


# ---- C struct -> Swift -------------------------------------------------------------------

def _write_from_c(w, m):
    w.line("/// Copies the fields out of an unpacked protobuf-c message.")
    with w.block("init(_protobufC c: UnsafePointer<%s>) {" % m.type.c_name):
        for x in m.members:
            if isinstance(x, Oneof):
                _write_oneof_from_c(w, x)
            else:
                _write_field_from_c(w, x)
        w.line("if c.pointee.base.n_unknown_fields > 0 { self.unknownFields = ProtobufC.unknownFields(c) }")
    w.blank()


def _write_field_from_c(w, f):
    source = "c.pointee.%s" % f.c
    if f.optional:
        with w.block("if c.pointee.%s.rawValue == %d {" % (f.case_member, f.number)):
            w.line("self.%s = %s" % (f.swift, cvalues.read_single(f, source)))
    elif f.kind == "map":
        w.line("self.%s = %s" % (f.swift, cvalues.read_map(f)))
    elif f.repeated:
        w.line("self.%s = %s" % (f.swift, cvalues.read_repeated(f)))
    elif f.kind == "message":
        w.line("if let p = %s { self.%s = %s(_protobufC: p) }" % (source, f.swift, f.base))
    else:
        w.line("self.%s = %s" % (f.swift, cvalues.read_single(f, source)))


def _write_oneof_from_c(w, o):
    with w.switch("c.pointee.%s.rawValue" % o.c_case):
        for f in o.fields:
            if f.kind == "message":
                w.line("case %d: if let p = c.pointee.%s { self.%s = .%s(%s(_protobufC: p)) }" % (
                    f.number, f.c, o.swift, f.swift, f.base))
            else:
                w.line("case %d: self.%s = .%s(%s)" % (
                    f.number, o.swift, f.swift, cvalues.read_single(f, "c.pointee.%s" % f.c)))
        w.line("default: self.%s = nil" % o.swift)


# ---- Swift -> C struct -------------------------------------------------------------------

def _write_fill_c(w, m):
    w.line("/// Initializes the protobuf-c struct at `c` from this message; memory comes from `arena`.")
    with w.block("func _protobufCFill(_ c: UnsafeMutablePointer<%s>, _ arena: ProtobufCArena) {" % m.type.c_name):
        w.line("%s__init(c)" % m.type.c_func)
        for x in m.members:
            if isinstance(x, Oneof):
                _write_oneof_fill(w, x)
            else:
                _write_field_fill(w, x)
        w.line("if !self.unknownFields.isEmpty { arena.setUnknownFields(self.unknownFields, c) }")


def _write_field_fill(w, f):
    target, sw = "c.pointee.%s" % f.c, "self." + f.swift
    if f.optional:
        with w.block("if let v = %s {" % sw):
            w.line("c.pointee.%s = .init(rawValue: %d)" % (f.case_member, f.number))
            w.line("%s = %s" % (target, cvalues.write_single(f, "v")))
    elif f.kind == "map":
        _write_map_fill(w, f)
    elif f.repeated:
        with w.block("if !%s.isEmpty {" % sw):
            w.line("c.pointee.%s = %s.count" % (f.c_count, sw))
            w.line("%s = %s" % (target, cvalues.write_repeated(f, sw)))
    elif f.kind == "message":
        with w.block("if let v = %s {" % sw):
            w.line("%s = %s" % (target, cvalues.write_single(f, "v")))
    elif f.kind in ("string", "bytes"):
        w.line("if !%s.isEmpty { %s = %s }" % (sw, target, cvalues.write_single(f, sw)))
    else:
        w.line("%s = %s" % (target, cvalues.write_single(f, sw)))


def _write_map_fill(w, f):
    """A dictionary as protobuf-c's array of entry messages (`key`, `value`)."""
    sw = "self." + f.swift
    with w.block("if !%s.isEmpty {" % sw):
        w.line("c.pointee.%s = %s.count" % (f.c_count, sw))
        with w.block("c.pointee.%s = arena.entries(%s, %s.self) { key, value, e in" % (f.c, sw, f.type.c_name)):
            w.line("%s__init(e)" % f.type.c_func)
            w.line("e.pointee.key = %s" % cvalues.write_single(f.key, "key"))
            w.line("e.pointee.value = %s" % cvalues.write_single(f.value, "value"))


def _write_oneof_fill(w, o):
    with w.switch("self.%s" % o.swift):
        for f in o.fields:
            w.line("case .%s(let v):" % f.swift)
            with w.indented():
                w.line("c.pointee.%s = .init(rawValue: %d)" % (o.c_case, f.number))
                w.line("c.pointee.%s = %s" % (f.c, cvalues.write_single(f, "v")))
        w.line("case nil: break")
