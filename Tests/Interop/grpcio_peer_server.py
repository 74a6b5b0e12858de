"""A grpcio implementation of grpc.testing.TestService, per grpc's interop server spec.

(doc/interop-test-descriptions.md, "Server": EmptyCall, UnaryCall, StreamingInputCall,
StreamingOutputCall, FullDuplexCall, HalfDuplexCall, Echo Status, Echo Metadata,
ResponseParameters.interval_us and Compressed Response; grpcio does not tell a handler whether
a request message arrived compressed, so expect_compressed is not checked.) It is the reference
peer our Swift client is tested against. Run standalone with ``python3 grpcio_peer_server.py --port N``.
"""

import argparse
import pathlib
import signal
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

import interop_stubs

ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def make_servicer(stubs):
    """Returns a TestService servicer class built on the generated ``stubs``."""
    messages = stubs.messages_pb2
    empty = stubs.empty_pb2

    def echo_metadata(context):
        received = dict(context.invocation_metadata())
        if ECHO_INITIAL_KEY in received:
            context.send_initial_metadata(((ECHO_INITIAL_KEY, received[ECHO_INITIAL_KEY]),))
        if ECHO_TRAILING_KEY in received:
            context.set_trailing_metadata(((ECHO_TRAILING_KEY, received[ECHO_TRAILING_KEY]),))

    def echo_status(request, context):
        if request.HasField("response_status") and request.response_status.code != 0:
            status = request.response_status
            context.abort(_CODES.get(status.code, grpc.StatusCode.UNKNOWN), status.message)

    def payload(request_type, size, context):
        if request_type != messages.COMPRESSABLE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported payload type {request_type}")
        return messages.Payload(type=messages.COMPRESSABLE, body=b"\x00" * size)

    def responses_for(request, context):
        if any(parameters.compressed.value for parameters in request.response_parameters):
            context.set_compression(grpc.Compression.Gzip)
        for parameters in request.response_parameters:
            if parameters.interval_us:
                time.sleep(parameters.interval_us / 1e6)
            if not parameters.compressed.value:
                context.disable_next_message_compression()
            yield messages.StreamingOutputCallResponse(
                payload=payload(request.response_type, parameters.size, context))

    class TestService(stubs.test_pb2_grpc.TestServiceServicer):
        """grpc.testing.TestService per the interop spec."""

        def EmptyCall(self, request, context):
            echo_metadata(context)
            return empty.Empty()

        def UnaryCall(self, request, context):
            echo_metadata(context)
            echo_status(request, context)
            if request.response_compressed.value:
                context.set_compression(grpc.Compression.Gzip)
            return messages.SimpleResponse(
                payload=payload(request.response_type, request.response_size, context))

        def StreamingOutputCall(self, request, context):
            echo_metadata(context)
            yield from responses_for(request, context)
            echo_status(request, context)

        def StreamingInputCall(self, request_iterator, context):
            echo_metadata(context)
            total = sum(len(request.payload.body) for request in request_iterator)
            return messages.StreamingInputCallResponse(aggregated_payload_size=total)

        def FullDuplexCall(self, request_iterator, context):
            echo_metadata(context)
            for request in request_iterator:
                echo_status(request, context)
                yield from responses_for(request, context)

        def HalfDuplexCall(self, request_iterator, context):
            echo_metadata(context)
            buffered = list(request_iterator)
            for request in buffered:
                echo_status(request, context)
                yield from responses_for(request, context)

        def UnimplementedCall(self, request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "not implemented, by design")

    return TestService


def start(stubs, host="127.0.0.1", port=0, credentials=None):
    """Starts a grpcio server on ``host:port`` (TLS with ``credentials``, e.g.
    ``grpc.ssl_server_credentials``); returns ``(server, bound_port)``."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    stubs.test_pb2_grpc.add_TestServiceServicer_to_server(make_servicer(stubs)(), server)
    if credentials is not None:
        bound = server.add_secure_port(f"{host}:{port}", credentials)
    else:
        bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise RuntimeError(f"grpcio could not listen on {host}:{port}")
    server.start()
    return server, bound


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    stubs = interop_stubs.load(pathlib.Path(tempfile.mkdtemp(prefix="interop-stubs-")))
    server, port = start(stubs, args.host, args.port)
    print(f"listening on port {port}", flush=True)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    sys.exit(main())
