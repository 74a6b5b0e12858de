"""The descriptor set protoc-c reads, and the list of files to generate (Tools/generate.sh).

protoc-c 1.4 rejects proto3 `optional`, so its copy of the descriptors has such fields as plain
members of their (wire-identical) synthetic oneof; the Swift generator knows this and reads
presence from the oneof case.

    python3 -m h2rpc_codegen.c_descriptors ALL.pb C.pb FILES.txt OURS.proto...
"""

import sys

from google.protobuf import descriptor_pb2


def strip_proto3_optional(fds):
    def walk(messages):
        for m in messages:
            for field in m.field:
                if field.proto3_optional:
                    field.ClearField("proto3_optional")
            walk(m.nested_type)
    for f in fds.file:
        walk(f.message_type)


def files_to_generate(fds, ours):
    """Every file in the set, sorted; each must be ours or a well-known type."""
    names = sorted(f.name for f in fds.file)
    for name in names:
        if name not in ours and not name.startswith("google/protobuf/"):
            raise SystemExit("generate.sh: %s is imported but is neither under Protos/ nor a well-known type" % name)
    return names


def main(argv):
    src, dst, listing, ours = argv[0], argv[1], argv[2], set(argv[3:])
    fds = descriptor_pb2.FileDescriptorSet()
    with open(src, "rb") as f:
        fds.ParseFromString(f.read())
    strip_proto3_optional(fds)
    with open(dst, "wb") as f:
        f.write(fds.SerializeToString(deterministic=True))
    with open(listing, "w") as f:
        f.write("\n".join(files_to_generate(fds, ours)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
