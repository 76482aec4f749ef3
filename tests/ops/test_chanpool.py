import pytest
import torch

from fer_edge.ops import _reference as R
from fer_edge.ops import chanpool_max, even_groups


def _x(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _mask(shape, p=0.3, seed=1):
    m = torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p
    return m


@pytest.mark.parametrize("shape,groups", [
    ((1, 13), [4, 2, 7]), ((3, 13, 5, 7), [4, 2, 7]), ((2, 512), even_groups(512, 7)),
    ((3, 512, 7, 7), even_groups(512, 7)), ((2, 5, 1, 3), [1, 1, 1, 1, 1]), ((4, 9, 2), [9]),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mask_kind", [None, "shared", "per_sample"])
def test_forward_and_backward_match_reference(shape, groups, dtype, mask_kind, device):
    x = _x(*shape, dtype=dtype)
    B, C = shape[:2]
    mask = None
    if mask_kind is not None:
        mask = _mask((C,) if mask_kind == "shared" else (B, C))
        starts = torch.tensor([0] + groups[:-1]).cumsum(0)
        mask[..., starts] = False  # keep one channel per group
    xd = x.clone().to(device).requires_grad_()
    out, arg = chanpool_max(xd, groups, None if mask is None else mask.to(device), return_indices=True)
    xr = x.clone().requires_grad_()
    rout, rarg = R.chanpool_max(xr, groups, mask, return_indices=True)
    assert out.shape == (B, len(groups), *shape[2:]) and out.dtype == dtype and arg.dtype == torch.int32
    torch.testing.assert_close(out.detach().cpu(), rout.detach())
    assert torch.equal(arg.cpu().long(), rarg)
    g = _x(*out.shape, dtype=dtype, seed=3)
    out.backward(g.to(device))
    rout.backward(g)
    torch.testing.assert_close(xd.grad.cpu(), xr.grad)


def test_ties_go_to_the_lowest_channel_and_get_the_gradient():
    x = torch.tensor([[2.0, 5.0, 5.0, 1.0, 1.0]], requires_grad=True)
    out, arg = chanpool_max(x, [3, 2], return_indices=True)
    assert arg.tolist() == [[1, 3]]
    out.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 0.0, 1.0, 0.0]]


def test_dropped_channels_are_excluded_and_get_no_gradient():
    x = torch.tensor([[9.0, 1.0, 2.0, 8.0, 3.0]], requires_grad=True)
    mask = torch.tensor([True, False, False, True, False])
    out = chanpool_max(x, [3, 2], mask)
    assert out.tolist() == [[2.0, 3.0]]
    out.sum().backward()
    assert x.grad.tolist() == [[0.0, 0.0, 1.0, 0.0, 1.0]]


def test_non_contiguous_channels_last_input():
    x = _x(2, 7, 5, 13).permute(0, 3, 1, 2)  # [2, 13, 7, 5] channels-last view
    assert not x.is_contiguous()
    torch.testing.assert_close(chanpool_max(x, [6, 7]), R.chanpool_max(x, [6, 7]))


@pytest.mark.parametrize("spatial", [(), (3, 4)])
def test_gradcheck(spatial, device):
    # Distinct values: no ties, so the max is locally differentiable.
    C = 11
    n = 3 * C * (12 if spatial else 1)
    x = (torch.randperm(n).double() / 7).view(3, C, *spatial).to(device).requires_grad_()
    mask = torch.zeros(C, dtype=torch.bool, device=device)
    mask[[2, 9]] = True
    assert torch.autograd.gradcheck(lambda t: chanpool_max(t, [3, 5, 3], mask), (x,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32(dtype):
    x = _x(2, 10, 3, 3).to(dtype)
    out = chanpool_max(x, [4, 6])
    assert out.dtype == dtype
    torch.testing.assert_close(out, R.chanpool_max(x.float(), [4, 6]).to(dtype))


def test_even_groups():
    assert even_groups(512, 7) == [73] * 6 + [74]
    assert even_groups(14, 7) == [2] * 7
    assert even_groups(10, 3) == [3, 3, 4]


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: chanpool_max(torch.randn(5), [5]), ValueError, r"x: expected shape \[B, C\] or \[B, C, H, W\], got \(5,\)"),
        (lambda: chanpool_max(torch.randn(2, 6), [2, 3]), ValueError, r"summing to C=6 \(x shape \(2, 6\)\), got sum 5"),
        (lambda: chanpool_max(torch.randn(2, 6), [6, 0]), ValueError, "every group needs >= 1 channel"),
        (lambda: chanpool_max(torch.randn(2, 6), []), TypeError, "group_sizes"),
        (lambda: chanpool_max(torch.randn(2, 6), [3, 3], torch.zeros(5, dtype=torch.bool)), ValueError, r"drop_mask: expected shape \(6,\) or \(2, 6\)"),
        (lambda: chanpool_max(torch.randn(2, 6), [3, 3], torch.zeros(6)), TypeError, "drop_mask: expected dtype"),
        (lambda: chanpool_max(torch.randn(2, 6), [3, 3], torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool)), ValueError, "drops every channel of a group"),
        (lambda: chanpool_max(torch.randint(0, 4, (2, 6)), [3, 3]), TypeError, "x: expected dtype"),
        (lambda: chanpool_max(torch.randn(0, 6), [3, 3]), ValueError, "non-empty"),
        (lambda: even_groups(3, 7), ValueError, "channels"),
    ],
)
def test_bad_input_raises_a_clear_error(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_nan_is_rejected(device):
    x = torch.randn(2, 6, 3, device=device)
    x[1, 4, 2] = float("nan")
    with pytest.raises(ValueError, match="x: contains NaN"):
        chanpool_max(x, [3, 3])


def test_opcheck():
    x = _x(3, 13, 2, 3).requires_grad_()
    torch.library.opcheck(torch.ops.fer_edge.chanpool_max.default, (x, [4, 2, 7], None))
    torch.library.opcheck(torch.ops.fer_edge.chanpool_max.default, (x, [4, 2, 7], _mask((13,)).index_fill(0, torch.tensor([0, 4, 6]), False)))
    torch.library.opcheck(torch.ops.fer_edge.chanpool_max.default, (_x(4, 9), [5, 4], None))


def test_exports_to_standard_onnx_ops_that_onnxruntime_runs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    sizes = even_groups(20, 3)

    class Head(torch.nn.Module):
        def forward(self, x):
            return chanpool_max(x, sizes)

    x = _x(2, 20, 3, 3)
    prog = torch.onnx.export(Head(), (x,), dynamo=True, opset_version=18)
    prog.save(str(tmp_path / "m.onnx"))
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert not any("fer_edge" in o or "chanpool" in o for o in ops)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x.numpy()})[0]
    np_ref = R.chanpool_max(x, sizes).numpy()
    assert (got == np_ref).all()
