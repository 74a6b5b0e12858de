"""Sanity check of the test code itself: the grpcio client cases against the grpcio peer server.

If a case fails here, the fault is in the Python cases or peer server, not in H2RPC.
"""

import pytest

import grpcio_interop_cases


@pytest.mark.parametrize("case", grpcio_interop_cases.CASE_NAMES)
def test_case(case, grpcio_channel, stubs):
    grpcio_interop_cases.run(case, grpcio_channel, stubs)
