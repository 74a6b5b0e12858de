"""The request model: every type, message, field, oneof and service of a CodeGeneratorRequest,
resolved and validated at construction, so translators only read it."""

from google.protobuf import descriptor_pb2

from . import naming as n

FDP = descriptor_pb2.FieldDescriptorProto


class GeneratorError(Exception):
    pass


# type -> (swift type, default literal, kind: how the value crosses to C)
SCALARS = {
    FDP.TYPE_INT32: ("Int32", "0", "same"),
    FDP.TYPE_SINT32: ("Int32", "0", "same"),
    FDP.TYPE_SFIXED32: ("Int32", "0", "same"),
    FDP.TYPE_UINT32: ("UInt32", "0", "same"),
    FDP.TYPE_FIXED32: ("UInt32", "0", "same"),
    FDP.TYPE_INT64: ("Int64", "0", "int"),
    FDP.TYPE_SINT64: ("Int64", "0", "int"),
    FDP.TYPE_SFIXED64: ("Int64", "0", "int"),
    FDP.TYPE_UINT64: ("UInt64", "0", "int"),
    FDP.TYPE_FIXED64: ("UInt64", "0", "int"),
    FDP.TYPE_FLOAT: ("Float", "0", "same"),
    FDP.TYPE_DOUBLE: ("Double", "0", "same"),
    FDP.TYPE_BOOL: ("Bool", "false", "bool"),
    FDP.TYPE_STRING: ("String", '""', "string"),
    FDP.TYPE_BYTES: ("[UInt8]", "[]", "bytes"),
}


class TypeInfo:
    """A message or enum type anywhere in the request."""

    def __init__(self, full_name, swift_name, kind, proto, file_name):
        self.full_name = full_name      # without leading dot
        self.swift_name = swift_name    # fully qualified Swift name
        self.c_name = n.c_type_name(full_name)
        self.c_func = n.c_func_prefix(full_name)
        self.kind = kind                # "message" | "enum"
        self.proto = proto
        self.file_name = file_name


class Registry:
    """Every type of every file in the request, by full proto name."""

    def __init__(self, files):
        self.types = {}
        for f in files:
            self._add_file(f)

    def _add_file(self, f):
        prefix = n.swift_package_prefix(f.package)
        self._add_messages(f, f.message_type, f.package, None, prefix)
        for e in f.enum_type:
            self._add(n.qualified(f.package, e.name), prefix + e.name, "enum", e, f)

    def _add_messages(self, f, messages, parent_full, parent_swift, prefix):
        for m in messages:
            full = n.qualified(parent_full, m.name)
            swift = "%s.%s" % (parent_swift, m.name) if parent_swift else prefix + m.name
            self._add(full, swift, "message", m, f)
            self._add_messages(f, m.nested_type, full, swift, prefix)
            for e in m.enum_type:
                self._add(n.qualified(full, e.name), "%s.%s" % (swift, e.name), "enum", e, f)

    def _add(self, full, swift, kind, proto, f):
        self.types[full] = TypeInfo(full, swift, kind, proto, f.name)

    def lookup(self, type_name):
        key = type_name.lstrip(".")
        if key not in self.types:
            raise GeneratorError("unknown type %s" % type_name)
        return self.types[key]


class Comments:
    """Leading (else trailing) comments of a file by source path."""

    def __init__(self, f):
        self._by_path = {}
        for loc in f.source_code_info.location:
            text = loc.leading_comments or loc.trailing_comments
            if text:
                self._by_path[tuple(loc.path)] = text

    def get(self, path):
        return self._by_path.get(tuple(path))


class Field:
    """One proto field: its Swift and C names, Swift type and how it crosses to C (`kind`)."""

    def __init__(self, reg, proto, comment):
        self.proto = proto
        self.name = proto.name
        self.number = proto.number
        self.swift = n.quote(n.member_name(proto.name))
        self.param = n.member_name(proto.name)
        self.c = n.c_field_name(proto.name)
        self.c_count = "n_" + self.c.strip("`")
        self.repeated = proto.label == FDP.LABEL_REPEATED
        self.comment = comment
        self.optional = False       # proto3 `optional` (set by Message)
        self.case_member = None     # its synthetic oneof's C case member
        self.boxed = False          # a singular field of a type containing its message (set by Message)
        self.type = None
        if proto.type == FDP.TYPE_GROUP:
            raise GeneratorError("field %s: groups are not supported" % proto.name)
        if proto.type == FDP.TYPE_MESSAGE:
            self._message(reg)
        elif proto.type == FDP.TYPE_ENUM:
            self._enum(reg)
        else:
            self.base, self.default, self.kind = SCALARS[proto.type]

    def _message(self, reg):
        t = reg.lookup(self.proto.type_name)
        self.kind, self.type, self.base, self.default = "message", t, t.swift_name, "nil"
        if t.proto.options.map_entry:
            # protobuf-c: a repeated entry message with `key` and `value`; Swift: a dictionary.
            self.kind = "map"
            self.key = Field(reg, t.proto.field[0], None)
            self.value = Field(reg, t.proto.field[1], None)
            self.base = "[%s: %s]" % (self.key.base, self.value.base)

    def _enum(self, reg):
        t = reg.lookup(self.proto.type_name)
        zero = [v for v in t.proto.value if v.number == 0]
        if not zero:
            raise GeneratorError("enum %s has no zero value (proto3 requires one)" % t.full_name)
        self.kind, self.type, self.base = "enum", t, t.swift_name
        self.default = "." + n.enum_case_name(t.proto.name, zero[0].name)

    @property
    def swift_type(self):
        if self.optional:
            return self.base + "?"
        if self.kind == "map":
            return self.base
        if self.repeated:
            return "[%s]" % self.base
        if self.kind == "message":
            return self.base + "?"
        return self.base

    @property
    def initial(self):
        """The initial value of the stored property / initializer parameter."""
        if self.optional:
            return "nil"
        if self.kind == "map":
            return "[:]"
        return "[]" if self.repeated else self.default


class Oneof:
    """A real (not synthetic) oneof and its member fields."""

    def __init__(self, index, decl, comment):
        self.index = index
        self.name = decl.name
        self.swift = n.quote(n.member_name(decl.name))
        self.param = n.member_name(decl.name)
        self.enum_name = "OneOf_" + n.upper_camel(decl.name)
        self.c_case = n.c_field_name(decl.name + "_case")
        self.comment = comment
        self.fields = []
        self.indirect = False       # a member's type contains the message (set by Message)

    @property
    def swift_type(self):
        return self.enum_name + "?"


class Enum:
    """An enum with its cases (aliases dropped: the first name of a number wins)."""

    def __init__(self, proto, swift_name, local_name, path, comments):
        self.proto = proto
        self.name = proto.name
        self.swift_name = swift_name
        self.local_name = local_name
        self.comment = comments.get(path)
        self.cases = []  # (swift case name, value descriptor, comment)
        seen_names, seen_numbers = set(), set()
        for vi, v in enumerate(proto.value):
            name = n.enum_case_name(proto.name, v.name)
            if v.number in seen_numbers or name in seen_names:
                continue
            seen_names.add(name)
            seen_numbers.add(v.number)
            self.cases.append((name, v, comments.get(path + (2, vi))))
        self.zero = [name for name, v, _ in self.cases if v.number == 0][0]


class Message:
    """A message: fields in declaration order (`members`: Field or Oneof), nested types."""

    def __init__(self, reg, comments, proto, full_name, path, local_name):
        self.proto = proto
        self.full_name = full_name
        self.type = reg.lookup(full_name)
        self.local_name = local_name
        self.comment = comments.get(path)
        self.fields = [Field(reg, f, comments.get(path + (2, fi))) for fi, f in enumerate(proto.field)]
        self.members, self.oneofs = self._group(comments, path)
        self._mark_recursive_fields(reg)
        self.validates = needs_validation(reg, self.type)
        self.enums = [Enum(e, reg.lookup(full_name + "." + e.name).swift_name, e.name, path + (4, ei), comments)
                      for ei, e in enumerate(proto.enum_type)]
        self.messages = [Message(reg, comments, m, full_name + "." + m.name, path + (3, mi), m.name)
                         for mi, m in enumerate(proto.nested_type) if not m.options.map_entry]

    def _group(self, comments, path):
        """Members in declaration order; fields of a real oneof become one Oneof member."""
        members, oneofs = [], {}
        for f in self.fields:
            if not f.proto.HasField("oneof_index"):
                members.append(f)
                continue
            index = f.proto.oneof_index
            decl = self.proto.oneof_decl[index]
            if f.proto.proto3_optional:
                f.optional = True
                f.case_member = n.c_field_name(decl.name + "_case")
                members.append(f)
                continue
            if f.repeated:
                raise GeneratorError("repeated field in oneof %s" % decl.name)
            if index not in oneofs:
                oneofs[index] = Oneof(index, decl, comments.get(path + (8, index)))
                members.append(oneofs[index])
            oneofs[index].fields.append(f)
        return members, list(oneofs.values())

    def _mark_recursive_fields(self, reg):
        """A singular message field whose type holds this message inline (directly or through
        other singular fields) is boxed; a oneof with such a member is an indirect enum."""
        def contains_self(f):
            return f.kind == "message" and self.full_name in inline_closure(reg, f.type)
        for x in self.members:
            if isinstance(x, Oneof):
                x.indirect = any(contains_self(f) for f in x.fields)
            elif not x.repeated:
                x.boxed = contains_self(x)

    @property
    def bytes_fields(self):
        """Singular bytes fields (plain, optional or oneof members) as (Field, Oneof or None)."""
        out = []
        for m in self.members:
            if isinstance(m, Oneof):
                out += [(f, m) for f in m.fields if f.kind == "bytes"]
            elif m.kind == "bytes" and not m.repeated:
                out.append((m, None))
        return out


def _message_fields(reg, t, singular_only):
    return [reg.lookup(f.type_name) for f in t.proto.field
            if f.type == FDP.TYPE_MESSAGE and not (singular_only and f.label == FDP.LABEL_REPEATED)]


def closure(reg, t, singular_only=False):
    """`t` and every message type reachable from it through message fields (with
    `singular_only`, only through fields held inline: not repeated, not map), by full name."""
    seen, todo = {}, [t]
    while todo:
        m = todo.pop()
        if m.full_name not in seen:
            seen[m.full_name] = m
            todo += _message_fields(reg, m, singular_only)
    return seen


def inline_closure(reg, t):
    """Full names of `t` and every message it holds inline (oneof members included)."""
    return set(closure(reg, t, singular_only=True))


def is_recursive(reg, t):
    """Whether a message of type `t` can contain another one (at any depth)."""
    return any(t.full_name in closure(reg, sub) for sub in _message_fields(reg, t, False))


def needs_validation(reg, t):
    """Whether decoding `t` must check strings and depth first (`ProtobufC.validate`): it can
    contain a string field, or messages that can nest without bound."""
    reachable = closure(reg, t).values()
    return (any(f.type == FDP.TYPE_STRING for m in reachable for f in m.proto.field)
            or any(is_recursive(reg, m) for m in reachable))


class Method:
    def __init__(self, reg, proto, comment):
        self.proto = proto
        self.name = proto.name
        self.swift = n.quote(n.method_name(proto.name))
        self.request = reg.lookup(proto.input_type).swift_name
        self.response = reg.lookup(proto.output_type).swift_name
        self.comment = comment
        self.client_streaming = proto.client_streaming
        self.server_streaming = proto.server_streaming


class Service:
    def __init__(self, reg, comments, f, proto, si):
        self.full_name = n.qualified(f.package, proto.name)
        self.swift_name = n.swift_package_prefix(f.package) + proto.name
        path = (6, si)
        self.comment = comments.get(path)
        self.methods = [Method(reg, m, comments.get(path + (2, mi))) for mi, m in enumerate(proto.method)]
        swift_names = [m.swift for m in self.methods]
        for name in swift_names:
            if swift_names.count(name) > 1:
                raise GeneratorError("service %s: two methods map to %s" % (self.full_name, name.strip("`")))


class File:
    """One file to generate: its top-level enums, messages and services."""

    def __init__(self, reg, f):
        if f.syntax != "proto3":
            raise GeneratorError("%s: only proto3 files are supported (syntax is %r)" % (f.name, f.syntax or "proto2"))
        if f.extension:
            raise GeneratorError("%s: extensions are not supported" % f.name)
        comments = Comments(f)
        self.name = f.name
        self.output_name = n.output_name(f.name)
        self.enums = []
        for ei, e in enumerate(f.enum_type):
            swift = reg.lookup(n.qualified(f.package, e.name)).swift_name
            self.enums.append(Enum(e, swift, swift, (5, ei), comments))
        self.messages = []
        for mi, m in enumerate(f.message_type):
            full = n.qualified(f.package, m.name)
            self.messages.append(Message(reg, comments, m, full, (4, mi), reg.lookup(full).swift_name))
        self.services = [Service(reg, comments, f, s, si) for si, s in enumerate(f.service)]
