"""grpcio (the reference client) runs every interop case against our interop-server."""

import pytest

import grpcio_interop_cases


@pytest.mark.parametrize("case", grpcio_interop_cases.CASE_NAMES)
def test_case(case, h2rpc_channel, stubs):
    grpcio_interop_cases.run(case, h2rpc_channel, stubs)
