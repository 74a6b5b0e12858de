#!/usr/bin/env python3
"""Issue 12, measured: a fleet of labgallery-server instances on one PostgreSQL (`make bench-fleet`).

1. Metadata calls -- GetGallery, ListGalleries of 100 (page_size 100 over more galleries),
   CreateGallery then DeleteGallery (one operation) -- p50/p99 latency and calls/s under the same
   client load (``--threads`` client threads, each with its own channel, ``--calls`` calls each
   after a warm-up), for three setups in one run: SQLite single instance, PostgreSQL single
   instance, three instances on one PostgreSQL (client threads spread round-robin over them).
2. Failover -- three instances with ``--replication-lease-seconds L``; an image replicating to 8
   regions over a bandwidth-limited WAN model; once jobs run and each of its files holds
   ``--kill-at-mib`` (past the first durable progress write), ``kill -9`` of the instance holding
   the most live leases. Measured from the kill: the first write to one of the victim's partial
   replica files by a taking-over instance (its truncate to the durable offset, then its first
   copied byte: the file growing past the row's durable offset), and every job COMPLETED; every
   region's replica is then checked against the image's SHA-256.

A throwaway PostgreSQL cluster (Tools/pg-cluster.sh, fsync off) lives in a directory directly
under /tmp (the postgres user cannot enter private temp dirs) and is stopped at the end whatever
happens; every setup and failover run gets a fresh database.

    python3 Benchmarks/fleet.py [--calls 300] [--threads 8] [--leases 3,10] [--repeats 3]
        [--image-mib 16] [--bandwidth-mib 2] [--kill-at-mib 5] [--skip-metadata] [--skip-failover]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import threading
import time

import grpc

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "pyhelpers"))
import labgallery_testing  # noqa: E402

REGIONS = [f"r{i}" for i in range(9)]  # one home region and 8 replica regions
LISTEN = r".*listening on 127\.0\.0\.1:(\d+).*"


# MARK: - machine state


class LoadSampler:
    """Samples the 1-minute load average every second; the range seen per phase."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            with open("/proc/loadavg") as f:
                self.samples.append((time.monotonic(), float(f.read().split()[0])))
            self._stop.wait(1)

    def range_since(self, start: float) -> str:
        seen = [load for at, load in self.samples if at >= start] or [self.samples[-1][1]]
        return f"{min(seen):.1f}–{max(seen):.1f}"

    def stop(self):
        self._stop.set()
        self._thread.join()


def cpu_seconds(pids) -> float:
    """User + system CPU seconds so far of the processes ``pids`` (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids(cluster) -> list[int]:
    """The postmaster and its children (backends, writers) of ``cluster``."""
    postmaster = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return [postmaster, *children]


# MARK: - servers


class Setup:
    """``count`` labgallery-server processes on one storage and one data directory."""

    def __init__(self, binary, root: pathlib.Path, count: int, database_url: str | None, extra=()):
        self.root = root
        self.data_dir = root / "shared-data"
        self.database_url = database_url
        root.mkdir(parents=True, exist_ok=True)
        regions = root / "regions.json"
        regions.write_text(json.dumps({"geographies": {"Benchland": REGIONS}}))
        self.processes: list[labgallery_testing.ServerProcess] = []
        self.ports: list[int] = []
        self.names: list[str] = []
        storage = ["--database", database_url] if database_url else []
        try:
            for i in range(count):
                name = "abc"[i]
                process = labgallery_testing.ServerProcess(
                    [binary, *storage, "--data-dir", self.data_dir, "--port", "0", "--regions-file", regions,
                     "--log-level", "warning", "--instance-id", name, *extra], log_dir=root / name)
                self.processes.append(process)
                self.ports.append(int(process.wait_for_line(LISTEN, timeout=120).group(1)))
                self.names.append(name)
        except BaseException:
            self.close()
            raise

    @property
    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def close(self):
        for process in self.processes:
            if process.returncode is None:
                process.process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.process.wait(timeout=30)
            except Exception:  # noqa: BLE001 -- killed below
                pass
            process.__exit__(None, None, None)


# MARK: - metadata calls


def percentile(sorted_samples, q):
    return sorted_samples[min(len(sorted_samples) - 1, int(len(sorted_samples) * q))]


def timed_load(ports, threads, warmup, calls, operation, cpu_probe):
    """Runs ``operation(stub, worker, i)`` from ``threads`` threads (worker w on ports[w % n], its own
    channel): ``warmup`` calls, then all start together for ``calls`` timed calls each. Returns
    (p50 ms, p99 ms, operations/s, CPU ms per operation of client, servers and PostgreSQL);
    ``cpu_probe()`` gives the servers' and PostgreSQL's CPU seconds so far."""
    start_line = threading.Barrier(threads + 1)
    samples: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(w):
        try:
            with grpc.insecure_channel(f"127.0.0.1:{ports[w % len(ports)]}") as channel:
                for i in range(warmup):
                    operation(channel, w, -1 - i)
                start_line.wait(timeout=300)
                mine = []
                for i in range(calls):
                    t = time.perf_counter()
                    operation(channel, w, i)
                    mine.append(time.perf_counter() - t)
                with lock:
                    samples.extend(mine)
        except BaseException as error:  # noqa: BLE001 -- reported by the main thread
            errors.append(error)
            start_line.abort()

    workers = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for t in workers:
        t.start()
    try:
        start_line.wait(timeout=300)
    except threading.BrokenBarrierError:
        pass
    began = time.perf_counter()
    client_before, (server_before, pg_before) = cpu_seconds([os.getpid()]), cpu_probe()
    for t in workers:
        t.join()
    wall = time.perf_counter() - began
    client, (server, pg) = cpu_seconds([os.getpid()]) - client_before, cpu_probe()
    if errors:
        raise errors[0]
    samples.sort()
    n = len(samples)
    return (percentile(samples, 0.5) * 1e3, percentile(samples, 0.99) * 1e3, n / wall,
            (client * 1e3 / n, (server - server_before) * 1e3 / n, (pg - pg_before) * 1e3 / n))


def metadata(api, setup: Setup, args, sampler, cluster) -> dict:
    galleries, resources = api["galleries"], api["resources"]
    auth = [("authorization", f"Bearer {setup.token}")]
    with grpc.insecure_channel(f"127.0.0.1:{setup.ports[0]}") as channel:
        stub = api["galleries_grpc"].GalleryServiceStub(channel)
        for i in range(args.galleries):
            stub.CreateGallery(galleries.CreateGalleryRequest(gallery_id=f"seed-{i:04d}",
                                                              gallery=resources.Gallery(region=REGIONS[0])),
                               metadata=auth, timeout=60)

    def get(channel, w, i):
        api["galleries_grpc"].GalleryServiceStub(channel).GetGallery(
            galleries.GetGalleryRequest(name=f"galleries/seed-{(w * 7919 + i) % args.galleries:04d}"),
            metadata=auth, timeout=60)

    def list100(channel, w, i):
        got = api["galleries_grpc"].GalleryServiceStub(channel).ListGalleries(
            galleries.ListGalleriesRequest(page_size=100), metadata=auth, timeout=60)
        assert len(got.galleries) == 100, len(got.galleries)

    def create_delete(channel, w, i):
        stub = api["galleries_grpc"].GalleryServiceStub(channel)
        gallery_id = f"cd-{w}-{i}".replace("--", "-w")
        stub.CreateGallery(galleries.CreateGalleryRequest(gallery_id=gallery_id,
                                                          gallery=resources.Gallery(region=REGIONS[0])),
                           metadata=auth, timeout=60)
        stub.DeleteGallery(galleries.DeleteGalleryRequest(name=f"galleries/{gallery_id}"), metadata=auth,
                           timeout=60)

    def cpu_probe():
        servers = cpu_seconds(p.pid for p in setup.processes)
        return servers, (cpu_seconds(postgres_pids(cluster)) if setup.database_url else 0.0)

    results = {}
    for label, operation in (("Get", get), ("List of 100", list100), ("Create+Delete", create_delete)):
        began = time.monotonic()
        results[label] = (*timed_load(setup.ports, args.threads, args.warmup, args.calls, operation, cpu_probe),
                          sampler.range_since(began))
    return results


# MARK: - failover


def sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def upload(api, port, token, gallery_id, image_id, data):
    images, resources = api["images"], api["resources"]
    auth = [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        api["galleries_grpc"].GalleryServiceStub(channel).CreateGallery(
            api["galleries"].CreateGalleryRequest(gallery_id=gallery_id, gallery=resources.Gallery(region=REGIONS[0])),
            metadata=auth, timeout=60)
        header = images.UploadImageRequest.Header(gallery=f"galleries/{gallery_id}", image_id=image_id,
                                                  display_name=image_id, os_type=resources.LINUX,
                                                  os_state=resources.GENERALIZED,
                                                  sha256=hashlib.sha256(data).hexdigest())
        chunks = [images.UploadImageRequest(chunk=data[i:i + (1 << 20)]) for i in range(0, len(data), 1 << 20)]
        api["images_grpc"].ImageServiceStub(channel).UploadImage(
            iter([images.UploadImageRequest(header=header)] + chunks), metadata=auth, timeout=300)


def wait_for(predicate, what, timeout):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise RuntimeError(f"no {what} within {timeout:g} s")
        time.sleep(0.02)  # polling the database or the files: the event has no other signal here


def failover(api, binary, cluster, root: pathlib.Path, lease: int, args, run: int) -> dict:
    database = f"failover_l{lease}_r{run}"
    url = cluster.create_database(database)
    config = root / "replication.json"
    root.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"concurrency": 4, "maxAttempts": 5, "backoffInitialMs": 100,
                                  "backoffMaxMs": 500, "wan": "on",
                                  "defaultLink": {"bandwidthMiBps": args.bandwidth_mib, "latencyMs": 0}}))
    setup = Setup(binary, root, 3, url, ["--replication-config", config, "--replication-lease-seconds", lease])
    try:
        data = os.urandom(args.image_mib << 20)
        digest = hashlib.sha256(data).hexdigest()
        upload(api, setup.ports[0], setup.token, "failover", "big", data)

        def live_leases():
            rows = cluster.psql("SELECT lease_owner, count(*) FROM replication WHERE state = 'REPLICATING' "
                                "AND lease_owner IS NOT NULL AND lease_expires_at > now() GROUP BY lease_owner",
                                database)
            return dict((owner, int(n)) for owner, n in (line.split("|") for line in rows.splitlines()))

        # Every job claimed (3 instances x 4 slots > 8 jobs), or what is running after 20 s.
        began = time.monotonic()
        leases = wait_for(lambda: (l := live_leases()) and (sum(l.values()) >= len(REGIONS) - 1
                                                            or time.monotonic() - began > 20) and l,
                          "running replication jobs", 120)
        victim = max(leases, key=leases.get)
        rows = cluster.psql("SELECT partialPath FROM replication WHERE lease_owner = "
                            f"'{victim}' AND state = 'REPLICATING' AND partialPath IS NOT NULL", database)
        files = [setup.data_dir / path for path in rows.splitlines()]
        # Kill mid-copy: once each victim file holds --kill-at-mib (past a durable progress write).
        wait_for(lambda: all(p.exists() and p.stat().st_size >= args.kill_at_mib * (1 << 20) for p in files),
                 f"{args.kill_at_mib:g} MiB in each partial file", 120)

        process = setup.processes[setup.names.index(victim)]
        killed_ns = time.time_ns()
        os.kill(process.pid, signal.SIGKILL)
        process.process.wait()
        dead_ns = time.time_ns()
        at_kill = {p: p.stat() for p in files}
        # The durable offsets the rows vouch for: the taker resumes from there.
        offsets = cluster.psql("SELECT partialPath, bytesCopied FROM replication WHERE lease_owner = "
                               f"'{victim}' AND state = 'REPLICATING'", database)
        durable = {setup.data_dir / path: int(offset) for path, offset in
                   (line.split("|") for line in offsets.splitlines())}
        # The database and we share this machine's clock: the lease left at the kill itself.
        expires = cluster.psql(f"SELECT extract(epoch FROM max(lease_expires_at)) FROM replication "
                               f"WHERE lease_owner = '{victim}'", database)

        # Poll the victim's files: first touch (mtime after the process was gone: the taker's
        # truncate to the durable offset) and first copied byte (size past the durable offset
        # with such an mtime); a file renamed away was finished by the taker.
        touched = wrote = None
        end = time.monotonic() + lease + 120
        while wrote is None:
            for path, offset in durable.items():
                try:
                    st = path.stat()
                except FileNotFoundError:
                    now = time.time_ns()
                    touched, wrote = touched or now, wrote or now
                    continue
                if st.st_mtime_ns > dead_ns or st.st_size != at_kill[path].st_size:
                    # A truncate may leave the mtime alone: then the moment we saw it.
                    at = st.st_mtime_ns if st.st_mtime_ns > dead_ns else time.time_ns()
                    touched = min(touched or at, at)
                    if st.st_size > offset and st.st_mtime_ns > dead_ns:
                        wrote = min(wrote or st.st_mtime_ns, st.st_mtime_ns)
            if time.monotonic() > end:
                raise RuntimeError("no instance wrote to the victim's partial files (a hang)")
            time.sleep(0.005)
        paths = ", ".join(f"'{p.relative_to(setup.data_dir)}'" for p in durable)
        taker = cluster.psql("SELECT string_agg(DISTINCT lease_owner, ',') FROM replication "
                             f"WHERE partialPath IN ({paths}) AND lease_owner <> '{victim}'", database)

        def all_done():
            counts = cluster.psql("SELECT count(*) FILTER (WHERE state = 'COMPLETED'), "
                                  "count(*) FILTER (WHERE state = 'FAILED') FROM replication", database)
            completed, failed = map(int, counts.split("|"))
            if failed:
                raise RuntimeError(f"{failed} replication jobs FAILED")
            return completed == len(REGIONS) - 1

        wait_for(all_done, "every job COMPLETED", 300)
        completed_ns = time.time_ns()
        hashes_ok = 0
        for region in REGIONS[1:]:
            blobs = [p for p in (setup.data_dir / "regions" / region / "blobs").rglob("*") if p.is_file()]
            if [sha256_file(p) for p in blobs] == [digest]:
                hashes_ok += 1
        return {"lease": lease, "run": run, "victim": victim, "victim_jobs": len(durable),
                "leases": leases, "taker": taker,
                "lease_left": float(expires) - killed_ns / 1e9 if expires else float("nan"),
                "size_at_kill": min(st.st_size for st in at_kill.values()) / (1 << 20),
                "durable": min(durable.values()) / (1 << 20),
                "touch": (touched - killed_ns) / 1e9, "first_byte": (wrote - killed_ns) / 1e9,
                "completed": (completed_ns - killed_ns) / 1e9, "hashes_ok": hashes_ok}
    finally:
        setup.close()


# MARK: - main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=None, help="labgallery-server (default: .build/release)")
    parser.add_argument("--threads", type=int, default=8, help="client threads, one channel each")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per thread per operation")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per thread first")
    parser.add_argument("--galleries", type=int, default=150, help="galleries seeded (List reads 100)")
    parser.add_argument("--leases", default="3,10", help="lease seconds to measure failover with")
    parser.add_argument("--repeats", type=int, default=3, help="failover runs per lease")
    parser.add_argument("--image-mib", type=int, default=16)
    parser.add_argument("--bandwidth-mib", type=float, default=2.0, help="WAN model MiB/s per link")
    parser.add_argument("--kill-at-mib", type=float, default=5.0,
                        help="kill once each of the victim's partial files holds this much")
    parser.add_argument("--skip-metadata", action="store_true")
    parser.add_argument("--skip-failover", action="store_true")
    args = parser.parse_args()
    binary = pathlib.Path(args.binary or labgallery_testing.build_dir("release") / "labgallery-server")
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is missing: swift build -c release --product labgallery-server")

    sampler = LoadSampler()
    started = time.monotonic()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; binary {binary}; "
          f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.1f}", flush=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="labgallery-bench-fleet."))
    # Directly under /tmp: as root the cluster runs as the postgres user, who must enter it.
    cluster_dir = pathlib.Path(tempfile.mkdtemp(prefix="labgallery-bench-fleet-pg.", dir="/tmp"))
    cluster = None
    try:
        cluster = labgallery_testing.PostgresCluster(cluster_dir)
        (work / "stubs").mkdir()
        with labgallery_testing.gallery_stubs(work / "stubs") as api:
            if not args.skip_metadata:
                print(f"\n### Metadata calls: {args.threads} client threads, each its own channel, "
                      f"{args.warmup} warm-up + {args.calls} timed calls each per operation; "
                      f"{args.galleries} galleries seeded", flush=True)
                print("| setup | call | p50 ms | p99 ms | calls/s | CPU ms per call: client / server(s) / PostgreSQL "
                      "| load average |")
                print("|---|---|---|---|---|---|---|")
                setups = (("SQLite, 1 instance", 1, None),
                          ("PostgreSQL, 1 instance", 1, "meta_pg1"),
                          ("PostgreSQL, 3 instances", 3, "meta_pg3"))
                for label, count, database in setups:
                    url = cluster.create_database(database) if database else None
                    setup = Setup(binary, work / label.replace(" ", "").replace(",", "-"), count, url)
                    try:
                        for call, (p50, p99, rate, cpu, load) in metadata(api, setup, args, sampler, cluster).items():
                            print(f"| {label} | {call} | {p50:.2f} | {p99:.2f} | {rate:.0f} | "
                                  f"{cpu[0]:.2f} / {cpu[1]:.2f} / {cpu[2]:.2f} | {load} |", flush=True)
                    finally:
                        setup.close()
            if not args.skip_failover:
                print(f"\n### Failover: 3 instances, {args.image_mib} MiB image to {len(REGIONS) - 1} regions, "
                      f"WAN {args.bandwidth_mib:g} MiB/s per job, concurrency 4 per instance; seconds from kill -9",
                      flush=True)
                print("| lease s | run | victim (its live leases / all) "
                      "| its files at kill / durable offset MiB (least) | victim lease left at kill s | "
                      "first touch s | first byte copied s | all COMPLETED s | replicas with the image's SHA-256 "
                      "| load average |")
                print("|---|---|---|---|---|---|---|---|---|---|")
                for lease in (int(x) for x in args.leases.split(",")):
                    for run in range(1, args.repeats + 1):
                        began = time.monotonic()
                        r = failover(api, binary, cluster, work / f"failover-{lease}-{run}", lease, args, run)
                        print(f"| {r['lease']} | {r['run']} | {r['victim']} ({r['victim_jobs']} / "
                              f"{sum(r['leases'].values())}) taken by {r['taker']} | "
                              f"{r['size_at_kill']:.1f} / {r['durable']:.0f} | "
                              f"{r['lease_left']:.2f} | {r['touch']:.2f} | "
                              f"{r['first_byte']:.2f} | {r['completed']:.1f} | {r['hashes_ok']}/{len(REGIONS) - 1} "
                              f"| {sampler.range_since(began)} |", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(cluster_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        sampler.stop()
    print(f"\nload average over the run {sampler.range_since(started)}; PostgreSQL cluster with fsync, "
          "synchronous_commit and full_page_writes off (Tools/pg-cluster.sh); SQLite synchronous=FULL")


if __name__ == "__main__":
    main()
