"""Two labgallery-server instances on one PostgreSQL database and one data directory.

Uses the cluster `make test` starts (LABGALLERY_TEST_POSTGRES_URL, superuser) or, without it,
starts one with Tools/pg-cluster.sh for this module and stops it at the end. Without
PostgreSQL the tests fail, saying how to get it: they never skip.
"""

import hashlib
import importlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import uuid

import grpc
import grpc_tools
import pytest
from grpc_tools import protoc

import labgallery_testing  # Tests/pyhelpers (on the path by conftest.py)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTOS = REPO_ROOT / "Protos"
PG_CLUSTER = REPO_ROOT / "Tools" / "pg-cluster.sh"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """Generated modules, keyed by proto file stem (galleries, images, ...)."""
    out = tmp_path_factory.mktemp("stubs")
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "labgallery" / "v1").glob("*.proto"))
    bundled = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    assert protoc.main(["grpc_tools.protoc", f"-I{PROTOS}", f"-I{bundled}",
                        f"--python_out={out}", f"--grpc_python_out={out}", *sources]) == 0
    sys.path.insert(0, str(out))
    try:
        yield {pathlib.Path(s).stem + suffix: importlib.import_module(f"labgallery.v1.{pathlib.Path(s).stem}{module}")
               for s in sources for suffix, module in (("", "_pb2"), ("_grpc", "_pb2_grpc"))}
    finally:
        sys.path.remove(str(out))


@pytest.fixture(scope="module")
def superuser_url(tmp_path_factory):
    """The test cluster's superuser URL: make test's, or a cluster of this module's own."""
    url = os.environ.get("LABGALLERY_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    # Directly under /tmp: the cluster's user (postgres, when run as root) must reach it.
    directory = pathlib.Path(tempfile.mkdtemp(prefix="labgallery-pg-"))
    started = subprocess.run([PG_CLUSTER, "start", directory], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail("no PostgreSQL for the tests: Tools/pg-cluster.sh start failed "
                    f"({started.stderr.strip()}); run `make deps` (postgresql, libpq-dev) or export "
                    "LABGALLERY_TEST_POSTGRES_URL", pytrace=False)
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([PG_CLUSTER, "stop", directory], check=True)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def database(superuser_url):
    """A fresh empty database's URL, dropped after the test."""
    name = "t_" + uuid.uuid4().hex[:16]
    subprocess.run(["psql", superuser_url, "-qc", f"CREATE DATABASE {name}"], check=True)
    yield superuser_url.rsplit("/", 1)[0] + "/" + name
    subprocess.run(["psql", superuser_url, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True)


def test_two_instances_share_tokens_and_metadata(api, database, tmp_path):
    binary = labgallery_testing.find_binary("labgallery-server", ("release", "debug"))
    data_dir = tmp_path / "data"
    servers = [labgallery_testing.ServerProcess(
        [binary, "--database", database, "--data-dir", data_dir, "--port", "0"], log_dir=tmp_path / name)
        for name in ("a", "b")]
    try:
        ports = [int(s.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)", timeout=60).group(1)) for s in servers]
        admin = (data_dir / "admin.token").read_text().strip()
        assert oct((data_dir / "admin.token").stat().st_mode & 0o777) == "0o600"
        assert sum("admin token written" in s.log() for s in servers) == 1, "exactly one instance bootstraps"

        created = subprocess.run([binary, "token", "create", "--principal", "ops", "--role", "admin",
                                  "--database", database, "--data-dir", data_dir],
                                 capture_output=True, text=True, check=True)
        ops = created.stdout.strip()
        listed = subprocess.run([binary, "token", "list", "--database", database, "--data-dir", data_dir],
                                capture_output=True, text=True, check=True).stdout
        assert "ops" in listed and "admin" in listed

        galleries, resources, images = api["galleries"], api["resources"], api["images"]
        channels = [grpc.insecure_channel(f"127.0.0.1:{p}") for p in ports]
        try:
            gallery_a, gallery_b = (api["galleries_grpc"].GalleryServiceStub(c) for c in channels)
            image_a, image_b = (api["images_grpc"].ImageServiceStub(c) for c in channels)
            for token in (admin, ops):
                for stub in (gallery_a, gallery_b):
                    stub.ListGalleries(galleries.ListGalleriesRequest(), metadata=[("authorization", f"Bearer {token}")])
            auth = [("authorization", f"Bearer {ops}")]

            gallery = gallery_a.CreateGallery(galleries.CreateGalleryRequest(
                gallery_id="fleet", gallery=resources.Gallery(display_name="Fleet", region="westeurope")),
                metadata=auth)
            assert gallery_b.GetGallery(galleries.GetGalleryRequest(name=gallery.name), metadata=auth) == gallery
            data = os.urandom(50_000)
            header = images.UploadImageRequest.Header(
                gallery=gallery.name, image_id="img", display_name="img", os_type=resources.LINUX,
                os_state=resources.GENERALIZED, sha256=hashlib.sha256(data).hexdigest())
            image = image_a.UploadImage(iter([images.UploadImageRequest(header=header),
                                              images.UploadImageRequest(chunk=data)]), metadata=auth)
            assert image_b.GetImage(images.GetImageRequest(name=image.name), metadata=auth) == image

            # The same id created on B: ALREADY_EXISTS, whichever instance made it.
            with pytest.raises(grpc.RpcError) as err:
                gallery_b.CreateGallery(galleries.CreateGalleryRequest(
                    gallery_id="fleet", gallery=resources.Gallery(region="westeurope")), metadata=auth)
            assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS

            # A token revoked through the database is refused by both instances at once (no cache).
            token_id = next(line.split()[0] for line in subprocess.run(
                [binary, "token", "list", "--database", database, "--data-dir", data_dir],
                capture_output=True, text=True, check=True).stdout.splitlines() if " ops " in f" {line} ")
            subprocess.run([binary, "token", "revoke", token_id, "--database", database, "--data-dir", data_dir],
                           capture_output=True, check=True)
            for stub in (gallery_a, gallery_b):
                with pytest.raises(grpc.RpcError) as err:
                    stub.ListGalleries(galleries.ListGalleriesRequest(), metadata=auth)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            for c in channels:
                c.close()
        for s in servers:
            assert s.stop(timeout=20) == 0
    finally:
        for s in servers:
            s.__exit__(None, None, None)
    for s in servers:
        assert admin not in s.log() and ops not in s.log(), "tokens are never logged"
