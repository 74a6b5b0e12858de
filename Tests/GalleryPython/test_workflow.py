"""The main gallery workflow driven from Python grpcio, with stubs generated from Protos/ alone.

Proves a client in another language can use the API with nothing but the .proto files.
Needs the server binary: `swift build --product labgallery-server` (debug) or
`swift build -c release --product labgallery-server`; the more recently built one is used.
Run with ``python3 -m pytest -q Tests/GalleryPython``.
"""

import hashlib
import os

import grpc
import pytest

import labgallery_testing  # Tests/pyhelpers (on the path by conftest.py)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """Generated modules, keyed by proto file stem (galleries, images, ...)."""
    with labgallery_testing.gallery_stubs(tmp_path_factory.mktemp("stubs")) as modules:
        yield modules


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """labgallery-server on a free port (port 0, read back) with a fresh data dir; yields (port, admin token)."""
    root = tmp_path_factory.mktemp("gallery")
    data_dir = root / "data"
    # The more recently built of the release and debug binaries (a stale one would test old code).
    binary = labgallery_testing.find_binary("labgallery-server", ("release", "debug"))
    with labgallery_testing.ServerProcess([binary, "--port", "0", "--data-dir", data_dir], log_dir=root) as process:
        port = int(process.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        token = (data_dir / "admin.token").read_text().strip()
        yield port, token
        assert process.stop(timeout=20) == 0, "SIGTERM should drain and exit 0"
    assert token not in process.log(), "the admin token must never be logged"


def test_main_workflow(api, server):
    port, token = server
    auth = [("authorization", f"Bearer {token}")]
    resources, galleries, accounts, images, labs = (
        api["resources"], api["galleries"], api["lab_accounts"], api["images"], api["labs"])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        gallery_stub = api["galleries_grpc"].GalleryServiceStub(channel)
        account_stub = api["lab_accounts_grpc"].LabAccountServiceStub(channel)
        image_stub = api["images_grpc"].ImageServiceStub(channel)
        lab_stub = api["labs_grpc"].LabServiceStub(channel)

        # No token: UNAUTHENTICATED.
        with pytest.raises(grpc.RpcError) as err:
            gallery_stub.ListGalleries(galleries.ListGalleriesRequest())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # A gallery, and a lab account attached to it.
        gallery = gallery_stub.CreateGallery(galleries.CreateGalleryRequest(
            gallery_id="py-gallery", gallery=resources.Gallery(display_name="Python gallery", region="westeurope")),
            metadata=auth)
        assert gallery.name == "galleries/py-gallery" and gallery.geography == "Europe"
        account = account_stub.CreateLabAccount(accounts.CreateLabAccountRequest(
            lab_account_id="py-account", lab_account=resources.LabAccount(display_name="Python", region="westeurope"),
            attach_gallery=gallery.name), metadata=auth)
        assert account.attached_gallery == gallery.name

        # A second attach is refused, saying to detach first.
        gallery_stub.CreateGallery(galleries.CreateGalleryRequest(
            gallery_id="py-other", gallery=resources.Gallery(region="westeurope")), metadata=auth)
        with pytest.raises(grpc.RpcError) as err:
            gallery_stub.AttachGallery(galleries.AttachGalleryRequest(
                lab_account=account.name, gallery="galleries/py-other"), metadata=auth)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "detach" in err.value.details()

        # Two images, uploaded by client streaming: header first, then chunks.
        def upload(image_id, data, os_state):
            header = images.UploadImageRequest.Header(
                gallery=gallery.name, image_id=image_id, display_name=image_id, os_type=resources.LINUX,
                os_state=os_state, sha256=hashlib.sha256(data).hexdigest())
            chunks = [images.UploadImageRequest(chunk=data[i:i + 16384]) for i in range(0, len(data), 16384)]
            return image_stub.UploadImage(iter([images.UploadImageRequest(header=header)] + chunks), metadata=auth)

        base_bytes = os.urandom(100_000)
        base = upload("base", base_bytes, resources.GENERALIZED)
        assert base.size_bytes == len(base_bytes) and base.sha256 == hashlib.sha256(base_bytes).hexdigest()
        assert base.source == resources.UPLOADED
        hidden = upload("hidden", os.urandom(5000), resources.GENERALIZED)

        # The account sees both, enabled by default; disable one.
        listed = image_stub.ListLabAccountImages(images.ListLabAccountImagesRequest(lab_account=account.name), metadata=auth)
        assert {(i.image.name, i.enabled) for i in listed.images} == {(base.name, True), (hidden.name, True)}
        image_stub.SetImagesEnabled(images.SetImagesEnabledRequest(
            lab_account=account.name, images=[hidden.name], enabled=False), metadata=auth)

        # Each listed image says whether CreateLab would accept it now, and why not.
        listed = image_stub.ListLabAccountImages(images.ListLabAccountImagesRequest(lab_account=account.name), metadata=auth)
        by_name = {i.image.name: i for i in listed.images}
        assert by_name[base.name].available and by_name[base.name].unavailable_reason == ""
        assert not by_name[hidden.name].available and not by_name[hidden.name].enabled
        assert "disabled" in by_name[hidden.name].unavailable_reason

        # A lab from the disabled image is refused; from the enabled one it is created.
        with pytest.raises(grpc.RpcError) as err:
            lab_stub.CreateLab(labs.CreateLabRequest(lab_account=account.name, lab_id="refused",
                                                     lab=resources.Lab(template_image=hidden.name)), metadata=auth)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and hidden.name in err.value.details()
        assert err.value.details() == by_name[hidden.name].unavailable_reason
        lab = lab_stub.CreateLab(labs.CreateLabRequest(lab_account=account.name, lab_id="py-lab",
                                                       lab=resources.Lab(display_name="Lab", template_image=base.name)),
                                 metadata=auth)
        assert lab.name == "labAccounts/py-account/labs/py-lab"

        # Saving the lab's template gives a specialized image of the same bytes.
        saved = image_stub.SaveLabTemplateImage(images.SaveLabTemplateImageRequest(
            lab=lab.name, image_id="saved", display_name="Saved"), metadata=auth)
        assert saved.os_state == resources.SPECIALIZED and saved.source == resources.SAVED_FROM_LAB
        assert saved.source_lab == lab.name and saved.sha256 == base.sha256

        # Detach needs confirm.
        with pytest.raises(grpc.RpcError) as err:
            gallery_stub.DetachGallery(galleries.DetachGalleryRequest(lab_account=account.name), metadata=auth)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "confirm" in err.value.details()
        # Naming another gallery than the attached one: refused, naming both; a malformed name: INVALID_ARGUMENT.
        with pytest.raises(grpc.RpcError) as err:
            gallery_stub.DetachGallery(galleries.DetachGalleryRequest(
                lab_account=account.name, confirm=True, gallery="galleries/py-other"), metadata=auth)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert gallery.name in err.value.details() and "galleries/py-other" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            gallery_stub.DetachGallery(galleries.DetachGalleryRequest(
                lab_account=account.name, confirm=True, gallery="py-gallery"), metadata=auth)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "gallery" in err.value.details()
        detached = gallery_stub.DetachGallery(galleries.DetachGalleryRequest(
            lab_account=account.name, confirm=True, gallery=gallery.name), metadata=auth)
        assert detached.attached_gallery == ""
        roles = gallery_stub.ListRoleAssignments(galleries.ListRoleAssignmentsRequest(gallery=gallery.name), metadata=auth)
        assert list(roles.role_assignments) == []


def test_shared_bytes_cost_and_deletion_events(api, server):
    """Identical bytes are stored once (billed per image, stored once); a gallery watch hears
    each deletion and ends NOT_FOUND when the gallery goes."""
    port, token = server
    auth = [("authorization", f"Bearer {token}")]
    resources, galleries, images, replication, billing = (
        api["resources"], api["galleries"], api["images"], api["replication"], api["billing"])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        gallery_stub = api["galleries_grpc"].GalleryServiceStub(channel)
        image_stub = api["images_grpc"].ImageServiceStub(channel)
        replication_stub = api["replication_grpc"].ReplicationServiceStub(channel)
        billing_stub = api["billing_grpc"].BillingServiceStub(channel)
        gallery = gallery_stub.CreateGallery(galleries.CreateGalleryRequest(
            gallery_id="py-shared", gallery=resources.Gallery(region="westeurope")), metadata=auth)

        data = os.urandom(50_000)
        def upload(image_id):
            header = images.UploadImageRequest.Header(gallery=gallery.name, image_id=image_id, os_type=resources.LINUX,
                                                      os_state=resources.GENERALIZED)
            return image_stub.UploadImage(iter([images.UploadImageRequest(header=header),
                                                images.UploadImageRequest(chunk=data)]), metadata=auth)
        first, second = upload("first"), upload("second")
        assert first.sha256 == second.sha256 == hashlib.sha256(data).hexdigest()

        cost = billing_stub.GetGalleryCost(billing.GetGalleryCostRequest(gallery=gallery.name), metadata=auth)
        home_lines = [line for line in cost.lines if line.region == "westeurope"]
        assert len(home_lines) == 2 and cost.billed_bytes == sum(line.size_bytes for line in cost.lines)
        assert cost.stored_bytes < cost.billed_bytes, "the home region stores the shared bytes once"

        watch = replication_stub.WatchGalleryReplication(
            replication.WatchGalleryReplicationRequest(gallery=gallery.name), metadata=auth)
        seen = {next(watch).image, next(watch).image}
        assert seen == {first.name, second.name}
        image_stub.DeleteImage(images.DeleteImageRequest(name=first.name), metadata=auth)
        status = next(s for s in watch if s.deleted)
        assert status.image == first.name
        image_stub.DeleteImage(images.DeleteImageRequest(name=second.name), metadata=auth)
        gallery_stub.DeleteGallery(galleries.DeleteGalleryRequest(name=gallery.name), metadata=auth)
        with pytest.raises(grpc.RpcError) as err:
            for _ in watch:
                pass
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and gallery.name in err.value.details()
