"""Our interop-client runs every interop case against the grpcio peer server."""

import subprocess

import pytest

import grpcio_interop_cases


@pytest.mark.parametrize("case", grpcio_interop_cases.CASE_NAMES)
def test_case(case, client_binary, grpcio_server):
    result = subprocess.run(
        [str(client_binary), "--server_host", "127.0.0.1", "--server_port", str(grpcio_server),
         "--test_case", case, "--use_tls", "false"],
        capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"interop-client exited {result.returncode}:\n{output}"
    assert f"PASS {case}" in result.stdout.splitlines(), output


def test_all_cases_in_one_process(client_binary, grpcio_server):
    """`--test_case all` runs the cases one after another on one connection."""
    result = subprocess.run(
        [str(client_binary), "--server_host", "127.0.0.1", "--server_port", str(grpcio_server),
         "--test_case", "all"],
        capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines == [f"PASS {case}" for case in grpcio_interop_cases.CASE_NAMES], result.stdout


def test_h2rpc_client_against_h2rpc_server(client_binary, h2rpc_server):
    """Both ends ours: every case, one connection."""
    result = subprocess.run(
        [str(client_binary), "--server_host", "127.0.0.1", "--server_port", str(h2rpc_server),
         "--test_case", "all"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"PASS {case}" for case in grpcio_interop_cases.CASE_NAMES]
