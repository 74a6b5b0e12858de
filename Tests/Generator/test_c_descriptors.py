"""The descriptor rewrite for protoc-c (Tools/generate.sh step 2)."""

import pytest
from google.protobuf import descriptor_pb2

from h2rpc_codegen.c_descriptors import files_to_generate, strip_proto3_optional

FDP = descriptor_pb2.FieldDescriptorProto


def test_proto3_optional_becomes_a_plain_oneof_member_also_when_nested():
    fds = descriptor_pb2.FileDescriptorSet()
    f = fds.file.add(name="a.proto", syntax="proto3")
    outer = f.message_type.add(name="Outer")
    inner = outer.nested_type.add(name="Inner")
    for m in (outer, inner):
        m.oneof_decl.add(name="_x")
        m.field.add(name="x", number=1, type=FDP.TYPE_INT32, oneof_index=0, proto3_optional=True)
    strip_proto3_optional(fds)
    for m in (outer, inner):
        assert not m.field[0].HasField("proto3_optional")
        assert m.field[0].oneof_index == 0


def test_files_to_generate_are_ours_and_well_known_types_only():
    fds = descriptor_pb2.FileDescriptorSet()
    for name in ["b.proto", "google/protobuf/empty.proto", "a.proto"]:
        fds.file.add(name=name)
    assert files_to_generate(fds, {"a.proto", "b.proto"}) == ["a.proto", "b.proto", "google/protobuf/empty.proto"]
    with pytest.raises(SystemExit, match="b.proto is imported"):
        files_to_generate(fds, {"a.proto"})
