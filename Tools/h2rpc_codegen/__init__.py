"""protoc-gen-h2rpc as a pipeline (Tools/protoc-gen-h2rpc is the entry point).

    CodeGeneratorRequest
      -> model.py      the request model: types, messages, fields, oneofs, services,
                       resolved and validated at construction (naming.py: every name)
      -> enums.py, messages.py, services.py, files.py
                       translators: each writes one construct through the Writer
                       (cvalues.py: Swift <-> protobuf-c value expressions)
      -> writer.py     the Writer, which owns indentation (`with w.block("struct X {"):`)
      -> CodeGeneratorResponse

c_descriptors.py prepares the descriptor set protoc-c reads (Tools/generate.sh).
"""
