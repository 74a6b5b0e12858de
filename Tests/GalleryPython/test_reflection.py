"""Server reflection on labgallery-server, driven by grpcio-reflection's client (PyPI
grpcio-reflection): list the services, fetch the file that defines GalleryService, resolve a
method's input type and call the method through a stub built from the reflected descriptors
alone (no generated code). Reflection needs no token; the reflected call does. Also gzip
through such a stub: a compressed call, and the 16 KiB method limit applied after inflation.
"""

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

import labgallery_testing  # Tests/pyhelpers (on the path by conftest.py)

V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA_METHOD = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """labgallery-server on a free port with a fresh data dir; yields (port, admin token)."""
    root = tmp_path_factory.mktemp("gallery-reflection")
    data_dir = root / "data"
    binary = labgallery_testing.find_binary("labgallery-server", ("release", "debug"))
    with labgallery_testing.ServerProcess([binary, "--port", "0", "--data-dir", data_dir], log_dir=root) as process:
        port = int(process.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        yield port, (data_dir / "admin.token").read_text().strip()
        assert process.stop(timeout=20) == 0


def ask(channel, method, *requests):
    """Sends `requests` on one reflection stream; returns the responses (v1 and v1alpha are
    the same messages on the wire, so v1alpha's classes speak v1 too)."""
    call = channel.stream_stream(method, request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    return list(call(iter(requests), timeout=20))


def test_list_fetch_resolve_and_call_without_generated_code(server):
    port, token = server
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"labgallery.v1.GalleryService", "labgallery.v1.ImageService", "labgallery.v1.LabService",
                "labgallery.v1.LabAccountService", "labgallery.v1.ReplicationService",
                "labgallery.v1.BillingService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection"} <= services, services

        pool = descriptor_pool.DescriptorPool(database)
        file = pool.FindFileContainingSymbol("labgallery.v1.GalleryService")
        assert file.name == "labgallery/v1/galleries.proto"
        service = pool.FindServiceByName("labgallery.v1.GalleryService")
        method = service.methods_by_name["CreateGallery"]
        assert method.input_type.full_name == "labgallery.v1.CreateGalleryRequest"
        assert [f.name for f in method.input_type.fields] == ["gallery_id", "gallery"]
        assert method.input_type.fields_by_name["gallery"].message_type.full_name == "labgallery.v1.Gallery"

        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        create = channel.unary_unary(f"/{service.full_name}/{method.name}",
                                     request_serializer=request_class.SerializeToString,
                                     response_deserializer=response_class.FromString)
        request = request_class(gallery_id="reflected")
        request.gallery.display_name = "Built from reflection"
        request.gallery.region = "westeurope"
        with pytest.raises(grpc.RpcError) as err:
            create(request, timeout=20)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        gallery = create(request, metadata=[("authorization", f"Bearer {token}")], timeout=20)
        assert gallery.name == "galleries/reflected"
        assert gallery.display_name == "Built from reflection"


def test_each_request_is_answered_on_one_stream_v1_and_v1alpha(server):
    port, _ = server
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for method in (V1_METHOD, V1ALPHA_METHOD):
            responses = ask(
                channel, method,
                reflection_pb2.ServerReflectionRequest(host="h", list_services=""),
                reflection_pb2.ServerReflectionRequest(file_by_filename="labgallery/v1/images.proto"),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="labgallery.v1.ImageService.UploadImage"),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
                reflection_pb2.ServerReflectionRequest(file_by_filename="no/such.proto"),
                reflection_pb2.ServerReflectionRequest(file_containing_extension=reflection_pb2.ExtensionRequest(
                    containing_type="labgallery.v1.Gallery", extension_number=100)),
                reflection_pb2.ServerReflectionRequest(all_extension_numbers_of_type="labgallery.v1.Gallery"),
                reflection_pb2.ServerReflectionRequest())
            assert len(responses) == 8
            listed, by_file, by_symbol, no_symbol, no_file, extension, numbers, empty = responses
            assert listed.valid_host == "h" and listed.original_request.list_services == ""
            assert "labgallery.v1.ImageService" in [s.name for s in listed.list_services_response.service]
            # The file first, then its imports (transitively).
            names = [descriptor_name(b) for b in by_file.file_descriptor_response.file_descriptor_proto]
            assert names[0] == "labgallery/v1/images.proto"
            assert "labgallery/v1/resources.proto" in names and "google/protobuf/empty.proto" in names
            assert descriptor_name(by_symbol.file_descriptor_response.file_descriptor_proto[0]) == names[0]
            for answer in (no_symbol, no_file, extension):
                assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], answer
            assert numbers.all_extension_numbers_response.base_type_name == "labgallery.v1.Gallery"
            assert empty.error_response.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def descriptor_name(serialized):
    file = descriptor_pb2.FileDescriptorProto()
    file.ParseFromString(serialized)
    return file.name


def test_compressed_calls_through_a_reflected_stub_and_the_limit_after_inflation(server):
    """gzip to the gallery server: a compressed call succeeds; a request that is small on the
    wire but inflates past the 16 KiB limit of most gallery methods is RESOURCE_EXHAUSTED."""
    port, token = server
    auth = [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        method = pool.FindMethodByName("labgallery.v1.GalleryService.CreateGallery")
        request_class = message_factory.GetMessageClass(method.input_type)
        create = channel.unary_unary("/labgallery.v1.GalleryService/CreateGallery",
                                     request_serializer=request_class.SerializeToString,
                                     response_deserializer=message_factory.GetMessageClass(
                                         method.output_type).FromString)
        request = request_class(gallery_id="zipped")
        request.gallery.display_name = "Compressed"
        request.gallery.region = "westeurope"
        gallery = create(request, metadata=auth, compression=grpc.Compression.Gzip, timeout=20)
        assert gallery.name == "galleries/zipped"

        request.gallery_id = "bomb"
        request.gallery.display_name = "a" * 200_000  # ~200 KB inflated, a few hundred bytes of gzip
        with pytest.raises(grpc.RpcError) as err:
            create(request, metadata=auth, compression=grpc.Compression.Gzip, timeout=20)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
        assert "past the limit of 16384 bytes" in err.value.details()
