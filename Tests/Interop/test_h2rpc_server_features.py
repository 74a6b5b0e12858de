"""Server features of the interop spec the 14 client cases do not reach, checked with grpcio
against our interop-server (and, as a control, against the grpcio peer server)."""

import time
from concurrent import futures

import grpc
import pytest

from grpcio_interop_cases import ECHO_INITIAL_KEY, ECHO_TRAILING_KEY, Pipe


@pytest.fixture(params=["h2rpc", "grpcio"])
def channel(request):
    """A channel to our server, or to the grpcio peer (the control)."""
    return request.getfixturevalue(f"{request.param}_channel")


def _stub(channel, stubs):
    return stubs.test_pb2_grpc.TestServiceStub(channel)


def test_half_duplex_answers_after_half_close(channel, stubs):
    m = stubs.messages_pb2
    sizes = [3, 1, 4]
    with Pipe() as pipe:
        responses = _stub(channel, stubs).HalfDuplexCall(pipe)
        for size in sizes:
            pipe.add(m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=size)]))
        pipe.close()
        assert [len(r.payload.body) for r in responses] == sizes


def test_interval_us_delays_each_response(channel, stubs):
    m = stubs.messages_pb2
    request = m.StreamingOutputCallRequest(
        response_parameters=[m.ResponseParameters(size=1, interval_us=150_000) for _ in range(2)])
    start = time.monotonic()
    responses = list(_stub(channel, stubs).StreamingOutputCall(request))
    assert len(responses) == 2
    assert time.monotonic() - start >= 0.3


def test_streaming_output_echoes_status_after_responses(channel, stubs):
    m = stubs.messages_pb2
    request = m.StreamingOutputCallRequest(
        response_parameters=[m.ResponseParameters(size=5)],
        response_status=m.EchoStatus(code=9, message="after one response"))
    responses = _stub(channel, stubs).StreamingOutputCall(request)
    assert len(next(responses).payload.body) == 5
    with pytest.raises(grpc.RpcError) as info:
        next(responses)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == "after one response"


def test_echo_metadata_with_error_status(channel, stubs):
    m = stubs.messages_pb2
    metadata = ((ECHO_INITIAL_KEY, "initial"), (ECHO_TRAILING_KEY, b"\x00\xff\x01"))
    with pytest.raises(grpc.RpcError) as info:
        _stub(channel, stubs).UnaryCall(
            m.SimpleRequest(response_status=m.EchoStatus(code=5, message="gone")), metadata=metadata)
    error = info.value
    assert error.code() == grpc.StatusCode.NOT_FOUND and error.details() == "gone"
    assert dict(error.initial_metadata()).get(ECHO_INITIAL_KEY) == "initial"
    assert dict(error.trailing_metadata()).get(ECHO_TRAILING_KEY) == b"\x00\xff\x01"


def test_every_status_code_and_message_round_trip(channel, stubs):
    """Codes 0-16 travel as they are; the message survives percent-encoding."""
    m = stubs.messages_pb2
    for code in grpc.StatusCode:
        if code == grpc.StatusCode.OK:
            continue
        with pytest.raises(grpc.RpcError) as info:
            _stub(channel, stubs).UnaryCall(
                m.SimpleRequest(response_status=m.EchoStatus(code=code.value[0], message=f"100% {code.name}")))
        assert info.value.code() == code
        assert info.value.details() == f"100% {code.name}"


def test_unsupported_payload_type_is_invalid_argument(channel, stubs):
    m = stubs.messages_pb2
    with pytest.raises(grpc.RpcError) as info:
        _stub(channel, stubs).UnaryCall(m.SimpleRequest(response_type=1, response_size=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_request_over_4_mib_is_resource_exhausted(channel, stubs):
    m = stubs.messages_pb2
    with pytest.raises(grpc.RpcError) as info:
        _stub(channel, stubs).UnaryCall(
            m.SimpleRequest(response_size=1, payload=m.Payload(body=b"\x00" * (4 * 1024 * 1024 + 1))))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_concurrent_large_unary(channel, stubs):
    """Many large unary calls in parallel on one connection (flow control under load)."""
    m = stubs.messages_pb2
    stub = _stub(channel, stubs)
    request = m.SimpleRequest(response_size=314159, payload=m.Payload(body=b"\x00" * 271828))
    with futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: stub.UnaryCall(request, timeout=30), range(64)))
    assert all(len(r.payload.body) == 314159 for r in results)
