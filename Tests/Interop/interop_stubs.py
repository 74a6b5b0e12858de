"""Generates grpcio stubs for the interop protos (Protos/grpc/testing) and health.proto.

The protos live under ``grpc/testing/``, which would make the generated Python modules
``grpc.testing.*`` and shadow the ``grpc`` package of grpcio. Like grpc's own repository,
we place them under ``src/proto/grpc/testing/`` instead (the import lines are rewritten to
match); the protobuf package, hence the wire names, stays ``grpc.testing``. health.proto
likewise goes under ``src/proto/grpc/health/v1/`` (package ``grpc.health.v1``).
"""

import importlib
import pathlib
import re
import shutil
import subprocess
import sys
import types

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "Protos" / "grpc" / "testing"
PACKAGE_PATH = pathlib.Path("src", "proto", "grpc", "testing")
HEALTH_PROTO = REPO_ROOT / "Protos" / "grpc" / "health" / "v1" / "health.proto"
HEALTH_PATH = pathlib.Path("src", "proto", "grpc", "health", "v1")


def generate(out_dir: pathlib.Path) -> pathlib.Path:
    """Writes the rewritten protos and their generated modules to ``out_dir``; returns it."""
    target = out_dir / PACKAGE_PATH
    target.mkdir(parents=True, exist_ok=True)
    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files in {PROTO_DIR}")
    for proto in protos:
        text = proto.read_text()
        text = re.sub(r'import\s+"grpc/testing/', f'import "{PACKAGE_PATH.as_posix()}/', text)
        (target / proto.name).write_text(text)
    (out_dir / HEALTH_PATH).mkdir(parents=True, exist_ok=True)
    shutil.copy(HEALTH_PROTO, out_dir / HEALTH_PATH / HEALTH_PROTO.name)
    # Regular packages (not namespace ones), so an unrelated `src` elsewhere cannot interfere.
    for package in (PACKAGE_PATH, HEALTH_PATH):
        for depth in range(1, len(package.parts) + 1):
            (out_dir.joinpath(*package.parts[:depth]) / "__init__.py").touch()
    command = [
        sys.executable, "-m", "grpc_tools.protoc",
        f"-I{out_dir}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[(PACKAGE_PATH / proto.name).as_posix() for proto in protos],
        (HEALTH_PATH / HEALTH_PROTO.name).as_posix(),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed ({result.returncode}):\n{result.stderr}")
    return out_dir


def load(out_dir: pathlib.Path) -> types.SimpleNamespace:
    """Imports the generated modules from ``out_dir`` (generating them first if needed)."""
    if not (out_dir / HEALTH_PATH / "health_pb2_grpc.py").exists():
        generate(out_dir)
    if str(out_dir) not in sys.path:
        sys.path.insert(0, str(out_dir))
    prefix = ".".join(PACKAGE_PATH.parts)
    health = ".".join(HEALTH_PATH.parts)
    return types.SimpleNamespace(
        health_pb2=importlib.import_module(f"{health}.health_pb2"),
        health_pb2_grpc=importlib.import_module(f"{health}.health_pb2_grpc"),
        empty_pb2=importlib.import_module(f"{prefix}.empty_pb2"),
        messages_pb2=importlib.import_module(f"{prefix}.messages_pb2"),
        test_pb2=importlib.import_module(f"{prefix}.test_pb2"),
        test_pb2_grpc=importlib.import_module(f"{prefix}.test_pb2_grpc"),
    )


def clean(out_dir: pathlib.Path) -> None:
    """Removes generated output."""
    shutil.rmtree(out_dir, ignore_errors=True)
