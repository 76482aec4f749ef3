"""Shared test setup.

Kernel tests compare the compiled kernels with their PyTorch twins; run against the fallback
they would compare the reference with itself and pass vacuously. So a missing `fer_edge._C`
ends the session with an error instead of a green run.
"""
from __future__ import annotations

import os

import pytest

import fer_edge


def pytest_sessionstart(session):
    info = fer_edge.build_info()
    if not info["native"] and os.environ.get("FER_EDGE_ALLOW_NO_NATIVE") != "1":
        pytest.exit(
            f"fer_edge._C is not importable ({info.get('error')}): install the package "
            "(`pip install .`) before running the tests.",
            returncode=3,
        )


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and fer_edge.build_info().get("cuda", False)


CUDA = _cuda_available()
cuda_only = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU and fer_edge built with CUDA")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, cuda_only])]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
