import pytest
import torch

from fer_edge.ops import _reference as R
from fer_edge.ops import topk_gating

@pytest.mark.parametrize("T,E,k", [(1, 8, 2), (128, 8, 2), (33, 5, 3)])
def test_eager_dispatch_equals_the_registered_op_with_gradients(T, E, k):
    """topk_gating calls the kernel through an autograd.Function (cheaper than torch.library's
    dispatch); the registered op (torch.compile, opcheck) must give the same values and gradients."""
    z = torch.randn(T, E, generator=torch.Generator().manual_seed(T + E)).round().requires_grad_(True)  # many ties
    w, i, p = topk_gating(z, k, return_probs=True)
    (w.square().sum() + p.square().sum()).backward()
    g_eager, z.grad = z.grad.clone(), None
    w2, i2, p2 = torch.ops.fer_edge.topk_gating(z, k, True)
    (w2.square().sum() + p2.square().sum()).backward()
    assert torch.equal(i, i2)
    torch.testing.assert_close(w, w2)
    torch.testing.assert_close(p, p2)
    torch.testing.assert_close(z.grad, g_eager)


@pytest.mark.parametrize("T", [1, 3, 17, 1000])
@pytest.mark.parametrize("E,k", [(1, 1), (5, 2), (7, 3), (8, 2), (12, 4), (33, 1), (64, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference(T, E, k, dtype, device):
    z = torch.randn(T, E, dtype=dtype, generator=torch.Generator().manual_seed(T * E + k)) * 3
    w, i, p = topk_gating(z.to(device), k, return_probs=True)
    rw, ri, rp = R.topk_gating(z, k, True)
    assert w.dtype == dtype and i.dtype == torch.int64 and p.shape == (T, E)
    assert torch.equal(i.cpu(), ri)
    torch.testing.assert_close(w.cpu(), rw)
    torch.testing.assert_close(p.cpu(), rp)
    torch.testing.assert_close(w.sum(-1).cpu(), torch.ones(T, dtype=dtype))


def test_without_probs_and_with_leading_dims():
    z = torch.randn(2, 5, 7)
    w, i, p = topk_gating(z, 2)
    assert p is None and w.shape == (2, 5, 2) and i.shape == (2, 5, 2)
    rw, ri, _ = R.topk_gating(z.reshape(-1, 7), 2)
    torch.testing.assert_close(w.reshape(-1, 2), rw)


def test_ties_go_to_the_lower_index_and_output_is_sorted():
    z = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    w, i, _ = topk_gating(z, 3)
    assert i.tolist() == [[1, 2, 4], [0, 1, 2]]
    torch.testing.assert_close(w, torch.full((2, 3), 1 / 3))


def test_extreme_and_masked_logits_stay_finite():
    z = torch.tensor([[1e4, -1e4, 0.0, float("-inf")], [float("-inf"), 5.0, float("-inf"), 4.0]])
    w, i, p = topk_gating(z, 2, return_probs=True)
    assert torch.isfinite(w).all() and torch.isfinite(p).all()
    assert i.tolist() == [[0, 2], [1, 3]]
    torch.testing.assert_close(w[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(p[1, [0, 2]], torch.zeros(2))


@pytest.mark.parametrize("E,k", [(5, 2), (7, 3), (12, 4), (3, 1)])
@pytest.mark.parametrize("with_probs", [False, True])
def test_gradcheck(E, k, with_probs, device):
    # Distinct logits: the top-k set is locally constant, so the op is differentiable there.
    z = (torch.randperm(4 * E).view(4, E).double() / 3).to(device).requires_grad_()

    def f(t):
        w, _, p = topk_gating(t, k, return_probs=with_probs)
        return (w, p) if with_probs else w

    assert torch.autograd.gradcheck(f, (z,))


def test_backward_matches_reference_autograd():
    z = torch.randn(300, 9, requires_grad=True)
    gw, gp = torch.randn(300, 3), torch.randn(300, 9)
    w, _, p = topk_gating(z, 3, return_probs=True)
    (w * gw).sum().add((p * gp).sum()).backward()
    zr = z.detach().clone().requires_grad_()
    rw, _, rp = R.topk_gating(zr, 3, True)
    (rw * gw).sum().add((rp * gp).sum()).backward()
    torch.testing.assert_close(z.grad, zr.grad)


def test_probs_requested_but_unused_in_loss():
    z = torch.randn(10, 6, dtype=torch.float64, requires_grad=True)
    w, _, _ = topk_gating(z, 2, return_probs=True)
    w[:, 0].sum().backward()
    zr = z.detach().clone().requires_grad_()
    R.topk_gating(zr, 2)[0][:, 0].sum().backward()
    torch.testing.assert_close(z.grad, zr.grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32(dtype):
    z = torch.randn(50, 8)
    w, i, p = topk_gating(z.to(dtype), 2, return_probs=True)
    assert w.dtype == dtype and p.dtype == dtype
    rw, ri, _ = R.topk_gating(z.to(dtype).float(), 2)
    assert torch.equal(i, ri)
    torch.testing.assert_close(w.float(), rw, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: topk_gating(torch.randn(4, 5), 6), ValueError, r"k: expected a value in \[1, 4\], got 6"),
        (lambda: topk_gating(torch.randn(4, 3), 4), ValueError, r"k: expected a value in \[1, 3\], got 4"),
        (lambda: topk_gating(torch.randn(4, 65), 2), ValueError, r"at most 64 experts.*\(4, 65\)"),
        (lambda: topk_gating(torch.randn(4, 5), 0), ValueError, "k"),
        (lambda: topk_gating(torch.randint(0, 3, (4, 5)), 2), TypeError, "logits: expected dtype"),
        (lambda: topk_gating(torch.randn(0, 5), 2), ValueError, "non-empty"),
        (lambda: topk_gating(torch.randn(()), 1), ValueError, r"logits: expected shape \[\.\.\., E\], got \(\)"),
        (lambda: topk_gating(torch.randn(3, 5), 2, return_probs=1), TypeError, "return_probs"),
    ],
)
def test_bad_input_raises_a_clear_error(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_nan_is_rejected(device):
    z = torch.randn(20, 5, device=device)
    z[7, 2] = float("nan")
    with pytest.raises(ValueError, match="logits: contains NaN"):
        topk_gating(z, 2)


def test_opcheck():
    z = torch.randn(6, 7, requires_grad=True)
    torch.library.opcheck(torch.ops.fer_edge.topk_gating.default, (z, 2, True))
    torch.library.opcheck(torch.ops.fer_edge.topk_gating.default, (z, 3, False))
    w, i, p = topk_gating(z.detach(), 2, return_probs=True)
    torch.library.opcheck(torch.ops.fer_edge.topk_gating_backward.default, (torch.randn(6, 2), w, i, torch.randn(6, 7), p, 7))


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("shape", [(6, 7), (2, 3, 7)], ids=["2d", "3d"])
def test_exports_to_standard_onnx_ops_that_onnxruntime_runs(tmp_path, dynamo, shape):
    """Both exporters see the standard-op path (the TorchScript one is asked only while tracing)."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")

    class Gate(torch.nn.Module):
        def forward(self, z):
            w, i, _ = topk_gating(z, 2)
            return w, i

    z = torch.randn(*shape)
    path = tmp_path / "g.onnx"
    if dynamo:
        torch.onnx.export(Gate(), (z,), dynamo=True, opset_version=18).save(str(path))
    else:
        torch.onnx.export(Gate(), (z,), str(path), dynamo=False, opset_version=18, input_names=["z"])
    ops_used = {(n.domain, n.op_type) for n in onnx.load(str(path)).graph.node}
    assert ("", "TopK") in ops_used and all(d in ("", "ai.onnx") for d, _ in ops_used), ops_used
    w, i = ort.InferenceSession(str(path)).run(None, {"z": z.numpy()})
    rw, ri, _ = R.topk_gating(z.reshape(-1, shape[-1]), 2)
    assert (i.reshape(-1, 2) == ri.numpy()).all() and i.shape == (*shape[:-1], 2)
    torch.testing.assert_close(torch.from_numpy(w).reshape(-1, 2), rw)


@pytest.mark.parametrize("row,match", [
    ([float("inf"), float("inf"), 0.0, 1.0], r"\+inf"),
    ([float("-inf")] * 4, "row 1 keeps 0 finite logits, fewer than k=2"),
    ([float("-inf"), float("-inf"), float("-inf"), 1.0], "row 1 keeps 1 finite logits"),
    ([float("nan"), 0.0, 1.0, 2.0], "NaN"),
])
def test_one_rule_for_non_finite_logits_on_every_device(row, match, device):
    """-inf masks an expert while a row keeps k finite logits; +inf, NaN and over-masked rows are
    errors (the CPU kernel used to return NaN weights for them, the CUDA path rejected every inf)."""
    z = torch.tensor([[0.0, 1.0, 2.0, 3.0], row, [3.0, 2.0, 1.0, 0.0]], device=device)
    with pytest.raises(ValueError, match=match):
        topk_gating(z, 2)
    masked = torch.tensor([[0.0, float("-inf"), 2.0, float("-inf")]], device=device)
    w, i, p = topk_gating(masked, 2, return_probs=True)
    assert i.tolist() == [[2, 0]] and torch.isfinite(w).all() and p[0, 1] == 0 and p[0, 3] == 0
    from fer_edge.ops import _reference

    rw, ri, _ = _reference.topk_gating(masked.cpu(), 2, False)
    torch.testing.assert_close(w.cpu(), rw)
