"""grpcio's Python client under the unary load of the client benchmark (run.sh).

``--connections`` channels (one HTTP/2 connection each: a local subchannel pool, or grpcio
would share one connection between equal channels) × ``--concurrency`` concurrent calls on
asyncio (``grpc.aio``, the fastest way to drive grpcio from Python), ``--warmup`` seconds
unmeasured then ``--duration`` seconds. Prints the line the Swift benchmarks print:
``unary calls=… seconds=… calls_per_sec=… p50_ms=… p99_ms=…``.
"""

import argparse
import asyncio
import pathlib
import sys
import tempfile
import time

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "Tests" / "Interop"))
import interop_stubs  # noqa: E402


async def main(args, stubs):
    target = f"{args.host}:{args.port}"
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(args.connections)
    ]
    clients = [stubs.test_pb2_grpc.TestServiceStub(channel) for channel in channels]
    request = stubs.messages_pb2.SimpleRequest(response_size=args.size)
    now = time.perf_counter_ns
    measure_from = now() + int(args.warmup * 1e9)
    deadline = measure_from + int(args.duration * 1e9)
    latencies = []

    async def worker(client):
        while True:
            start = now()
            if start >= deadline:
                return
            response = await client.UnaryCall(request)
            end = now()
            if len(response.payload.body) != args.size:
                raise RuntimeError(f"body of {len(response.payload.body)} bytes, not {args.size}")
            if start >= measure_from and end <= deadline:
                latencies.append(end - start)

    await asyncio.gather(*(worker(client) for client in clients for _ in range(args.concurrency)))
    for channel in channels:
        await channel.close()
    latencies.sort()

    def percentile(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6 if latencies else 0.0

    print(
        f"unary calls={len(latencies)} seconds={args.duration} "
        f"calls_per_sec={int(len(latencies) / args.duration)} "
        f"p50_ms={percentile(0.5):.3f} p99_ms={percentile(0.99):.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=16)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as stub_dir:
        asyncio.run(main(arguments, interop_stubs.load(pathlib.Path(stub_dir))))
