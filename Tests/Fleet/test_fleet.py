"""Issue 12: a fleet -- three ``labgallery-server`` instances on one PostgreSQL and one shared data
directory (the region storage roots), driven from grpcio and from our CLI.

Each test module starts a throwaway PostgreSQL cluster of its own with ``Tools/pg-cluster.sh``
(initdb + pg_ctl from Debian's packages, as the ``postgres`` user when run as root, on loopback)
so that a test may stop and restart it; every test gets a fresh database in it. Needs the
server and CLI binaries (the more recently built of release and debug).
Run with ``python3 -m pytest -q Tests/Fleet``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import grpc
import pytest

# Tests/pyhelpers on the path here, not in a conftest.py: a conftest of this directory would be
# the `conftest` module Tests/Generator imports its ROOT from.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "pyhelpers"))
import labgallery_testing  # noqa: E402

REGIONS = [f"r{i}" for i in range(9)]  # one home region and 8 replicas
LEASE_SECONDS = 3


# MARK: - fixtures


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with labgallery_testing.gallery_stubs(tmp_path_factory.mktemp("fleet-stubs")) as modules:
        yield modules


@pytest.fixture(scope="module")
def cluster():
    # Directly under /tmp: the cluster runs as the postgres user when we are root, and pytest's
    # own temporary directories are private to us.
    directory = pathlib.Path(tempfile.mkdtemp(prefix="labgallery-fleet-pg."))
    cluster = labgallery_testing.PostgresCluster(directory)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def database(cluster):
    """A fresh empty database in the module's cluster; its URL."""
    yield cluster.create_database("fleet_" + uuid.uuid4().hex[:12])


class Instance:
    """One labgallery-server of the fleet."""

    def __init__(self, name: str, process: labgallery_testing.ServerProcess, port: int):
        self.name, self.process, self.port = name, process, port

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.endpoint)


class Fleet:
    """Instances started on one database and one shared data directory."""

    def __init__(self, root: pathlib.Path, database_url: str, *, bandwidth_mib: float = 0):
        self.root = root
        self.database_url = database_url
        self.data_dir = root / "shared-data"
        self.regions_file = root / "regions.json"
        self.regions_file.write_text(json.dumps({"geographies": {"Fleetland": REGIONS}}))
        self.config_file = root / "replication.json"
        self.config_file.write_text(json.dumps({
            "concurrency": 4, "maxAttempts": 5, "backoffInitialMs": 100, "backoffMaxMs": 500,
            "wan": "on" if bandwidth_mib else "off",
            "defaultLink": {"bandwidthMiBps": bandwidth_mib, "latencyMs": 0}}))
        self.instances: dict[str, Instance] = {}
        self._stack: list[labgallery_testing.ServerProcess] = []

    def start(self, name: str) -> Instance:
        binary = labgallery_testing.find_binary("labgallery-server", ("release", "debug"))
        argv = [binary, "--database", self.database_url, "--data-dir", self.data_dir, "--port", "0",
                "--regions-file", self.regions_file, "--replication-config", self.config_file,
                "--instance-id", name, "--replication-lease-seconds", LEASE_SECONDS]
        process = labgallery_testing.ServerProcess(argv, log_dir=self.root / name)
        self._stack.append(process)
        port = int(process.wait_for_line(r".*listening on 127\.0\.0\.1:(\d+).*", timeout=120).group(1))
        instance = Instance(name, process, port)
        self.instances[name] = instance
        return instance

    @property
    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def close(self) -> None:
        for process in self._stack:
            process.__exit__(None, None, None)


@pytest.fixture
def fleet(tmp_path, database):
    fleets: list[Fleet] = []

    def make(**kwargs) -> Fleet:
        f = Fleet(tmp_path, database, **kwargs)
        fleets.append(f)
        return f

    yield make
    for f in fleets:
        f.close()


# MARK: - helpers


def _auth(token: str):
    return [("authorization", f"Bearer {token}")]


def _upload(api, channel, token, gallery: str, image_id: str, data: bytes):
    images, resources = api["images"], api["resources"]
    stub = api["images_grpc"].ImageServiceStub(channel)
    header = images.UploadImageRequest.Header(gallery=gallery, image_id=image_id, display_name=image_id,
                                              os_type=resources.LINUX, os_state=resources.GENERALIZED,
                                              sha256=hashlib.sha256(data).hexdigest())
    chunks = [images.UploadImageRequest(chunk=data[i:i + (1 << 20)]) for i in range(0, len(data), 1 << 20)]
    return stub.UploadImage(iter([images.UploadImageRequest(header=header)] + chunks), metadata=_auth(token),
                            timeout=120)


def _create_gallery(api, channel, token, gallery_id: str):
    stub = api["galleries_grpc"].GalleryServiceStub(channel)
    return stub.CreateGallery(api["galleries"].CreateGalleryRequest(
        gallery_id=gallery_id, gallery=api["resources"].Gallery(region=REGIONS[0])), metadata=_auth(token), timeout=60)


def _watch_until_done(api, channel, token, image: str, seen: list | None = None):
    """Follows WatchReplication to its end; returns the last status."""
    stub = api["replication_grpc"].ReplicationServiceStub(channel)
    last = None
    for status in stub.WatchReplication(api["replication"].WatchReplicationRequest(image=image),
                                        metadata=_auth(token), timeout=300):
        last = status
        if seen is not None:
            seen.append(status)
    return last


def _completed(api, status) -> bool:
    done = api["resources"].COMPLETED
    return len(status.regions) == len(REGIONS) - 1 and all(r.state == done for r in status.regions)


def _replica_hashes(data_dir: pathlib.Path) -> dict[str, set[str]]:
    """SHA-256 of every blob file per region under the shared data directory."""
    out: dict[str, set[str]] = {}
    for region in REGIONS:
        root = data_dir / "regions" / region / "blobs"
        hashes = set()
        if root.exists():
            for path in root.rglob("*"):
                if path.is_file():
                    hashes.add(hashlib.sha256(path.read_bytes()).hexdigest())
        out[region] = hashes
    return out


# MARK: - tests


def test_create_on_a_read_on_b_watch_on_c(api, fleet):
    f = fleet()
    a, b, c = f.start("a"), f.start("b"), f.start("c")
    token = f.token
    data = os.urandom(3 << 20)
    with a.channel() as ca, b.channel() as cb, c.channel() as cc:
        gallery = _create_gallery(api, ca, token, "fleet-one")
        image = _upload(api, ca, token, gallery.name, "img", data)
        # Read on B: the row is in the shared database, not in A's memory.
        got = api["images_grpc"].ImageServiceStub(cb).GetImage(
            api["images"].GetImageRequest(name=image.name), metadata=_auth(token), timeout=60)
        assert got.sha256 == hashlib.sha256(data).hexdigest()
        # Watch on C until every region is COMPLETED, whoever copies.
        last = _watch_until_done(api, cc, token, image.name)
        assert last is not None and _completed(api, last), last
    hashes = _replica_hashes(f.data_dir)
    for region in REGIONS:
        assert hashlib.sha256(data).hexdigest() in hashes[region], f"{region} lacks the replica"


def test_concurrent_attach_on_two_instances_one_wins(api, fleet):
    f = fleet()
    a, b = f.start("a"), f.start("b")
    token = f.token
    resources, accounts, galleries = api["resources"], api["lab_accounts"], api["galleries"]
    with a.channel() as ca, b.channel() as cb:
        _create_gallery(api, ca, token, "left")
        _create_gallery(api, ca, token, "right")
        account_stub = api["lab_accounts_grpc"].LabAccountServiceStub(ca)
        rounds = 8
        for i in range(rounds):
            account_stub.CreateLabAccount(accounts.CreateLabAccountRequest(
                lab_account_id=f"acct-{i}", lab_account=resources.LabAccount(region=REGIONS[0])),
                metadata=_auth(token), timeout=60)
        stubs = [api["galleries_grpc"].GalleryServiceStub(ch) for ch in (ca, cb)]
        barrier = threading.Barrier(2)

        def attach(side: int, account: str):
            barrier.wait(timeout=60)
            try:
                stubs[side].AttachGallery(galleries.AttachGalleryRequest(
                    lab_account=account, gallery=["galleries/left", "galleries/right"][side]),
                    metadata=_auth(token), timeout=60)
                return "ok"
            except grpc.RpcError as error:
                return error.code(), error.details()

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for i in range(rounds):
                account = f"labAccounts/acct-{i}"
                results = list(pool.map(lambda side: attach(side, account), (0, 1)))
                assert results.count("ok") == 1, results
                refused = next(r for r in results if r != "ok")
                assert refused[0] == grpc.StatusCode.FAILED_PRECONDITION, refused
                assert "detach" in refused[1], refused
                got = account_stub.GetLabAccount(accounts.GetLabAccountRequest(name=account),
                                                 metadata=_auth(token), timeout=60)
                winner = ["galleries/left", "galleries/right"][results.index("ok")]
                assert got.attached_gallery == winner


def _leases_by_instance(cluster: labgallery_testing.PostgresCluster, database_url: str) -> dict[str, int]:
    name = database_url.split("?")[0].rsplit("/", 1)[1]
    rows = cluster.psql("SELECT lease_owner, count(*) FROM replication WHERE state = 'REPLICATING' "
                        "AND lease_owner IS NOT NULL AND lease_expires_at > now() GROUP BY lease_owner", database=name)
    out = {}
    for line in rows.splitlines():
        owner, count = line.split("|")
        out[owner] = int(count)
    return out


def _wait(predicate, what: str, timeout: float = 180):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < end, f"no {what} within {timeout:g} s (a hang)"
        time.sleep(0.05)  # polling the database: the event has no other signal outside the server


def test_kill_9_mid_copy_the_others_finish_every_job(api, fleet, cluster, database, tmp_path):
    # 8 MiB at 2 MiB/s per region: each job takes ~4 s, long enough to kill mid-copy.
    f = fleet(bandwidth_mib=2)
    instances = [f.start(n) for n in ("a", "b", "c")]
    token = f.token
    data = os.urandom(8 << 20)
    digest = hashlib.sha256(data).hexdigest()
    with instances[0].channel() as ca:
        gallery = _create_gallery(api, ca, token, "fleet-kill")
        image = _upload(api, ca, token, gallery.name, "big", data)

    # Wait until jobs run, then kill -9 the instance holding the most leases.
    leases = _wait(lambda: (l := _leases_by_instance(cluster, database)) and sum(l.values()) >= 3 and l,
                   "running replication jobs")
    victim_name = max(leases, key=leases.get)
    victim = f.instances[victim_name]
    survivor = next(i for i in instances if i.name != victim_name)

    # A CLI watcher connected to the victim first, through the client library with all three
    # endpoints; a grpcio watcher on a survivor.
    cli = labgallery_testing.find_binary("labgallery", ("release", "debug"))
    endpoints = [victim.endpoint] + [i.endpoint for i in instances if i is not victim]
    watcher = subprocess.Popen([str(cli), "replication", "watch", image.name.rsplit("/", 1)[1],
                                "--gallery", "fleet-kill", "-o", "json", "--token", token,
                                *sum((["--endpoint", e] for e in endpoints), [])],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = watcher.stdout.readline()
    assert first.strip(), f"the CLI watch printed nothing: {watcher.stderr.read()}"

    survivor_seen: list = []
    survivor_result: dict = {}

    def follow():
        with survivor.channel() as channel:
            survivor_result["last"] = _watch_until_done(api, channel, token, image.name, survivor_seen)

    follower = threading.Thread(target=follow)
    follower.start()

    killed_at = time.monotonic()
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.process.wait()

    follower.join(timeout=LEASE_SECONDS + 8 * 4 * 3 + 120)
    assert not follower.is_alive(), "the survivor's watch did not end"
    assert _completed(api, survivor_result["last"]), survivor_result["last"]
    took = time.monotonic() - killed_at
    print(f"fleet: every job finished {took:.1f} s after kill -9 (lease {LEASE_SECONDS} s)")

    out, err = watcher.communicate(timeout=120)
    assert watcher.returncode == 0, f"CLI watch exit {watcher.returncode}: {err}"
    last = json.loads((first + out).strip().splitlines()[-1])
    states = {r["region"]: r["state"] for r in last["regions"]}
    assert len(states) == len(REGIONS) - 1 and set(states.values()) == {"COMPLETED"}, last

    hashes = _replica_hashes(f.data_dir)
    for region in REGIONS:
        assert digest in hashes[region], f"{region} lacks a replica with the image's SHA-256"
        assert hashes[region] <= {digest}, f"{region} holds a blob that is not the image: {hashes[region]}"


def test_database_restart_mid_run(api, fleet, cluster):
    """Calls fail UNAVAILABLE (no SQL in the message) while the database is down, work again once it
    is back, and replication that was running resumes and completes."""
    f = fleet(bandwidth_mib=2)
    a, b = f.start("a"), f.start("b")
    token = f.token
    data = os.urandom(6 << 20)
    with a.channel() as channel, b.channel() as other:
        stub = api["galleries_grpc"].GalleryServiceStub(channel)
        gallery = _create_gallery(api, channel, token, "before")
        image = _upload(api, channel, token, gallery.name, "during-restart", data)
        replication = api["replication_grpc"].ReplicationServiceStub(other)
        _wait(lambda: any(r.state == api["resources"].REPLICATING for r in replication.GetReplicationStatus(
            api["replication"].GetReplicationStatusRequest(image=image.name), metadata=_auth(token),
            timeout=60).regions), "a replication job running")

        cluster.stop()
        with pytest.raises(grpc.RpcError) as failure:
            stub.ListGalleries(api["galleries"].ListGalleriesRequest(), metadata=_auth(token), timeout=60)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE, failure.value
        details = failure.value.details()
        for sql in ("SELECT", "INSERT", "UPDATE", "FROM "):
            assert sql not in details, f"SQL in a status message: {details}"
        cluster.start()

        listed = _wait(lambda: _try_list(stub, api, token), "a working call after the database restart", 120)
        assert [g.name for g in listed.galleries] == ["galleries/before"]
        last = _wait(lambda: _try_watch(api, other, token, image.name), "the replication's end after the restart", 300)
        assert _completed(api, last), last
    digest = hashlib.sha256(data).hexdigest()
    for region, hashes in _replica_hashes(f.data_dir).items():
        assert digest in hashes, f"{region} lacks the replica after the restart"


def _try_watch(api, channel, token, image):
    try:
        return _watch_until_done(api, channel, token, image)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
        return None


def _try_list(stub, api, token):
    try:
        return stub.ListGalleries(api["galleries"].ListGalleriesRequest(), metadata=_auth(token), timeout=30)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
        return None
