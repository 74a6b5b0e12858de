#!/usr/bin/env python3
"""The "Issue 13 targets" table of Benchmarks/run.sh: one row per target, our figure beside its
anchors from the same run, the target, and met or missed by how much.

Usage: Benchmarks/targets.py RESULTS   (RESULTS: key=value lines written by run.sh,
replication.sh and idle_memory.py during one run; a stage that was skipped shows as not measured)
"""
import sys


def read(path: str) -> dict:
    with open(path) as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)


def num(x: float) -> str:
    """Thousands separated when large, two decimals when small."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}"


def at_least(value: float, target: float, unit: str = "") -> str:
    if value >= target:
        return "**met**"
    return f"**missed** by {num(target - value)}{unit} ({value / target:.0%} of the target)"


def at_most(value: float, target: float, unit: str = "") -> str:
    if value <= target:
        return "**met**"
    return f"**missed** by {num(value - target)}{unit} ({value / target:.1f}× the target)"


def rows(r: dict) -> list:
    f = lambda key: float(r[key])  # noqa: E731
    out = []

    def row(label, keys, ours, anchors, target, verdict):
        if all(k in r and r[k] for k in keys):
            out.append((label, ours(), anchors(), target, verdict()))
        else:
            out.append((label, "not measured in this run", "", target, ""))

    row(f"1. Unary server (h2load {r.get('load', '?')}, 16-byte responses)",
        ["unary_ours", "unary_nghttpd", "unary_grpc_swift2", "unary_grpcio"],
        lambda: f"{num(f('unary_ours'))} req/s = {f('unary_ours') / f('unary_nghttpd'):.2f}× nghttpd",
        lambda: f"nghttpd {num(f('unary_nghttpd'))}; grpc-swift-2 {num(f('unary_grpc_swift2'))}; "
                f"grpcio {num(f('unary_grpcio'))} req/s",
        "≥ 0.7× nghttpd",
        lambda: at_least(f("unary_ours") / f("unary_nghttpd"), 0.7, "×"))
    row(f"2. Client, {r.get('clients', '?')} connections × {r.get('streams', '?')} concurrent unary calls, "
        "against our interop-server",
        ["client_ours", "client_grpc_swift2", "client_grpcio"],
        lambda: f"{num(f('client_ours'))} calls/s = {f('client_ours') / f('client_grpc_swift2'):.2f}× "
                f"grpc-swift-2, {f('client_ours') / f('client_grpcio'):.2f}× grpcio",
        lambda: f"grpc-swift-2 {num(f('client_grpc_swift2'))}; grpcio {num(f('client_grpcio'))} calls/s",
        "≥ 3× grpc-swift-2 and ≥ 20× grpcio",
        lambda: f"vs grpc-swift-2 {at_least(f('client_ours') / f('client_grpc_swift2'), 3, '×')}; "
                f"vs grpcio {at_least(f('client_ours') / f('client_grpcio'), 20, '×')}")
    tail = lambda key: " / ".join(r[key].split())  # noqa: E731
    row("3. Tail latency at half of each server's own max (h2load --rps), p50 / p99 / p99.9 ms",
        ["tail_ours", "tail_nghttpd", "tail_grpc_swift2"],
        lambda: tail("tail_ours"),
        lambda: f"nghttpd {tail('tail_nghttpd')}; grpc-swift-2 {tail('tail_grpc_swift2')}",
        "p99 < 1 ms",
        lambda: at_most(float(r["tail_ours"].split()[1]), 1.0, " ms"))
    mibs = lambda seconds: f("upload_mib") / f(seconds)  # noqa: E731
    row("4. Upload through UploadImage, Swift client (median of the rounds)",
        ["upload_s", "cat_s", "upload_mib"],
        lambda: f"{r['upload_mib']} MiB in {r['upload_s']} s = {mibs('upload_s'):,.0f} MiB/s = "
                f"{f('cat_s') / f('upload_s'):.2f}× cat",
        lambda: f"`cat` + fsync {r['cat_s']} s = {mibs('cat_s'):,.0f} MiB/s (median of {r.get('upload_rounds', '?')})",
        "≥ 0.8× cat",
        lambda: at_least(f("cat_s") / f("upload_s"), 0.8, "×"))
    row("5. Server streaming, 1 KiB messages, 4 streams (h2rpc-bench stream)",
        ["stream_ours", "stream_grpc_swift2", "stream_grpcio"],
        lambda: f"{num(f('stream_ours'))} msgs/s",
        lambda: f"grpc-swift-2 {num(f('stream_grpc_swift2'))}; grpcio {num(f('stream_grpcio'))} msgs/s",
        "≥ 1,000,000 msgs/s",
        lambda: at_least(f("stream_ours"), 1_000_000, " msgs/s"))
    count = f" ({int(r['idle_connections']):,} connections)" if "idle_connections" in r else ""
    row(f"6. Server RSS per idle connection that made one call{count}",
        ["idle_ours_kib", "idle_grpcio_kib", "idle_nghttpd_kib"],
        lambda: f"{r['idle_ours_kib']} KiB",
        lambda: f"grpcio {r['idle_grpcio_kib']}; nghttpd {r['idle_nghttpd_kib']} KiB",
        "≤ 12 KiB",
        lambda: at_most(f("idle_ours_kib"), 12, " KiB"))
    return out


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print("| measurement | ours | anchors (same run) | target | result |")
    print("|---|---|---|---|---|")
    for cells in rows(read(sys.argv[1])):
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
