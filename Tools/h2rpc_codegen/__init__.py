"""protoc-gen-h2rpc as a pipeline (Tools/protoc-gen-h2rpc is the entry point).

    CodeGeneratorRequest
      -> model.py      the request model: types, messages, fields, oneofs, services,
                       resolved and validated at construction (naming.py: every name)
      -> enums.py, messages.py, services.py, files.py
                       translators: each writes one construct through the Writer
                       (cvalues.py: Swift <-> protobuf-c value expressions)
      -> writer.py     the Writer, which owns indentation (`with w.block("struct X {"):`)
      -> CodeGeneratorResponse

Only proto3; groups and extensions are rejected. Map fields are Swift dictionaries (protobuf-c:
repeated entry messages); every message keeps its unknown fields (`unknownFields`); a singular
field whose type contains its message is boxed (`ProtobufCBox`), a oneof with one is `indirect`;
messages that can hold a string or themselves are checked before protobuf-c unpacks them
(`ProtobufC.validate`: UTF-8 without NUL, nesting depth at most 100).

c_descriptors.py prepares the descriptor set protoc-c reads (Tools/generate.sh).
"""
