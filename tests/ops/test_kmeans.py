import pytest
import torch
import torch.nn.functional as F

from fer_edge.ops import _reference as R
from fer_edge.ops import assign_cosine, cluster_means, kmeans_cosine


def _clustered(P, N, D, K, noise=0.05, seed=0):
    """Points around K well-separated directions: no near-ties, so every step is unambiguous."""
    g = torch.Generator().manual_seed(seed)
    centers = F.normalize(torch.randn(P, K, D, generator=g), dim=-1)
    lab = torch.randint(0, K, (P, N), generator=g)
    return centers.gather(1, lab[..., None].expand(-1, -1, D)) + noise * torch.randn(P, N, D, generator=g)


@pytest.mark.parametrize("P,N,D,K", [(1, 9, 3, 2), (3, 37, 7, 4), (5, 64, 16, 7), (2, 513, 5, 1)])
@pytest.mark.parametrize("init", ["kmeans++", "first"])
def test_matches_reference_on_separated_clusters(P, N, D, K, init, device):
    x = _clustered(P, N, D, K)
    c, lab = kmeans_cosine(x.to(device), K, iters=10, init=init, seed=11)
    rc, rlab = R.kmeans_cosine(x, K, 10, init, seed=11)
    assert c.shape == (P, K, D) and lab.shape == (P, N) and lab.dtype == torch.int64
    torch.testing.assert_close(c.cpu(), rc, atol=1e-5, rtol=1e-5)
    assert torch.equal(lab.cpu(), rlab)


def test_kmeans_plus_plus_seeds_are_the_references_for_the_same_seed(device):
    # iters=0 returns the initial centroids: the counter-based RNG must pick the same points.
    x = torch.randn(6, 50, 8, generator=torch.Generator().manual_seed(5))
    for seed in (0, 1, 2**40 + 7):
        c, _ = kmeans_cosine(x.to(device), 5, iters=0, seed=seed)
        rc, _ = R.kmeans_cosine(x, 5, 0, "kmeans++", seed=seed)
        torch.testing.assert_close(c.cpu(), rc)


def test_deterministic_for_a_seed_and_seed_dependent():
    x = torch.randn(8, 100, 6, generator=torch.Generator().manual_seed(1))
    a = kmeans_cosine(x, 4, 5, seed=3)
    b = kmeans_cosine(x, 4, 5, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = kmeans_cosine(x, 4, 0, seed=4)
    assert not torch.equal(kmeans_cosine(x, 4, 0, seed=3)[0], c[0])


def test_random_data_labels_are_consistent_with_returned_centroids():
    x = torch.randn(16, 200, 12, generator=torch.Generator().manual_seed(2))
    c, lab = kmeans_cosine(x, 6, 10, seed=0)
    torch.testing.assert_close(c.norm(dim=-1), torch.ones(16, 6))
    sims = torch.bmm(F.normalize(x, dim=-1), c.transpose(1, 2))
    # argmax agrees except where two centroids are within float rounding of each other
    best = sims.max(-1).values
    chosen = sims.gather(-1, lab[..., None])[..., 0]
    assert torch.all(chosen >= best - 1e-6)
    # and the reference run agrees on (almost) every label: a near-tie flip can change the path
    _, rlab = R.kmeans_cosine(x, 6, 10, "kmeans++", 0)
    assert (lab == rlab).float().mean() > 0.99


def test_fewer_points_than_clusters_leaves_empty_clusters_deterministically(device):
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]], device=device)
    c, lab = kmeans_cosine(x, 5, 4, init="first")
    # "first" uses point c mod N; clusters 3 and 4 duplicate points 0 and 1, lose every tie to
    # the lower index, stay empty and keep their initial centroid.
    assert lab.tolist() == [[0, 1, 2]]
    torch.testing.assert_close(c[0, 3:].cpu(), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    c2, lab2 = kmeans_cosine(x, 5, 4, init="kmeans++", seed=9)
    rc2, rlab2 = R.kmeans_cosine(x.cpu(), 5, 4, "kmeans++", 9)
    torch.testing.assert_close(c2.cpu(), rc2)
    assert torch.equal(lab2.cpu(), rlab2)


def test_given_initial_centroids(device):
    x = _clustered(3, 40, 5, 3, seed=4)
    init = torch.randn(3, 3, 5, generator=torch.Generator().manual_seed(8))
    c, lab = kmeans_cosine(x.to(device), 3, 6, init=init.to(device))
    rc, rlab = R.kmeans_cosine(x, 3, 6, init)
    torch.testing.assert_close(c.cpu(), rc, atol=1e-5, rtol=1e-5)
    assert torch.equal(lab.cpu(), rlab)


def test_other_dtypes_and_non_contiguous_input():
    x = _clustered(2, 30, 6, 3, seed=6)
    ref = kmeans_cosine(x, 3, 5, seed=1)
    for variant in (x.double(), x.to(torch.bfloat16).float(), x.transpose(1, 2).contiguous().transpose(1, 2)):
        c, lab = kmeans_cosine(variant, 3, 5, seed=1)
        assert c.dtype == torch.float32
        assert (lab == ref[1]).float().mean() > 0.95


def test_zero_vectors_do_not_produce_nan():
    x = torch.zeros(1, 10, 4)
    x[0, :5, 0] = 1.0
    c, lab = kmeans_cosine(x, 2, 3, seed=0)
    assert torch.isfinite(c).all() and lab.min() >= 0 and lab.max() < 2


@pytest.mark.parametrize("P,M,D,K", [(1, 1, 1, 1), (3, 50, 7, 4), (4, 129, 16, 9), (2, 16, 5, 8), (2, 33, 3, 1),
                                     (1, 64, 128, 7), (5, 256, 4, 4)])
def test_assign_matches_reference(P, M, D, K, device):
    g = torch.Generator().manual_seed(P * M)
    y, cent = torch.randn(P, M, D, generator=g), torch.randn(P, K, D, generator=g)
    lab, sim = assign_cosine(y.to(device), cent.to(device))
    rlab, rsim = R.assign_cosine(y, cent)
    assert torch.equal(lab.cpu(), rlab)
    torch.testing.assert_close(sim.cpu(), rsim, atol=1e-6, rtol=1e-5)


def test_assign_zero_rows_take_the_first_centroid_with_similarity_zero():
    y = torch.randn(1, 20, 6)
    y[0, [0, 7, 19]] = 0.0
    lab, sim = assign_cosine(y, torch.randn(1, 3, 6))
    assert lab[0, [0, 7, 19]].tolist() == [0, 0, 0] and sim[0, [0, 7, 19]].tolist() == [0.0, 0.0, 0.0]


def test_assign_ties_go_to_the_lower_index():
    cent = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    lab, sim = assign_cosine(torch.tensor([[[2.0, 0.0], [1.0, 1.0]]]), cent)
    assert lab.tolist() == [[0, 0]]
    torch.testing.assert_close(sim, torch.tensor([[1.0, 0.5**0.5]]))


def test_cluster_means_carry_gradients():
    x = torch.randn(2, 10, 3, dtype=torch.float64, requires_grad=True)
    _, lab = kmeans_cosine(x.detach(), 3, 4, seed=0)
    assert torch.autograd.gradcheck(lambda t: cluster_means(t, lab, 3), (x,))


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: kmeans_cosine(torch.randn(10, 3), 2), ValueError, r"x: expected shape \[P, N, D\], got \(10, 3\)"),
        (lambda: kmeans_cosine(torch.randint(0, 3, (1, 4, 2)), 2), TypeError, "x: expected dtype"),
        (lambda: kmeans_cosine(torch.randn(1, 4, 2), 0), ValueError, "k: expected a value in >= 1, got 0"),
        (lambda: kmeans_cosine(torch.randn(1, 4, 2), 2, iters=-1), ValueError, "iters"),
        (lambda: kmeans_cosine(torch.randn(1, 4, 2), 2, init="random"), ValueError, "init"),
        (lambda: kmeans_cosine(torch.randn(2, 4, 3), 2, init=torch.randn(2, 3, 3)), ValueError, r"init: expected shape \(2, 2, 3\)"),
        (lambda: kmeans_cosine(torch.randn(0, 4, 3), 2), ValueError, "non-empty"),
        (lambda: kmeans_cosine(torch.randn(1, 4, 3), 2.0), TypeError, "k: expected an int"),
        (lambda: assign_cosine(torch.randn(2, 4, 3), torch.randn(2, 2, 5)), ValueError, r"centroids: expected shape \(2, K, 3\)"),
        (lambda: assign_cosine(torch.randn(2, 4, 3), torch.randn(2, 0, 3)), ValueError, "non-empty"),
    ],
)
def test_bad_input_raises_a_clear_error(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_nan_is_rejected(device):
    x = torch.randn(2, 5, 3, device=device)
    x[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity"):
        kmeans_cosine(x, 2)
    with pytest.raises(ValueError, match="NaN or infinity"):
        assign_cosine(x, torch.randn(2, 2, 3, device=device))


def test_opcheck():
    x = _clustered(3, 20, 4, 3)
    torch.library.opcheck(torch.ops.fer_edge.kmeans_cosine.default, (x, 3, 4, "kmeans++", None, 1))
    torch.library.opcheck(torch.ops.fer_edge.kmeans_cosine.default, (x, 3, 4, "given", torch.randn(3, 3, 4), 0))
    torch.library.opcheck(torch.ops.fer_edge.assign_cosine.default, (x, torch.randn(3, 5, 4)))
