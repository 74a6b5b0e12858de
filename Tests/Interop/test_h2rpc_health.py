"""grpc.health.v1.Health on our interop-server, checked with grpcio."""

import grpc
import pytest


def _stub(channel, stubs):
    return stubs.health_pb2_grpc.HealthStub(channel)


@pytest.mark.parametrize("service", ["", "grpc.testing.TestService"])
def test_check_serving(h2rpc_channel, stubs, service):
    response = _stub(h2rpc_channel, stubs).Check(stubs.health_pb2.HealthCheckRequest(service=service))
    assert response.status == stubs.health_pb2.HealthCheckResponse.SERVING


def test_check_unknown_service_is_not_found(h2rpc_channel, stubs):
    with pytest.raises(grpc.RpcError) as info:
        _stub(h2rpc_channel, stubs).Check(stubs.health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_sends_current_status_at_once(h2rpc_channel, stubs):
    health = stubs.health_pb2
    responses = _stub(h2rpc_channel, stubs).Watch(health.HealthCheckRequest(service=""), timeout=10)
    assert next(responses).status == health.HealthCheckResponse.SERVING
    responses.cancel()


def test_watch_unknown_service_reports_service_unknown(h2rpc_channel, stubs):
    health = stubs.health_pb2
    responses = _stub(h2rpc_channel, stubs).Watch(health.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert next(responses).status == health.HealthCheckResponse.SERVICE_UNKNOWN
    responses.cancel()
