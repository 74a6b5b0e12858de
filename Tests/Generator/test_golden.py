"""Golden test: Protos/h2rpc/fixture/fixture.proto through protoc and the plugin, in a temp
dir, must give exactly the committed Sources/GeneratedProtos/h2rpc_fixture_fixture.pb.swift."""

import os
import subprocess

from conftest import ROOT

GOLDEN = os.path.join(ROOT, "Sources/GeneratedProtos/h2rpc_fixture_fixture.pb.swift")
PLUGIN = os.path.join(ROOT, "Tools/protoc-gen-h2rpc")


def run_plugin(tmp_path, proto="h2rpc/fixture/fixture.proto"):
    subprocess.run(["protoc", "-I", os.path.join(ROOT, "Protos"), "-I", "/usr/include",
                    "--plugin=protoc-gen-h2rpc=" + PLUGIN, "--h2rpc_out=" + str(tmp_path), proto],
                   check=True, capture_output=True)
    return (tmp_path / "h2rpc_fixture_fixture.pb.swift").read_text()


def test_fixture_matches_golden(tmp_path):
    with open(GOLDEN) as f:
        golden = f.read()
    fresh = run_plugin(tmp_path)
    assert fresh == golden, "regenerate with Tools/generate.sh (generator output changed)"


def test_output_is_deterministic(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert run_plugin(tmp_path / "a") == run_plugin(tmp_path / "b")
