#!/usr/bin/env python3
"""A walkthrough of the gallery API with Python grpcio, using stubs generated from Protos/.

    python3 Clients/python/walkthrough.py --port 50051 --data-dir ./labgallery-data

Creates a gallery and a lab account attached to it, shows the one-gallery rule, uploads an
image (client streaming), lists and disables images, creates a lab, saves its template
back as a specialized image, shows replication records, and detaches the gallery.
"""
import argparse
import hashlib
import importlib
import pathlib
import sys
import tempfile

import grpc
import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]


def stubs():
    out = pathlib.Path(tempfile.mkdtemp(prefix="labgallery-stubs-"))
    protos = ROOT / "Protos"
    sources = sorted(str(p.relative_to(protos)) for p in (protos / "labgallery" / "v1").glob("*.proto"))
    bundled = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    if protoc.main(["protoc", f"-I{protos}", f"-I{bundled}", f"--python_out={out}", f"--grpc_python_out={out}", *sources]) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, str(out))
    return {pathlib.Path(s).stem: (importlib.import_module(f"labgallery.v1.{pathlib.Path(s).stem}_pb2"),
                                   importlib.import_module(f"labgallery.v1.{pathlib.Path(s).stem}_pb2_grpc"))
            for s in sources}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=50051)
    ap.add_argument("--data-dir", default="./labgallery-data", help="where the server wrote admin.token")
    ap.add_argument("--suffix", default="", help="appended to every id, to run the walkthrough twice")
    args = ap.parse_args()
    token = (pathlib.Path(args.data_dir) / "admin.token").read_text().strip()
    md = [("authorization", f"Bearer {token}")]
    api = stubs()
    res, _ = api["resources"]
    channel = grpc.insecure_channel(f"{args.host}:{args.port}")
    galleries = api["galleries"][1].GalleryServiceStub(channel)
    accounts = api["lab_accounts"][1].LabAccountServiceStub(channel)
    images = api["images"][1].ImageServiceStub(channel)
    labs = api["labs"][1].LabServiceStub(channel)
    replication = api["replication"][1].ReplicationServiceStub(channel)
    G, A, I = api["galleries"][0], api["lab_accounts"][0], api["images"][0]
    L, R = api["labs"][0], api["replication"][0]
    s = args.suffix

    def step(title):
        print(f"\n== {title}")

    step("create gallery galleries/shared" + s + " in westus2")
    g = galleries.CreateGallery(G.CreateGalleryRequest(gallery_id="shared" + s, gallery=res.Gallery(display_name="Shared images", region="westus2")), metadata=md)
    print(g)
    step("create lab account attached to it")
    acct = accounts.CreateLabAccount(A.CreateLabAccountRequest(lab_account_id="school" + s, lab_account=res.LabAccount(display_name="School", region="westus2"), attach_gallery=g.name), metadata=md)
    print(acct)
    print(galleries.ListRoleAssignments(G.ListRoleAssignmentsRequest(gallery=g.name), metadata=md))
    step("attach a second gallery (refused)")
    other = galleries.CreateGallery(G.CreateGalleryRequest(gallery_id="other" + s, gallery=res.Gallery(region="westus2")), metadata=md)
    try:
        galleries.AttachGallery(G.AttachGalleryRequest(lab_account=acct.name, gallery=other.name), metadata=md)
    except grpc.RpcError as e:
        print(e.code().name, "-", e.details())
    step("upload a generalized Linux image (client streaming, 1 MiB chunks)")
    blob = bytes(range(256)) * 16384  # 4 MiB
    def upload():
        yield I.UploadImageRequest(header=I.UploadImageRequest.Header(gallery=g.name, image_id="ubuntu" + s, display_name="Ubuntu 24.04", os_type=res.LINUX, os_state=res.GENERALIZED, sha256=hashlib.sha256(blob).hexdigest()))
        for i in range(0, len(blob), 1 << 20):
            yield I.UploadImageRequest(chunk=blob[i:i + (1 << 20)])
    image = images.UploadImage(upload(), metadata=md)
    print(image)
    step("images of the lab account (enabled by default)")
    print(images.ListLabAccountImages(I.ListLabAccountImagesRequest(lab_account=acct.name), metadata=md))
    step("disable it, and creating a lab from it is refused")
    images.SetImagesEnabled(I.SetImagesEnabledRequest(lab_account=acct.name, images=[image.name], enabled=False), metadata=md)
    try:
        labs.CreateLab(L.CreateLabRequest(lab_account=acct.name, lab_id="intro" + s, lab=res.Lab(template_image=image.name)), metadata=md)
    except grpc.RpcError as e:
        print(e.code().name, "-", e.details())
    step("enable it again and create a lab")
    images.SetImagesEnabled(I.SetImagesEnabledRequest(lab_account=acct.name, images=[image.name], enabled=True), metadata=md)
    lab = labs.CreateLab(L.CreateLabRequest(lab_account=acct.name, lab_id="intro" + s, lab=res.Lab(display_name="Intro to Linux", template_image=image.name)), metadata=md)
    print(lab)
    step("save the lab's template as a specialized image")
    saved = images.SaveLabTemplateImage(I.SaveLabTemplateImageRequest(lab=lab.name, image_id="intro-template" + s, display_name="Intro template"), metadata=md)
    print(saved)
    step("replication records of the saved image (one per other region of its geography)")
    print(replication.GetReplicationStatus(R.GetReplicationStatusRequest(image=saved.name), metadata=md))
    step("detach needs confirm=true")
    try:
        galleries.DetachGallery(G.DetachGalleryRequest(lab_account=acct.name), metadata=md)
    except grpc.RpcError as e:
        print(e.code().name, "-", e.details())
    print(galleries.DetachGallery(G.DetachGalleryRequest(lab_account=acct.name, confirm=True), metadata=md))


if __name__ == "__main__":
    main()
