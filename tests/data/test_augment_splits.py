import numpy as np
import pytest

from fer_edge.data import augment
from fer_edge.data.splits import MultiView, PairedSampler, labelled_split


def _item(color=False):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 40, 3) if color else (48, 40), dtype=np.uint8)
    lm = np.array([[12, 18], [28, 18], [20, 26], [14, 36], [26, 36]], np.float32)
    return {"image": img, "landmarks": lm, "label": 3}


def _marked(lm, shape=(48, 40)):
    """An image with a bright pixel at each landmark, to check that pixels and points move together."""
    img = np.zeros(shape, np.uint8)
    for x, y in lm.astype(int):
        img[y - 1:y + 2, x - 1:x + 2] = 255
    return img


def test_flip_swaps_left_and_right_points():
    it = _item()
    out = augment.hflip(it)
    np.testing.assert_array_equal(out["image"], it["image"][:, ::-1])
    # the image-left eye after flipping is the old right eye, mirrored
    np.testing.assert_allclose(out["landmarks"][0], [39 - 28, 18])
    np.testing.assert_allclose(out["landmarks"][3], [39 - 26, 36])
    assert out["landmarks"][0, 0] < out["landmarks"][1, 0]
    np.testing.assert_allclose(augment.hflip(out)["landmarks"], it["landmarks"])


@pytest.mark.parametrize("op", ["rotate", "shear_x", "shear_y", "translate_x", "translate_y"])
def test_geometric_ops_move_landmarks_with_the_pixels(op):
    lm = np.array([[12, 18], [28, 18], [20, 26], [14, 36], [26, 36]], np.float32)
    it = {"image": _marked(lm), "landmarks": lm}
    out = augment.RANDAUGMENT_OPS[op](it, np.random.default_rng(1), 0.5)
    for x, y in out["landmarks"]:
        xi, yi = int(round(x)), int(round(y))
        if 0 <= xi < 40 and 0 <= yi < 48:
            assert out["image"][yi, xi] > 100, (op, x, y)


def test_box_jitter_keeps_size_and_moves_landmarks_with_pixels():
    lm = np.array([[12, 18], [28, 18], [20, 26], [14, 36], [26, 36]], np.float32)
    out = augment.box_jitter({"image": _marked(lm), "landmarks": lm}, np.random.default_rng(3))
    assert out["image"].shape == (48, 40)
    for x, y in out["landmarks"]:
        assert out["image"][int(round(y)), int(round(x))] > 100


@pytest.mark.parametrize("pipeline", [augment.weak, augment.strong])
@pytest.mark.parametrize("color", [False, True])
def test_pipelines_are_deterministic_under_a_seed(pipeline, color):
    it = _item(color)
    a = pipeline(dict(it), np.random.default_rng(42))
    b = pipeline(dict(it), np.random.default_rng(42))
    c = pipeline(dict(it), np.random.default_rng(43))
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["landmarks"], b["landmarks"])
    assert a["image"].shape == it["image"].shape and a["image"].dtype == np.uint8
    assert not np.array_equal(a["image"], c["image"])
    assert a["label"] == 3


def test_every_randaugment_op_runs_on_gray_and_color():
    for color in (False, True):
        it = _item(color)
        for name, op in augment.RANDAUGMENT_OPS.items():
            out = op(dict(it), np.random.default_rng(0), 0.7)
            assert out["image"].shape == it["image"].shape and out["image"].dtype == np.uint8, name


def test_cutout_erasing_noise():
    it = _item()
    it["image"] = np.zeros((48, 40), np.uint8)  # no pixel is 127 before the cutout
    sides = []
    for seed in range(20):
        out = augment.cutout(it, np.random.default_rng(seed), max_frac=0.5)["image"]
        ys, xs = np.nonzero(out == 127)
        assert ((out == 127) | (out == 0)).all()  # nothing but the square changes
        if len(ys):
            h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            assert (out[ys.min():ys.max() + 1, xs.min():xs.max() + 1] == 127).all()  # one filled rectangle
            sides.append(max(h, w))
    assert sides and max(sides) <= 0.5 * 40 + 1  # at most max_frac of the short side
    it = _item()
    erased = augment.random_erasing(it, np.random.default_rng(0), p=1.0)
    assert (erased["image"] != it["image"]).any()
    noisy = augment.gaussian_noise(it, np.random.default_rng(0), sigma=(5, 5))
    assert 2 < np.abs(noisy["image"].astype(int) - it["image"]).mean() < 8


def test_labelled_split_is_seeded_and_per_class():
    labels = np.repeat(np.arange(7), [50, 40, 30, 20, 10, 5, 3])
    lab, unl = labelled_split(labels, 4, seed=1)
    assert np.bincount(labels[lab]).tolist() == [4, 4, 4, 4, 4, 4, 3]
    assert len(np.intersect1d(lab, unl)) == 0 and len(lab) + len(unl) == len(labels)
    assert np.array_equal(lab, labelled_split(labels, 4, seed=1)[0])
    assert not np.array_equal(lab, labelled_split(labels, 4, seed=2)[0])
    with pytest.raises(ValueError):
        labelled_split(labels, 0)


def test_multiview_gives_reproducible_distinct_views(data_root):
    from fer_edge.data.folder import ckplus

    mv = MultiView(ckplus(), [augment.weak, augment.weak, augment.strong], seed=0)
    a, b = mv[5], mv[5]
    assert len(a["views"]) == 3 and "label" not in a
    for x, y in zip(a["views"], b["views"]):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a["views"][0], a["views"][1])
    mv.set_epoch(1)
    assert not np.array_equal(mv[5]["views"][0], a["views"][0])


def test_paired_sampler_covers_source_and_cycles_target():
    s = PairedSampler(100, 7, 16, 16, seed=3)
    batches = list(s)
    assert len(batches) == 6 == len(s)
    src = np.concatenate([b[0] for b in batches])
    assert len(np.unique(src)) == 96
    tgt = np.concatenate([b[1] for b in batches])
    assert set(tgt.tolist()) == set(range(7)) and all(len(b[1]) == 16 for b in batches)
    assert [b[0].tolist() for b in PairedSampler(100, 7, 16, 16, seed=3)] == [b[0].tolist() for b in batches]
    s.set_epoch(1)
    assert [b[0].tolist() for b in s] != [b[0].tolist() for b in batches]
    with pytest.raises(ValueError, match="both domains"):
        PairedSampler(0, 5, 1, 1)


def test_random_candidate_sets():
    from fer_edge.data.splits import random_candidate_sets

    labels = np.random.default_rng(0).integers(0, 7, 20000)
    cand = random_candidate_sets(labels, 7, q=0.3, seed=1)
    assert cand[np.arange(len(labels)), labels].all()
    others = cand.sum(1) - 1
    assert abs(others.mean() - 6 * 0.3) < 0.05
    assert np.array_equal(cand, random_candidate_sets(labels, 7, q=0.3, seed=1))
    with pytest.raises(ValueError, match="labels must be in"):
        random_candidate_sets([7], 7)
