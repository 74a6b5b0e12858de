"""Server reflection on our interop-server, through grpcio-reflection's client: the services,
and TestService's methods resolved from the reflected descriptors."""

from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def test_lists_services_and_resolves_test_service(h2rpc_channel):
    database = ProtoReflectionDescriptorDatabase(h2rpc_channel)
    assert set(database.get_services()) == {
        "grpc.testing.TestService", "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName("grpc.testing.TestService")
    assert service.file.name == "grpc/testing/test.proto"
    call = service.methods_by_name["UnaryCall"]
    assert call.input_type.full_name == "grpc.testing.SimpleRequest"
    assert call.input_type.fields_by_name["expect_compressed"].message_type.full_name == "grpc.testing.BoolValue"
    assert pool.FindMessageTypeByName("grpc.testing.StreamingOutputCallResponse").fields_by_name["payload"]
