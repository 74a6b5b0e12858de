"""Starts our interop-server (release build) for raw HTTP/2 wire tests."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "pyhelpers"))
import labgallery_testing  # noqa: E402  (Tests/pyhelpers: binaries, ports, server processes)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Yields (port, pid) of a running interop-server; stops it by PID afterwards."""
    yield from run_server(tmp_path_factory)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """An interop-server allowing 2 concurrent streams per connection."""
    yield from run_server(tmp_path_factory, "--max_concurrent_streams", "2")


def run_server(tmp_path_factory, *extra):
    binary = labgallery_testing.find_binary("interop-server")
    port = labgallery_testing.free_port()
    with labgallery_testing.ServerProcess([binary, "--port", port, *extra],
                                          log_dir=tmp_path_factory.mktemp("interop-server")) as process:
        process.wait_for_port(port, timeout=20)
        yield port, process.pid
        code = process.stop(timeout=10)
    assert code == 0, f"interop-server exited with {code}; output: {process.log()!r}"
