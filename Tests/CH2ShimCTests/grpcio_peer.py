"""grpcio as the real gRPC peer of the shim test binary (method /x.Y/Echo, raw bytes)."""
import subprocess, sys, concurrent.futures as cf
import grpc

def client_vs(binary):
    # The C binary serves; grpcio calls it (unary + many concurrent calls + server error path).
    p = subprocess.Popen([binary, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(p.stdout.readline())
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        echo = ch.unary_unary("/x.Y/Echo", request_serializer=None, response_deserializer=None)
        assert echo(b"hello grpc", timeout=5) == b"hello grpc"
        assert echo(b"", timeout=5) == b""
        big = bytes(range(256)) * 4000  # ~1 MB
        assert echo(big, timeout=10) == big
        with cf.ThreadPoolExecutor(32) as ex:
            futs = [echo.future(b"m%d" % i, timeout=10) for i in range(600)]
            for i, f in enumerate(futs):
                assert f.result() == b"m%d" % i
        # Trailers-Only with an error status
        to = ch.unary_unary("/t.S/TrailersOnly", request_serializer=None, response_deserializer=None)
        try:
            to(b"x", timeout=5)
            raise AssertionError("expected an error")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e.code()
        ch.close()
        print("grpcio client vs shim server: OK")
    finally:
        p.stdin.close()
        assert p.wait(10) == 0

def server_vs(binary):
    server = grpc.server(cf.ThreadPoolExecutor(4))
    h = grpc.method_handlers_generic_handler("x.Y", {
        "Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req,
                                                    request_deserializer=None, response_serializer=None)})
    server.add_generic_rpc_handlers((h,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        r = subprocess.run([binary, "client", str(port)], timeout=30)
        assert r.returncode == 0
        print("shim client vs grpcio server: OK")
    finally:
        server.stop(0)

if __name__ == "__main__":
    {"client-vs": client_vs, "server-vs": server_vs}[sys.argv[1]](sys.argv[2])
