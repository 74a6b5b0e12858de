"""The descriptors embedded for server reflection (Tools/h2rpc_codegen/reflection_descriptors.py):
protoc's bytes unchanged, every symbol indexed, and the committed Swift file current."""

import base64
import os
import re
import subprocess

from google.protobuf import descriptor_pb2

from conftest import ROOT
from h2rpc_codegen import reflection_descriptors

COMMITTED = os.path.join(ROOT, "Sources/GeneratedProtos/GeneratedFileDescriptors.swift")


def descriptor_set(tmp_path, *protos):
    out = tmp_path / "set.pb"
    subprocess.run(["protoc", "-I", os.path.join(ROOT, "Protos"), "-I", "/usr/include", "--include_imports",
                    "--descriptor_set_out=" + str(out), *protos], check=True, capture_output=True)
    return out.read_bytes()


def test_raw_files_are_protocs_bytes(tmp_path):
    data = descriptor_set(tmp_path, "h2rpc/fixture/fixture.proto")
    parsed = descriptor_pb2.FileDescriptorSet()
    parsed.ParseFromString(data)
    raw = reflection_descriptors.raw_files(data)
    assert [f.name for f in parsed.file] == [descriptor_pb2.FileDescriptorProto.FromString(r).name for r in raw]
    for file, r in zip(parsed.file, raw):
        assert descriptor_pb2.FileDescriptorProto.FromString(r) == file


def test_symbols_cover_nested_types_services_and_methods(tmp_path):
    data = descriptor_set(tmp_path, "grpc/testing/test.proto", "h2rpc/fixture/fixture.proto")
    files = {descriptor_pb2.FileDescriptorProto.FromString(r).name: descriptor_pb2.FileDescriptorProto.FromString(r)
             for r in reflection_descriptors.raw_files(data)}
    test = reflection_descriptors.symbols(files["grpc/testing/test.proto"])
    assert "grpc.testing.TestService" in test and "grpc.testing.TestService.UnaryCall" in test
    fixture = reflection_descriptors.symbols(files["h2rpc/fixture/fixture.proto"])
    assert "h2rpc.fixture.Envelope.Header" in fixture and "h2rpc.fixture.Envelope.Kind" in fixture
    assert "h2rpc.fixture.Color" in fixture


def test_committed_file_embeds_every_generated_file_byte_for_byte():
    with open(COMMITTED) as f:
        swift = f.read()
    names = re.findall(r'^            name: "([^"]+)",$', swift, re.M)
    blobs = re.findall(r'^            base64: "([^"]+)"$', swift, re.M)
    assert "labgallery/v1/galleries.proto" in names and "google/protobuf/empty.proto" in names
    assert "grpc/reflection/v1/reflection.proto" in names and names == sorted(names)
    for name, blob in zip(names, blobs):
        assert descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(blob)).name == name
