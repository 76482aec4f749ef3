import pytest
import torch

from fer_edge.ops import _reference as R
from fer_edge.ops import hog


def _u8(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("shape", [(1, 1, 16, 16), (3, 3, 48, 80), (2, 1, 112, 176), (1, 3, 32, 16)])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_matches_maskfeat_reference(shape, dtype, device):
    # Pixel values on a 1/256 grid: gradients are then exact in float32 whatever the summation
    # order, so every pixel lands in the same bin as in the reference. (On a 1/255 grid a
    # gradient that is 0 in exact arithmetic comes out as +-1e-9 depending on the order and
    # flips between bins 0 and 8; see the continuous-input test for that tolerance.)
    x = _u8(*shape)
    x = x if dtype == torch.uint8 else x.float() / 256.0
    ours = hog(x.to(device)).cpu()
    ref = R.hog(x)
    assert ours.shape == ref.shape == (shape[0], (shape[2] // 16) * (shape[3] // 16), shape[1] * 4 * 9)
    torch.testing.assert_close(ours, ref, atol=2e-6, rtol=1e-5)


# Bin counts whose boundaries no integer gradient can hit exactly except at 90 degrees, where both
# sides agree; see test_exact_boundary_goes_to_the_upper_bin for 45/135 degrees (bins % 4 == 0).
@pytest.mark.parametrize("cell,patch,bins,norm", [(4, 8, 9, "l2"), (8, 8, 6, "l2"), (4, 16, 10, "none"), (2, 6, 9, "l2")])
def test_other_cell_patch_bin_settings(cell, patch, bins, norm, device):
    x = _u8(2, 3, 48, 96, seed=1)
    ours = hog(x.to(device), cell=cell, bins=bins, patch=patch, norm=norm).cpu()
    ref = R.hog(x, cell, bins, patch, norm)
    torch.testing.assert_close(ours, ref, atol=1e-4 if norm == "none" else 2e-6, rtol=1e-5)


def test_continuous_float_input_agrees_except_at_bin_boundaries():
    # Arbitrary floats can land within an ulp of a bin edge, where atan2 (reference) and our
    # boundary sign tests may round differently; such cells must stay vanishingly rare.
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    diff = (hog(x) - R.hog(x)).abs()
    assert (diff > 1e-4).float().mean() < 1e-3


def test_vertical_edge_falls_in_the_horizontal_gradient_bin():
    x = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    x[..., 8:] = 200  # left dark, right bright: gx < 0, gy = 0 -> atan2 = -pi/2 -> bin 4
    out = hog(x, cell=8, patch=16).view(1, 1, 9, 2, 2)  # (channel, bin, cell row, cell col)
    hist = out[0, 0]
    assert torch.allclose(hist[4], torch.ones(2, 2))
    assert hist[torch.arange(9) != 4].abs().max() == 0


def test_exact_boundary_goes_to_the_upper_bin():
    # A ramp x = i - j has gx = 8, gy = -8 everywhere inside: atan2 = 3*pi/4, exactly the edge
    # between bins 2 and 3 of 4. floor() puts it in bin 3; the float reference computes
    # 2.9999998 there, which is rounding, not semantics.
    i = torch.arange(32).view(-1, 1)
    x = (i - i.T + 40).to(torch.uint8).view(1, 1, 32, 32)
    out = hog(x, cell=8, bins=4, patch=8, norm="none").view(4, 4, 4)  # [cell row, cell col, bin]
    interior = out[1:3, 1:3]
    assert torch.all(interior[..., 3] > 0) and torch.all(interior[..., :3] == 0)


def test_channels_are_independent_blocks_in_maskfeat_order():
    x = _u8(2, 3, 32, 48, seed=3)
    full = hog(x)
    per = full.shape[-1] // 3
    for c in range(3):
        torch.testing.assert_close(full[..., c * per:(c + 1) * per], hog(x[:, c:c + 1]))


def test_uint8_equals_its_float_value_and_non_contiguous_input():
    x = _u8(2, 48, 32, 3, seed=4).permute(0, 3, 1, 2)  # channels-last view, not contiguous
    assert not x.is_contiguous()
    torch.testing.assert_close(hog(x), hog(x.float().contiguous()))
    torch.testing.assert_close(hog(x), R.hog(x), atol=2e-6, rtol=1e-5)


def test_flat_image_gives_zero_not_nan():
    out = hog(torch.full((1, 1, 16, 16), 7, dtype=torch.uint8))
    assert torch.all(out == 0)


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: hog(torch.zeros(3, 16, 16)), ValueError, r"images: expected shape \[B, C, H, W\], got \(3, 16, 16\)"),
        (lambda: hog(torch.zeros(1, 1, 16, 16, dtype=torch.float64)), TypeError, "images: expected dtype"),
        (lambda: hog(torch.zeros(1, 1, 20, 16)), ValueError, r"multiples of patch=16, got shape \(1, 1, 20, 16\)"),
        (lambda: hog(torch.zeros(1, 1, 16, 16), cell=6, patch=16), ValueError, "patch: expected a multiple of cell=6"),
        (lambda: hog(torch.zeros(1, 1, 16, 16), bins=0), ValueError, "bins"),
        (lambda: hog(torch.zeros(1, 1, 16, 16), bins=65), ValueError, "bins"),
        (lambda: hog(torch.zeros(1, 1, 16, 16), norm="l1"), ValueError, "norm"),
        (lambda: hog(torch.zeros(0, 1, 16, 16)), ValueError, "non-empty"),
        (lambda: hog([[0]]), TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_raises_a_clear_error(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_nan_or_inf_input_is_rejected(device):
    x = torch.rand(1, 1, 16, 16, device=device)
    x[0, 0, 3, 5] = float("nan")
    with pytest.raises(ValueError, match="images: contains NaN or infinity"):
        hog(x)
    x[0, 0, 3, 5] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinity"):
        hog(x)


def test_opcheck():
    x = _u8(2, 3, 32, 16)
    torch.library.opcheck(torch.ops.fer_edge.hog.default, (x, 8, 9, 16, "l2"))
    torch.library.opcheck(torch.ops.fer_edge.hog.default, (x.float(), 4, 9, 8, "none"))


def test_compiles_with_torch_compile():
    x = _u8(2, 1, 32, 32).float()
    f = torch.compile(lambda t: hog(t) * 2.0, fullgraph=True, backend="eager")
    torch.testing.assert_close(f(x), hog(x) * 2.0)


@pytest.mark.parametrize("cell,patch,bins", [(8, 8, 9), (4, 8, 9), (8, 8, 7)])
def test_width_not_a_multiple_of_the_16_column_strip(cell, patch, bins, device):
    # The 9-bin fast path works on 16-column strips; W=24 ends half-way through one.
    x = _u8(2, 3, 40, 24, seed=9)
    ours = hog(x.to(device), cell=cell, bins=bins, patch=patch).cpu()
    torch.testing.assert_close(ours, R.hog(x, cell, bins, patch), atol=2e-6, rtol=1e-5)
