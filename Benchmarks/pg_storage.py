#!/usr/bin/env python3
"""Round trip of a write transaction through PostgresStorage, against SQLite, same run.

Starts a throwaway PostgreSQL cluster (Tools/pg-cluster.sh), then labgallery-server on it and on
SQLite, and times CreateGallery (a check-then-insert SERIALIZABLE write transaction, plus the
RPC) from one channel sequentially and from 8 threads at once; GetGallery (a read transaction)
sequentially. Prints p50/p99 in microseconds and calls/s per engine.

    python3 Benchmarks/pg_storage.py [--calls 3000] [--binary .build/release/labgallery-server]
"""

import argparse
import importlib
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "pyhelpers"))
import labgallery_testing  # noqa: E402


def stubs(out):
    out.mkdir(parents=True, exist_ok=True)
    protos = ROOT / "Protos"
    sources = sorted(str(p.relative_to(protos)) for p in (protos / "labgallery" / "v1").glob("*.proto"))
    bundled = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    assert protoc.main(["protoc", f"-I{protos}", f"-I{bundled}", f"--python_out={out}",
                        f"--grpc_python_out={out}", *sources]) == 0
    sys.path.insert(0, str(out))
    return (importlib.import_module("labgallery.v1.galleries_pb2"),
            importlib.import_module("labgallery.v1.galleries_pb2_grpc"),
            importlib.import_module("labgallery.v1.resources_pb2"))


def percentiles(samples):
    samples = sorted(samples)
    return samples[len(samples) // 2] * 1e6, samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6


def measure(port, token, calls, api, prefix):
    galleries, grpc_mod, resources = api
    auth = [("authorization", f"Bearer {token}")]
    results = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = grpc_mod.GalleryServiceStub(channel)
        for i in range(50):  # warm-up: connections, prepared statements
            stub.CreateGallery(galleries.CreateGalleryRequest(
                gallery_id=f"{prefix}w{i}", gallery=resources.Gallery(region="eastus")), metadata=auth)
        samples = []
        start = time.perf_counter()
        for i in range(calls):
            t = time.perf_counter()
            stub.CreateGallery(galleries.CreateGalleryRequest(
                gallery_id=f"{prefix}s{i}", gallery=resources.Gallery(region="eastus")), metadata=auth)
            samples.append(time.perf_counter() - t)
        results["create, 1 client"] = (*percentiles(samples), calls / (time.perf_counter() - start))
        samples = []
        start = time.perf_counter()
        for i in range(calls):
            t = time.perf_counter()
            stub.GetGallery(galleries.GetGalleryRequest(name=f"galleries/{prefix}s{i}"), metadata=auth)
            samples.append(time.perf_counter() - t)
        results["get, 1 client"] = (*percentiles(samples), calls / (time.perf_counter() - start))

    lock = threading.Lock()
    samples = []

    def worker(w):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = grpc_mod.GalleryServiceStub(channel)
            mine = []
            for i in range(calls // 8):
                t = time.perf_counter()
                stub.CreateGallery(galleries.CreateGalleryRequest(
                    gallery_id=f"{prefix}c{w}-{i}", gallery=resources.Gallery(region="eastus")), metadata=auth)
                mine.append(time.perf_counter() - t)
            with lock:
                samples.extend(mine)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results["create, 8 clients"] = (*percentiles(samples), len(samples) / (time.perf_counter() - start))
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--binary", default=None)
    args = parser.parse_args()
    binary = args.binary or labgallery_testing.find_binary("labgallery-server", ("release", "debug"))
    with tempfile.TemporaryDirectory(prefix="pgbench-") as tmp:
        tmp = pathlib.Path(tmp)
        api = stubs(tmp / "stubs")
        # Directly under /tmp: the cluster's user (postgres, when run as root) must reach it.
        cluster = pathlib.Path(tempfile.mkdtemp(prefix="pgbench-cluster-"))
        url = subprocess.run([ROOT / "Tools" / "pg-cluster.sh", "start", cluster], capture_output=True,
                             text=True, check=True).stdout.strip()
        try:
            subprocess.run(["psql", url, "-qc", "CREATE DATABASE bench"], check=True)
            engines = {"postgresql": ["--database", url.rsplit("/", 1)[0] + "/bench"], "sqlite": []}
            for name, flags in engines.items():
                data = tmp / f"data-{name}"
                with labgallery_testing.ServerProcess([binary, *flags, "--data-dir", data, "--port", "0",
                                                       "--log-level", "warning"], log_dir=tmp / name) as server:
                    port = int(server.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))
                    token = (data / "admin.token").read_text().strip()
                    for what, (p50, p99, rate) in measure(port, token, args.calls, api, name[0]).items():
                        print(f"{name:10s} {what:18s} p50 {p50:7.0f} us  p99 {p99:7.0f} us  {rate:7.0f} calls/s")
                    server.stop()
        finally:
            subprocess.run([ROOT / "Tools" / "pg-cluster.sh", "stop", cluster], check=True)
            subprocess.run(["rm", "-rf", cluster], check=True)
    print(f"({args.calls} calls each; binary {binary}; round trips include the RPC over loopback)")


if __name__ == "__main__":
    main()
