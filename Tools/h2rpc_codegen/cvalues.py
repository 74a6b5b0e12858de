"""Swift expressions that move one field value between Swift and protobuf-c's C struct."""

from .model import GeneratorError


def read_single(f, expr):
    """The Swift value of C expression `expr` holding one value of field `f`."""
    k = f.kind
    if k == "same":
        return expr
    if k == "int":
        return "%s(truncatingIfNeeded: %s)" % (f.base, expr)
    if k == "bool":
        return "%s != 0" % expr
    if k == "string":
        return "ProtobufC.string(%s)" % expr
    if k == "bytes":
        return "ProtobufC.bytes(%s)" % expr
    if k == "enum":
        return "%s(rawValue: Int32(truncatingIfNeeded: %s.rawValue))" % (f.base, expr)
    if k == "message":
        return "%s(_protobufC: %s)" % (f.base, expr)
    raise GeneratorError("unhandled kind " + k)


def read_repeated(f):
    """The Swift array of repeated field `f` of the C message `c`."""
    p, count, k = "c.pointee.%s" % f.c, "c.pointee.%s" % f.c_count, f.kind
    if k == "same":
        return "ProtobufC.array(%s, %s)" % (p, count)
    if k == "int":
        return "ProtobufC.integers(%s, %s, as: %s.self)" % (p, count, f.base)
    element = {
        "bool": "$0 != 0",
        "string": "ProtobufC.string($0)",
        "bytes": "ProtobufC.bytes($0)",
        "enum": "%s(rawValue: Int32(truncatingIfNeeded: $0.rawValue))" % f.base,
        "message": "%s(_protobufC: $0!)" % f.base,
    }
    if k not in element:
        raise GeneratorError("unhandled kind " + k)
    return "ProtobufC.map(%s, %s) { %s }" % (p, count, element[k])


def write_single(f, expr):
    """The C value of Swift expression `expr` holding one value of field `f`."""
    k = f.kind
    if k == "same":
        return expr
    if k == "int":
        return ".init(truncatingIfNeeded: %s)" % expr
    if k == "bool":
        return "%s ? 1 : 0" % expr
    if k == "string":
        return "arena.cString(%s)" % expr
    if k == "bytes":
        return "arena.binaryData(%s)" % expr
    if k == "enum":
        return ".init(rawValue: .init(truncatingIfNeeded: %s.rawValue))" % expr
    if k == "message":
        return "{ let p = arena.allocate(%s.self); %s._protobufCFill(p, arena); return p }()" % (f.type.c_name, expr)
    raise GeneratorError("unhandled kind " + k)


def write_repeated(f, expr):
    """The C array of Swift array `expr` of repeated field `f`."""
    k = f.kind
    simple = {"same": "array", "int": "integers", "bool": "booleans", "string": "cStrings", "bytes": "binaryDatas"}
    if k in simple:
        return "arena.%s(%s)" % (simple[k], expr)
    if k == "enum":
        return "arena.map(%s) { .init(rawValue: .init(truncatingIfNeeded: $0.rawValue)) }" % expr
    if k == "message":
        return "arena.messages(%s, %s.self) { $0._protobufCFill($1, arena) }" % (expr, f.type.c_name)
    raise GeneratorError("unhandled kind " + k)


def read_map(f):
    """The Swift dictionary of map field `f` of the C message `c` (entries `key`, `value`)."""
    key = read_single(f.key, "e.pointee.key")
    if f.value.kind == "message":  # an entry without a value holds the default message
        value = "e.pointee.value.map { %s(_protobufC: $0) } ?? %s()" % (f.value.base, f.value.base)
    else:
        value = read_single(f.value, "e.pointee.value")
    return "ProtobufC.dictionary(c.pointee.%s, c.pointee.%s) { e in (%s, %s) }" % (f.c, f.c_count, key, value)
