"""The installed package: what was compiled, and that the runtime side stays torch-free."""
import os
import subprocess
import sys

import pytest

import fer_edge


def test_build_info_lists_every_cpu_kernel():
    info = fer_edge.build_info()
    assert info["native"] is True
    assert set(info["cpu_kernels"]) == {"hog", "kmeans_cosine", "assign_cosine", "topk_gating", "chanpool_max"}
    assert info["num_threads"] >= 1 and info["compiler"]


@pytest.mark.skipif(os.environ.get("FER_EDGE_EXPECT_CUDA") != "1", reason="CI sets FER_EDGE_EXPECT_CUDA=1 where nvcc exists")
def test_cuda_kernels_were_compiled():
    info = fer_edge.build_info()
    assert info["cuda"] is True, info
    assert set(info["cuda_kernels"]) == set(info["cpu_kernels"])
    assert "87" in info["cuda_archs"] and "90" in info["cuda_archs"]  # Jetson Orin and Hopper


def test_import_and_native_core_do_not_import_torch(tmp_path):
    code = ("import sys, fer_edge, fer_edge._C as C; fer_edge.build_info(); "
            "assert 'torch' not in sys.modules, 'torch was imported'; print(C.get_num_threads())")
    # cwd away from the checkout, whose bare source tree would shadow the installed package
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def test_native_backstop_rejects_inconsistent_buffers_without_crashing():
    from fer_edge import _C

    images = _C.Buffer(0x1000, [1, 1, 16, 16], "uint8", -1)
    wrong_out = _C.Buffer(0x2000, [1, 1, 10], "float32", -1)
    with pytest.raises(ValueError, match="out: expected shape"):
        _C.hog(images, wrong_out, 8, 9, 16, True)
    with pytest.raises(ValueError, match="null data pointer"):
        _C.hog(_C.Buffer(0, [1, 1, 16, 16], "uint8", -1), _C.Buffer(0x2000, [1, 1, 36], "float32", -1), 8, 9, 16, True)
    with pytest.raises(ValueError, match="unsupported dtype"):
        _C.Buffer(0x1000, [4], "complex64", -1)
    with pytest.raises(ValueError, match="k must be"):
        _C.topk_gating_forward(_C.Buffer(0x1000, [2, 3], "float32", -1), 4, _C.Buffer(0x2000, [2, 4], "float32", -1),
                               _C.Buffer(0x3000, [2, 4], "int64", -1), _C.Buffer())


def test_cuda_buffer_on_a_cpu_only_call_path_is_an_error_not_a_crash():
    from fer_edge import _C

    images = _C.Buffer(0x1000, [1, 1, 16, 16], "uint8", 0)
    out = _C.Buffer(0x2000, [1, 1, 36], "float32", -1)
    with pytest.raises((ValueError, RuntimeError)):
        _C.hog(images, out, 8, 9, 16, True)


def test_thread_count_is_settable():
    from fer_edge import ops

    before = ops.get_num_threads()
    try:
        ops.set_num_threads(1)
        assert ops.get_num_threads() == 1
    finally:
        ops.set_num_threads(0)
    assert ops.get_num_threads() == before


def test_fallback_to_the_references_is_announced_and_works(monkeypatch):
    import torch

    from fer_edge import _native, ops

    monkeypatch.setattr(_native, "_module", None)
    monkeypatch.setattr(_native, "_loaded", True)
    monkeypatch.setattr(_native, "_error", "ImportError: simulated")
    monkeypatch.setattr(_native, "_warned", False)
    assert fer_edge.build_info()["native"] is False
    with pytest.warns(RuntimeWarning, match="PyTorch reference"):
        assert ops.hog(torch.zeros(1, 1, 16, 16)).shape == (1, 1, 36)
    c, lab = ops.kmeans_cosine(torch.randn(2, 9, 3), 3, 2, seed=0)
    assert c.shape == (2, 3, 3) and lab.shape == (2, 9)
    z = torch.randn(5, 6, requires_grad=True)
    w, i, p = ops.topk_gating(z, 2, return_probs=True)
    (w.sum() + p[:, 0].sum()).backward()
    assert z.grad.shape == (5, 6)
    x = torch.randn(2, 7, 3, requires_grad=True)
    ops.chanpool_max(x, [3, 4]).sum().backward()
    assert x.grad.sum() == 2 * 2 * 3
    with pytest.raises(ImportError, match="pip install"):
        _native.require()


def test_buffers_refuse_non_contiguous_views():
    import torch

    from fer_edge import _C
    from fer_edge.ops._buffers import as_buffer

    with pytest.raises(ValueError, match="contiguous"):
        as_buffer(_C, torch.zeros(4, 1).expand(4, 1000))
    with pytest.raises(ValueError, match="does not match"):
        as_buffer(_C, torch.zeros(4, 3), (5, 3))


def test_require_cuda_makes_a_machine_without_a_gpu_fail_instead_of_skip(tmp_path):
    """benchmarks/gpu_check.sh runs the CUDA tests with FER_EDGE_REQUIRE_CUDA=1: where no GPU (or
    no CUDA build) is there, the session must fail, not report skipped tests as a pass."""
    from pathlib import Path

    from fer_edge import build_info

    try:
        import torch

        if torch.cuda.is_available() and build_info().get("cuda"):
            pytest.skip("this machine has a GPU and a CUDA build")
    except ImportError:
        pass
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", str(root / "tests" / "ops" / "test_hog.py")],
                          capture_output=True, text=True, timeout=300, cwd=root,
                          env=dict(os.environ, FER_EDGE_REQUIRE_CUDA="1"))
    assert proc.returncode == 3 and "FER_EDGE_REQUIRE_CUDA=1 but no CUDA GPU" in proc.stdout + proc.stderr
