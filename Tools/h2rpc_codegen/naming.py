"""Names: Swift identifiers (swift-protobuf style) and protoc-c's C names.

  - package `grpc.testing` + message `SimpleRequest` -> `Grpc_Testing_SimpleRequest`;
  - nested types are nested Swift types: `Outer.Inner` -> `Pkg_Outer.Inner`;
  - fields are lowerCamelCase (`response_size` -> `responseSize`);
  - enum cases drop the enum-name prefix and are lowerCamelCase
    (`OS_TYPE_UNSPECIFIED` in `OsType` -> `.unspecified`), plus `.UNRECOGNIZED(Int32)`;
  - a oneof `body` -> `enum OneOf_Body` + `var body: OneOf_Body?`;
  - services -> `enum Pkg_Service` with `Method`, `ServiceProtocol` and `Client`;
  - `a/b/c.proto` -> `a_b_c.pb.swift`.
"""

SWIFT_KEYWORDS = {
    "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import",
    "init", "inout", "internal", "let", "open", "operator", "private", "precedencegroup",
    "protocol", "public", "rethrows", "static", "struct", "subscript", "typealias", "var",
    "break", "case", "catch", "continue", "default", "defer", "do", "else", "fallthrough",
    "for", "guard", "if", "in", "repeat", "return", "throw", "switch", "where", "while",
    "Any", "as", "await", "false", "is", "nil", "self", "Self", "super", "throws", "true", "try",
    "Type", "Protocol", "some", "any", "consume", "copy", "borrowing", "consuming", "each",
}
# Names that would collide with members every generated message/enum has.
RESERVED_MEMBERS = {"serializedBytes", "hashValue", "hash", "rawValue", "allCases",
                    "UNRECOGNIZED", "init", "self", "Type", "Protocol", "unknownFields"}

CPP_KEYWORDS = {
    "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break", "case", "catch", "char",
    "class", "compl", "const", "const_cast", "continue", "default", "delete", "do", "double",
    "dynamic_cast", "else", "enum", "explicit", "extern", "false", "float", "for", "friend",
    "goto", "if", "inline", "int", "long", "mutable", "namespace", "new", "not", "not_eq",
    "operator", "or", "or_eq", "private", "protected", "public", "register",
    "reinterpret_cast", "return", "short", "signed", "sizeof", "static", "static_cast",
    "struct", "switch", "template", "this", "throw", "true", "try", "typedef", "typeid",
    "typename", "union", "unsigned", "using", "virtual", "void", "volatile", "wchar_t",
    "while", "xor", "xor_eq",
}


def quote(name):
    """Backticks a Swift identifier if it is a keyword."""
    return "`%s`" % name if name in SWIFT_KEYWORDS else name


def upper_first(s):
    return s[:1].upper() + s[1:]


def camel_parts(parts):
    """Joins `parts` lowerCamelCase."""
    parts = [p for p in parts if p]
    if not parts:
        return "_"
    return parts[0][:1].lower() + parts[0][1:] + "".join(upper_first(p) for p in parts[1:])


def lower_camel(snake):
    """`response_size` -> `responseSize`, `r_i32` -> `rI32`."""
    return camel_parts(snake.split("_"))


def member_name(snake):
    """A field or oneof as a Swift member (unquoted); `_p` avoids generated members."""
    name = lower_camel(snake)
    return name + "_p" if name in RESERVED_MEMBERS else name


def upper_camel(snake):
    return "".join(upper_first(p) for p in snake.split("_") if p)


def swift_package_prefix(package):
    """`grpc.testing` -> `Grpc_Testing_`."""
    if not package:
        return ""
    return "_".join(upper_camel(p) for p in package.split(".")) + "_"


def qualified(parent, name):
    return "%s.%s" % (parent, name) if parent else name


# protoc-c naming (protoc-c/c_helpers.cc)

def c_to_camel(name):
    out, upper = "", True
    for ch in name:
        if ch == "_":
            upper = True
        elif upper:
            out += ch.upper()
            upper = False
        else:
            out += ch
    return out


def c_camel_to_lower(name):
    out, was_upper = "", True
    for ch in name:
        is_upper = ch.isupper()
        if is_upper:
            if not was_upper:
                out += "_"
            out += ch.lower()
        else:
            out += ch
        was_upper = is_upper
    return out


def c_type_name(full_name):
    """`h2rpc.fixture.Envelope.Header` -> `H2rpc__Fixture__Envelope__Header`."""
    return "__".join(c_to_camel(p) for p in full_name.split(".") if p)


def c_func_prefix(full_name):
    """`grpc.testing.SimpleRequest` -> `grpc__testing__simple_request`."""
    return "__".join(c_camel_to_lower(p) for p in full_name.split(".") if p)


def c_field_name(name):
    """A proto field as protoc-c's struct member, quoted for Swift when needed."""
    result = name.lower()
    if result in CPP_KEYWORDS:
        result += "_"
    return quote(result)


def method_name(proto_name):
    """An rpc name as a Swift function name (unquoted): `UnaryCall` -> `unaryCall`."""
    camel = c_to_camel(proto_name)
    return member_name(camel[:1].lower() + camel[1:])


# enum cases

def enum_prefix(enum_name):
    """`OsType` -> `OS_TYPE`, `GrpclbRouteType` -> `GRPCLB_ROUTE_TYPE`."""
    out = ""
    for i, ch in enumerate(enum_name):
        if ch.isupper() and i > 0 and (enum_name[i - 1].islower() or enum_name[i - 1].isdigit()):
            out += "_"
        out += ch.upper()
    return out


def strip_enum_prefix(enum_name, value_name):
    """The value name without the enum's prefix (compared with underscores ignored, as
    swift-protobuf does), unless nothing or a digit would remain."""
    compact_prefix = enum_prefix(enum_name).replace("_", "")
    letters, i = "", 0
    while i < len(value_name) and len(letters) < len(compact_prefix):
        if value_name[i] != "_":
            letters += value_name[i].upper()
        i += 1
    if letters == compact_prefix and i < len(value_name):
        rest = value_name[i:].lstrip("_")
        if rest and not rest[0].isdigit():
            return rest
    return value_name


def enum_case_name(enum_name, value_name):
    """`OS_TYPE_UNSPECIFIED` in `OsType` -> `unspecified` (quoted when a keyword)."""
    stripped = strip_enum_prefix(enum_name, value_name)
    name = camel_parts([p.lower() for p in stripped.split("_")])
    if name[:1].isdigit():
        name = "_" + name
    if name in RESERVED_MEMBERS:
        name += "_"
    return quote(name)


def output_name(proto_name):
    """`a/b/c.proto` -> `a_b_c.pb.swift` (SwiftPM wants unique base names in one module)."""
    base = proto_name[:-len(".proto")] if proto_name.endswith(".proto") else proto_name
    return base.replace("/", "_").replace("-", "_").replace(".", "_") + ".pb.swift"
