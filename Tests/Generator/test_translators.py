"""The model and translators on small hand-built descriptors."""

import pytest
from google.protobuf import descriptor_pb2

from h2rpc_codegen.enums import write_enum
from h2rpc_codegen.files import generate
from h2rpc_codegen.messages import write_message
from h2rpc_codegen.model import File, GeneratorError, Registry
from h2rpc_codegen.services import write_service
from h2rpc_codegen.writer import Writer
from google.protobuf.compiler import plugin_pb2

FDP = descriptor_pb2.FieldDescriptorProto


def make_file(**kwargs):
    f = descriptor_pb2.FileDescriptorProto(name="t/t.proto", package="t.v1", syntax="proto3", **kwargs)
    return f


def model(f):
    return File(Registry([f]), f)


def render(write, x):
    w = Writer()
    write(w, x)
    return w.text()


def msg(name, *fields, **kwargs):
    m = descriptor_pb2.DescriptorProto(name=name, **kwargs)
    for number, (fname, ftype) in enumerate(fields, 1):
        m.field.add(name=fname, number=number, type=ftype, label=FDP.LABEL_OPTIONAL)
    return m


def test_enum_translator_drops_aliases_and_prefix():
    f = make_file()
    e = f.enum_type.add(name="Mode")
    for name, number in [("MODE_UNSPECIFIED", 0), ("MODE_FAST", 1), ("MODE_QUICK", 1)]:
        e.value.add(name=name, number=number)
    out = render(write_enum, model(f).enums[0])
    assert "public enum T_V1_Mode: RawRepresentable" in out
    assert "    case fast\n" in out and "quick" not in out
    assert "public static let allCases: [T_V1_Mode] = [.unspecified, .fast]" in out
    assert "        case 1: self = .fast\n" in out


def test_message_translator_fields_and_bridge():
    f = make_file(message_type=[msg("Pair", ("key_name", FDP.TYPE_STRING), ("value", FDP.TYPE_INT64))])
    out = render(write_message, model(f).messages[0])
    assert "public struct T_V1_Pair: RPCMessage, Sendable, Hashable {" in out
    assert '    public var keyName: String = ""\n' in out
    assert "        self.value = Int64(truncatingIfNeeded: c.pointee.value)\n" in out
    assert "        if !self.keyName.isEmpty { c.pointee.key_name = arena.cString(self.keyName) }\n" in out
    assert "_singleBytesField" not in out  # no bytes field: no shortcut


def test_oneof_and_optional_members():
    m = msg("M", ("a", FDP.TYPE_BYTES), ("b", FDP.TYPE_STRING), ("c", FDP.TYPE_INT32))
    m.oneof_decl.add(name="choice")
    m.oneof_decl.add(name="_c")
    m.field[0].oneof_index = 0
    m.field[1].oneof_index = 0
    m.field[2].oneof_index = 1
    m.field[2].proto3_optional = True
    msg_model = model(make_file(message_type=[m])).messages[0]
    assert [type(x).__name__ for x in msg_model.members] == ["Oneof", "Field"]
    out = render(write_message, msg_model)
    assert "public var choice: OneOf_Choice? = nil" in out
    assert "public var c: Int32? = nil" in out
    assert "if c.pointee._c_case.rawValue == 3 {" in out
    assert "case 1: message.choice = .a(ProtobufC.bytes(contents)); self = message; return" in out


def test_service_translator_every_shape():
    f = make_file(message_type=[msg("R")])
    s = f.service.add(name="Svc")
    for name, cs, ss in [("Get", False, False), ("Watch", False, True), ("Put", True, False), ("Talk", True, True)]:
        s.method.add(name=name, input_type=".t.v1.R", output_type=".t.v1.R", client_streaming=cs, server_streaming=ss)
    out = render(write_service, model(f).services[0])
    assert "func get(request: T_V1_R, context: ServerContext) async throws -> T_V1_R" in out
    assert "router.registerServerStreaming(T_V1_Svc.Method.watch)" in out
    assert "wrapped.makeCall(Method.put," in out and "wrapped.makeCall(Method.talk," in out
    assert "public static let all: [MethodDescriptor] = [get, watch, put, talk]" in out


def test_errors_reach_the_response():
    f = descriptor_pb2.FileDescriptorProto(name="p2.proto", syntax="proto2")
    request = plugin_pb2.CodeGeneratorRequest(file_to_generate=["p2.proto"], proto_file=[f])
    assert "only proto3" in generate(request).error


def test_unknown_type_is_an_error():
    m = msg("M")
    m.field.add(name="x", number=1, type=FDP.TYPE_MESSAGE, type_name=".t.v1.Missing", label=FDP.LABEL_OPTIONAL)
    with pytest.raises(GeneratorError, match="unknown type"):
        model(make_file(message_type=[m]))


def map_field(m, name, number, key_type, value_type, value_type_name=""):
    entry = m.nested_type.add(name=name[:1].upper() + name[1:] + "Entry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=key_type, label=FDP.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=value_type, label=FDP.LABEL_OPTIONAL, type_name=value_type_name)
    m.field.add(name=name, number=number, type=FDP.TYPE_MESSAGE, label=FDP.LABEL_REPEATED,
                type_name=".t.v1.%s.%s" % (m.name, entry.name))


def test_map_fields_are_dictionaries_through_entry_messages():
    m = msg("M")
    map_field(m, "labels", 1, FDP.TYPE_STRING, FDP.TYPE_INT64)
    msg_model = model(make_file(message_type=[m])).messages[0]
    assert msg_model.messages == []  # the entry type is not a Swift type
    out = render(write_message, msg_model)
    assert "public var labels: [String: Int64] = [:]" in out
    assert ("self.labels = ProtobufC.dictionary(c.pointee.labels, c.pointee.n_labels) { e in "
            "(ProtobufC.string(e.pointee.key), Int64(truncatingIfNeeded: e.pointee.value)) }") in out
    assert "c.pointee.labels = arena.entries(self.labels, T__V1__M__LabelsEntry.self) { key, value, e in" in out
    assert "t__v1__m__labels_entry__init(e)" in out


def test_recursive_fields_are_boxed_and_oneofs_indirect():
    m = msg("Node", ("name", FDP.TYPE_STRING))
    m.field.add(name="child", number=2, type=FDP.TYPE_MESSAGE, type_name=".t.v1.Node", label=FDP.LABEL_OPTIONAL)
    m.field.add(name="kids", number=3, type=FDP.TYPE_MESSAGE, type_name=".t.v1.Node", label=FDP.LABEL_REPEATED)
    m.field.add(name="next", number=4, type=FDP.TYPE_MESSAGE, type_name=".t.v1.Node", label=FDP.LABEL_OPTIONAL, oneof_index=0)
    m.oneof_decl.add(name="link")
    out = render(write_message, model(make_file(message_type=[m])).messages[0])
    assert "private var _child: ProtobufCBox<T_V1_Node>? = nil" in out
    assert "public var kids: [T_V1_Node] = []" in out  # arrays need no box
    assert "public indirect enum OneOf_Link: Sendable, Hashable {" in out
    assert "try ProtobufC.validate(bytes, as: Self.self, Self._protobufCDescriptor)" in out


def test_validation_only_where_strings_or_recursion_can_occur():
    f = make_file(message_type=[msg("Plain", ("n", FDP.TYPE_INT32), ("b", FDP.TYPE_BYTES)),
                                msg("Text", ("s", FDP.TYPE_STRING))])
    plain, text = model(f).messages
    assert not plain.validates and text.validates
    assert "ProtobufC.validate" not in render(write_message, plain)


def test_every_message_keeps_unknown_fields():
    out = render(write_message, model(make_file(message_type=[msg("E")])).messages[0])
    assert "public var unknownFields: [UInt8] = []" in out
    assert "if c.pointee.base.n_unknown_fields > 0 { self.unknownFields = ProtobufC.unknownFields(c) }" in out
    assert "if !self.unknownFields.isEmpty { arena.setUnknownFields(self.unknownFields, c) }" in out
