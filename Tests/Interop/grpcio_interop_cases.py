"""The 18 interop client test cases, implemented with grpcio stubs.

Each case follows grpc's doc/interop-test-descriptions.md ("Client" section) and asserts
exactly what it asserts, within what grpcio's API can do: it cannot see whether a response
message arrived compressed, nor send one message of a compressed stream uncompressed, so the
compressed cases check the payloads (and client_compressed_streaming compresses both of its
messages). ``run(name, channel, stubs)`` runs one; an AssertionError says what went wrong.
"""

import threading

import grpc

ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"

CASE_NAMES = [
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_compressed_streaming",
    "server_compressed_streaming",
]


class Pipe:
    """A request iterator fed one message at a time (for ping-pong style streams)."""

    def __init__(self):
        self._condition = threading.Condition()
        self._values = []
        self._open = True

    def __iter__(self):
        return self

    def __next__(self):
        with self._condition:
            while not self._values and self._open:
                self._condition.wait()
            if self._values:
                return self._values.pop(0)
            raise StopIteration()

    def add(self, value):
        with self._condition:
            self._values.append(value)
            self._condition.notify()

    def close(self):
        with self._condition:
            self._open = False
            self._condition.notify()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Case:
    def __init__(self, channel, stubs):
        self.channel = channel
        self.m = stubs.messages_pb2
        self.empty = stubs.empty_pb2
        self.stub = stubs.test_pb2_grpc.TestServiceStub(channel)
        self.unimplemented_stub = stubs.test_pb2_grpc.UnimplementedServiceStub(channel)

    def zeros(self, size):
        return self.m.Payload(body=b"\x00" * size)

    def check_payload(self, payload, size, what):
        assert len(payload.body) == size, f"{what}: payload is {len(payload.body)} bytes, expected {size}"
        assert payload.body == b"\x00" * size, f"{what}: payload is not all zeros"

    # -- cases ---------------------------------------------------------------

    def empty_unary(self):
        response = self.stub.EmptyCall(self.empty.Empty())
        assert isinstance(response, self.empty.Empty), f"response is {type(response)}"

    def large_unary(self):
        response = self.stub.UnaryCall(
            self.m.SimpleRequest(response_size=314159, payload=self.zeros(271828)))
        self.check_payload(response.payload, 314159, "UnaryCall response")

    def client_streaming(self):
        requests = (self.m.StreamingInputCallRequest(payload=self.zeros(size))
                    for size in (27182, 8, 1828, 45904))
        response = self.stub.StreamingInputCall(requests)
        assert response.aggregated_payload_size == 74922, \
            f"aggregated_payload_size is {response.aggregated_payload_size}, expected 74922"

    def server_streaming(self):
        sizes = [31415, 9, 2653, 58979]
        request = self.m.StreamingOutputCallRequest(
            response_parameters=[self.m.ResponseParameters(size=size) for size in sizes])
        responses = list(self.stub.StreamingOutputCall(request))
        assert len(responses) == len(sizes), f"received {len(responses)} responses, expected {len(sizes)}"
        for index, (response, size) in enumerate(zip(responses, sizes)):
            self.check_payload(response.payload, size, f"response #{index + 1}")

    def ping_pong(self):
        request_sizes = [27182, 8, 1828, 45904]
        response_sizes = [31415, 9, 2653, 58979]
        with Pipe() as pipe:
            responses = self.stub.FullDuplexCall(pipe)
            for index, (request_size, response_size) in enumerate(zip(request_sizes, response_sizes)):
                pipe.add(self.m.StreamingOutputCallRequest(
                    response_parameters=[self.m.ResponseParameters(size=response_size)],
                    payload=self.zeros(request_size)))
                response = next(responses)
                self.check_payload(response.payload, response_size, f"response #{index + 1}")
            pipe.close()
            rest = list(responses)
            assert not rest, f"received {len(rest)} responses more than the 4 expected"
            assert responses.code() == grpc.StatusCode.OK, f"status is {responses.code()}"

    def empty_stream(self):
        responses = self.stub.FullDuplexCall(iter(()))
        received = list(responses)
        assert not received, f"received {len(received)} responses, expected none"
        assert responses.code() == grpc.StatusCode.OK, f"status is {responses.code()}"

    def custom_metadata(self):
        initial_value = "test_initial_metadata_value"
        trailing_value = b"\xab\xab\xab"
        metadata = ((ECHO_INITIAL_KEY, initial_value), (ECHO_TRAILING_KEY, trailing_value))

        def check(initial, trailing, step):
            initial, trailing = dict(initial), dict(trailing)
            assert initial.get(ECHO_INITIAL_KEY) == initial_value, \
                f"{step}: initial metadata {ECHO_INITIAL_KEY} is {initial.get(ECHO_INITIAL_KEY)!r}"
            assert trailing.get(ECHO_TRAILING_KEY) == trailing_value, \
                f"{step}: trailing metadata {ECHO_TRAILING_KEY} is {trailing.get(ECHO_TRAILING_KEY)!r}"

        response, call = self.stub.UnaryCall.with_call(
            self.m.SimpleRequest(response_size=314159, payload=self.zeros(271828)), metadata=metadata)
        self.check_payload(response.payload, 314159, "UnaryCall response")
        check(call.initial_metadata(), call.trailing_metadata(), "UnaryCall")

        request = self.m.StreamingOutputCallRequest(
            response_parameters=[self.m.ResponseParameters(size=314159)], payload=self.zeros(271828))
        responses = self.stub.FullDuplexCall(iter((request,)), metadata=metadata)
        received = list(responses)
        assert len(received) == 1, f"FullDuplexCall: received {len(received)} responses, expected 1"
        self.check_payload(received[0].payload, 314159, "FullDuplexCall response")
        check(responses.initial_metadata(), responses.trailing_metadata(), "FullDuplexCall")

    def _status_round_trip(self, message):
        echo = self.m.EchoStatus(code=2, message=message)
        try:
            self.stub.UnaryCall(self.m.SimpleRequest(response_status=echo))
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNKNOWN, f"UnaryCall: code is {error.code()}"
            assert error.details() == message, f"UnaryCall: message is {error.details()!r}, expected {message!r}"
        else:
            raise AssertionError("UnaryCall succeeded, expected status 2 (UNKNOWN)")
        return echo

    def status_code_and_message(self):
        message = "test status message"
        echo = self._status_round_trip(message)
        responses = self.stub.FullDuplexCall(iter((self.m.StreamingOutputCallRequest(response_status=echo),)))
        try:
            list(responses)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNKNOWN, f"FullDuplexCall: code is {error.code()}"
            assert error.details() == message, f"FullDuplexCall: message is {error.details()!r}"
        else:
            raise AssertionError("FullDuplexCall succeeded, expected status 2 (UNKNOWN)")

    def special_status_message(self):
        self._status_round_trip(SPECIAL_MESSAGE)

    def _expect_unimplemented(self, call, what):
        try:
            call()
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNIMPLEMENTED, f"{what}: code is {error.code()}"
        else:
            raise AssertionError(f"{what} succeeded, expected UNIMPLEMENTED")

    def unimplemented_method(self):
        # The spec's method name (grpc's test.proto); no server implements it.
        method = self.channel.unary_unary(
            "/grpc.testing.TestService/UnimplementedCall",
            request_serializer=self.empty.Empty.SerializeToString,
            response_deserializer=self.empty.Empty.FromString)
        self._expect_unimplemented(lambda: method(self.empty.Empty()), "TestService/UnimplementedCall")

    def unimplemented_service(self):
        self._expect_unimplemented(
            lambda: self.unimplemented_stub.UnimplementedCall(self.empty.Empty()),
            "UnimplementedService/UnimplementedCall")

    def cancel_after_begin(self):
        with Pipe() as pipe:
            future = self.stub.StreamingInputCall.future(pipe)
            future.cancel()
            assert future.cancelled(), "the call was not cancelled"
            assert future.code() == grpc.StatusCode.CANCELLED, f"status is {future.code()}"

    def cancel_after_first_response(self):
        with Pipe() as pipe:
            responses = self.stub.FullDuplexCall(pipe)
            pipe.add(self.m.StreamingOutputCallRequest(
                response_parameters=[self.m.ResponseParameters(size=31415)], payload=self.zeros(27182)))
            first = next(responses)
            self.check_payload(first.payload, 31415, "first response")
            responses.cancel()
            try:
                next(responses)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.CANCELLED, f"status is {error.code()}"
            else:
                raise AssertionError("received a response after cancelling")

    def timeout_on_sleeping_server(self):
        with Pipe() as pipe:
            responses = self.stub.FullDuplexCall(pipe, timeout=0.001)
            pipe.add(self.m.StreamingOutputCallRequest(payload=self.zeros(27182)))
            try:
                next(responses)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, f"status is {error.code()}"
            else:
                raise AssertionError("received a response, expected DEADLINE_EXCEEDED")

    def _expect_probe_rejected(self, call, what):
        """The compressed-request feature probe: an uncompressed message flagged
        expect_compressed must fail with INVALID_ARGUMENT; a server that cannot see how a
        message arrived (a grpcio server) answers OK, and the probe is passed over."""
        try:
            call()
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{what}: code is {error.code()}"

    def client_compressed_unary(self):
        def request(expect):
            return self.m.SimpleRequest(response_size=314159, payload=self.zeros(271828),
                                        expect_compressed=self.m.BoolValue(value=expect))

        self._expect_probe_rejected(lambda: self.stub.UnaryCall(request(True)), "UnaryCall probe")
        response = self.stub.UnaryCall(request(True), compression=grpc.Compression.Gzip)
        self.check_payload(response.payload, 314159, "compressed UnaryCall response")
        response = self.stub.UnaryCall(request(False))
        self.check_payload(response.payload, 314159, "uncompressed UnaryCall response")

    def server_compressed_unary(self):
        for compressed in (True, False):
            response = self.stub.UnaryCall(self.m.SimpleRequest(
                response_size=314159, payload=self.zeros(271828),
                response_compressed=self.m.BoolValue(value=compressed)))
            self.check_payload(response.payload, 314159, f"UnaryCall response (compressed: {compressed})")

    def client_compressed_streaming(self):
        def request(size, expect):
            return self.m.StreamingInputCallRequest(payload=self.zeros(size),
                                                    expect_compressed=self.m.BoolValue(value=expect))

        self._expect_probe_rejected(
            lambda: self.stub.StreamingInputCall(iter((request(27182, True),))), "StreamingInputCall probe")
        response = self.stub.StreamingInputCall(
            iter((request(27182, True), request(45904, True))), compression=grpc.Compression.Gzip)
        assert response.aggregated_payload_size == 73086, \
            f"aggregated_payload_size is {response.aggregated_payload_size}, expected 73086"

    def server_compressed_streaming(self):
        parameters = [(31415, True), (92653, False)]
        request = self.m.StreamingOutputCallRequest(response_parameters=[
            self.m.ResponseParameters(size=size, compressed=self.m.BoolValue(value=compressed))
            for size, compressed in parameters])
        responses = list(self.stub.StreamingOutputCall(request))
        assert len(responses) == 2, f"received {len(responses)} responses, expected 2"
        for index, (response, (size, _)) in enumerate(zip(responses, parameters)):
            self.check_payload(response.payload, size, f"response #{index + 1}")


def run(name, channel, stubs):
    """Runs the case called ``name`` over ``channel``."""
    if name not in CASE_NAMES:
        raise ValueError(f"unknown test case {name!r}")
    getattr(_Case(channel, stubs), name)()
