"""Shared test setup.

Kernel tests compare the compiled kernels with their PyTorch twins; run against the fallback
they would compare the reference with itself and pass vacuously. So a missing `fer_edge._C`
ends the session with an error instead of a green run.
"""
from __future__ import annotations

import os

import pytest

import fer_edge

# Tests never download anything (the YuNet fetch is tested through a file:// URL).
os.environ["FER_EDGE_OFFLINE"] = "1"


def pytest_sessionstart(session):
    # on a GPU machine (benchmarks/gpu_check.sh) the CUDA tests must run: skipping them would pass
    if os.environ.get("FER_EDGE_REQUIRE_CUDA") == "1" and not _cuda_available():
        pytest.exit("FER_EDGE_REQUIRE_CUDA=1 but no CUDA GPU is visible to torch, or fer_edge was built without "
                    f"CUDA (build_info: cuda={fer_edge.build_info().get('cuda')})", returncode=3)
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


@pytest.fixture(scope="session")
def data_root():
    """../shared/data (or $FER_EDGE_DATA). Missing data skips locally; CI sets
    FER_EDGE_REQUIRE_DATA=1 so that a missing folder fails instead of skipping."""
    from fer_edge.paths import data_root as find

    root = find(required=False)
    if root is None:
        if os.environ.get("FER_EDGE_REQUIRE_DATA") == "1":
            pytest.fail("FER_EDGE_REQUIRE_DATA=1 but no data folder was found (set FER_EDGE_DATA)")
        pytest.skip("no data folder (set FER_EDGE_DATA to ../shared/data)")
    return root


@pytest.fixture(scope="session")
def yunet_path(data_root):
    return data_root / "yunet" / "face_detection_yunet_2023mar.onnx"


@pytest.fixture(scope="session")
def detector(yunet_path):
    from fer_edge.faces import FaceDetector

    return FaceDetector(yunet_path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, data_root):
    """A small baseline trained for a few steps on real FERPlus images (a smoke model, not a result)."""
    os.environ.setdefault("FER_EDGE_PROGRESS", "0")
    from fer_edge.train import Trainer, load_config

    out = tmp_path_factory.mktemp("run") / "smoke"
    cfg = load_config(None, [f"out_dir={out}", "threads=1", "data.limit=512", "data.batch_size=32", "optim.epochs=2",
                             "optim.max_steps=8", "model.width=0.25"])
    Trainer(cfg).fit()
    return out / "best.pt"


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from fer_edge.export import export

    out = tmp_path_factory.mktemp("exports")
    report = export(trained, ["onnx:fp32", "onnx:int8", "openvino:fp32", "openvino:fp16", "openvino:int8", "tensorrt:fp16"],
                    out, name="m", calibration_size=64, val_limit=200, threads=1, verbose=False)
    return out, {(r["format"], r["precision"]): r for r in report["artifacts"]}, report
