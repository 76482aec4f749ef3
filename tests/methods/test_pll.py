"""Partial-label learning with MIM pre-training (methods.md §2): masking and the MIM loss, HOG
targets inside the step, candidate sets, revision, the uniform loss, per-face confidences across
resume, the encoder saved and loaded by path, and real steps of both stages. The method contract
test covers build / every stage's step / resume / export / the runtime's decision too."""
import math
import os

import pytest
import torch

from fer_edge.models.encoder_io import load_encoder, read_encoder_meta, save_encoder
from fer_edge.models.vit import ViT
from fer_edge.ops import _reference
from fer_edge.train import partial_labels as pl

os.environ.setdefault("FER_EDGE_PROGRESS", "0")


def test_random_mask_masks_exactly_the_ratio_per_face():
    m = pl.random_mask(5, 36, 0.4, torch.Generator().manual_seed(0))
    assert m.shape == (5, 36) and m.sum(1).tolist() == [14] * 5  # round(0.4 * 36)
    assert not torch.equal(m[0], m[1])  # different places per face


def test_masked_mse_counts_only_masked_patches():
    pred = torch.tensor([[[1.0, 1.0], [5.0, 5.0], [0.0, 2.0]]])
    target = torch.zeros(1, 3, 2)
    mask = torch.tensor([[True, False, True]])
    # masked patches: (1 + 1) / 2 = 1 and (0 + 4) / 2 = 2 -> mean 1.5; the unmasked 25 is ignored
    assert pl.masked_mse(pred, target, mask).item() == pytest.approx(1.5)


def test_pixel_targets_are_per_patch_normalised_pixels():
    img = torch.arange(16.0).view(1, 1, 4, 4)
    t = pl.pixel_targets(img, 2)
    assert t.shape == (1, 4, 4)
    first = torch.tensor([0.0, 1.0, 4.0, 5.0])  # the top-left 2x2 patch, row-major
    want = (first - first.mean()) / first.var(unbiased=False).sqrt()
    assert torch.allclose(t[0, 0], want, atol=1e-4)
    assert torch.allclose(t.mean(-1), torch.zeros(1, 4), atol=1e-5)


def test_initial_confidence_is_uniform_over_candidates():
    c = pl.initial_confidence(torch.tensor([[True, False, True, False], [False, True, False, False]]))
    assert c.tolist() == [[0.5, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0]]


def test_revision_collapses_on_a_clear_margin_and_renormalises_otherwise():
    cand = torch.tensor([[True, True, False], [True, True, False]])
    conf = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    phi = torch.tensor([[0.95, 0.1, 0.9],    # phi*C: .475, .05, 0 -> gap .425 <= .5: renormalise inside Y
                        [0.99, 0.1, 0.9]])   # with tau .4: gap .445 > .4 -> one-hot on class 0
    new = pl.revise(phi, conf, cand, tau=0.5)
    assert new[0].tolist() == pytest.approx([0.95 / 1.05, 0.1 / 1.05, 0.0])  # class 2 is outside Y: stays 0
    new = pl.revise(phi, conf, cand, tau=0.4)
    assert new[1].tolist() == [1.0, 0.0, 0.0] and new[0].tolist() == [1.0, 0.0, 0.0]


def test_confidence_ce_equals_ce_for_one_hot_confidence():
    logits = torch.randn(4, 5)
    y = torch.tensor([0, 3, 1, 4])
    assert pl.confidence_ce(logits, torch.nn.functional.one_hot(y, 5).float()).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)


def test_uniform_loss_on_hand_computed_queries():
    q = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # normalised: orthogonal, ||a - b||^2 = 2
    assert pl.uniform_loss(q).item() == pytest.approx(-4.0, abs=1e-5)
    q = torch.tensor([[1.0, 0.0], [-2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    # pairs (ordered, i != j): d^2 = 4, 2, 2 (each twice) -> log mean exp(-2 d^2)
    want = math.log((2 * math.exp(-8) + 4 * math.exp(-4)) / 6)
    loss = pl.uniform_loss(q)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    loss.backward()
    assert torch.isfinite(q.grad).all()


def test_encoder_saves_and_loads_by_path(tmp_path):
    vit = ViT("tiny", 8, 48, 1, 0.0, depth=2)
    path = save_encoder(vit, tmp_path / "enc", target="hog", epochs=3)
    assert path.name == "enc.safetensors" and read_encoder_meta(tmp_path / "enc")["target"] == "hog"
    again = load_encoder(tmp_path / "enc.json")
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(vit.eval()(x), again.eval()(x))
    with pytest.raises(ValueError, match="depth"):
        load_encoder(path, into=ViT("tiny", 8, 48, 1, 0.0, depth=3))
    with pytest.raises(FileNotFoundError, match="side by side"):
        load_encoder(tmp_path / "missing")
    (tmp_path / "enc.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_encoder(path)


def _trainer(tmp_path, *extra):
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import Trainer, load_config

    recipe = recipe_for_method("pll")
    cfg = load_config(recipe.path("config"), [*recipe.smoke, f"out_dir={tmp_path}", "eval_sets=[]", *extra], method="pll")
    return Trainer(cfg)


def test_hog_targets_in_the_step_equal_the_reference_on_the_same_batch(data_root, tmp_path, monkeypatch):
    from fer_edge import ops
    from fer_edge.train.data_roles import stage_loader

    trainer = _trainer(tmp_path)
    stage = trainer.stages[0]
    assert stage.name == "pretrain"
    trainer._optimizer_for(stage)
    ctx = trainer._context(stage, 1, {})
    batch = next(iter(stage_loader(stage, trainer.data, 0, 1, 0, 0, 1, 0)))
    seen = {}
    real = ops.hog

    def spy(images, *args):
        seen["images"], seen["out"] = images.clone(), real(images, *args)
        return seen["out"]

    monkeypatch.setattr(ops, "hog", spy)
    terms = trainer.method.train_step(ctx, batch)
    assert set(terms) == {"mim"} and torch.isfinite(terms["mim"])
    assert torch.equal(seen["images"], batch["image"].float())
    ref = _reference.hog(batch["image"].float(), 4, 9, 8)
    assert seen["out"].shape == (len(batch["image"]), 36, 36)
    # equal except where a gradient sits exactly on a bin edge (random erasing's axis-aligned
    # rectangles make some), which the kernel sends to the upper bin by a sign test and the
    # reference's atan2 may round either way (tests/ops/test_hog.py)
    close = torch.isclose(seen["out"], ref, atol=1e-4, rtol=1e-4)
    assert close.float().mean() > 0.999


def test_block_normalised_targets_in_the_step_come_from_the_raw_kernel_sums(data_root, tmp_path, monkeypatch):
    from fer_edge import ops
    from fer_edge.train import partial_labels as pl
    from fer_edge.train.data_roles import stage_loader

    trainer = _trainer(tmp_path, "pll.hog_norm=block", "pll.hog_floor=0.2")
    stage = trainer.stages[0]
    trainer._optimizer_for(stage)
    ctx = trainer._context(stage, 1, {})
    batch = next(iter(stage_loader(stage, trainer.data, 0, 1, 0, 0, 1, 0)))
    seen = {}
    real_hog, real_norm = ops.hog, pl.block_normalise

    def spy_hog(images, *args, **kw):
        seen["norm"] = kw.get("norm")
        seen["raw"] = real_hog(images, *args, **kw)
        return seen["raw"]

    def spy_norm(raw, floor):
        seen["floor"], seen["target"] = floor, real_norm(raw, floor)
        return seen["target"]

    monkeypatch.setattr(ops, "hog", spy_hog)
    monkeypatch.setattr(pl, "block_normalise", spy_norm)
    terms = trainer.method.train_step(ctx, batch)
    assert torch.isfinite(terms["mim"]) and seen["norm"] == "none" and seen["floor"] == 0.2
    ref = _reference.hog(batch["image"].float(), 4, 9, 8, norm="none")
    assert torch.isclose(seen["raw"], ref, atol=1e-3, rtol=1e-4).float().mean() > 0.999
    assert float(seen["target"].norm(dim=-1).max()) <= 1 + 1e-5


def test_datasets_without_votes_get_seeded_random_candidate_sets(data_root, tmp_path):
    trainer = _trainer(tmp_path, "pll.pretrain_epochs=0")
    trainer.fit(stop_after=0)  # setup
    cand = trainer.method.samples["random_candidates"]
    labels = torch.from_numpy(trainer.data.role("labelled").labels)
    assert cand[torch.arange(len(labels)), labels].all() and 0 < cand.float().mean() < 1
    batch = {"label": labels[:3], "index": torch.arange(3)}  # a batch of a dataset without votes
    assert torch.equal(trainer.method.candidates(batch), cand[:3])
    batch["candidates"] = torch.zeros(3, 8, dtype=torch.bool)  # votes win where the data has them
    assert not trainer.method.candidates(batch).any()


def test_confidences_are_revised_saved_and_survive_resume(data_root, tmp_path):
    trainer = _trainer(tmp_path, "pll.pretrain_epochs=0", "optim.epochs=2")
    trainer.fit(stop_after=1)
    conf, seen = trainer.method.samples["confidence"], trainer.method.samples["seen"]
    assert seen.sum() > 0 and torch.allclose(conf[seen].sum(1), torch.ones(int(seen.sum())), atol=1e-5)
    resumed = _trainer(tmp_path, "pll.pretrain_epochs=0", "optim.epochs=2")
    resumed.resume(tmp_path / "last.pt")
    assert torch.equal(resumed.method.samples["confidence"], conf)
    assert torch.equal(resumed.method.samples["seen"], seen)


def test_pretraining_writes_an_encoder_that_fine_tuning_loads(data_root, tmp_path):
    pre = _trainer(tmp_path / "pre", "optim.epochs=0")
    pre.fit()
    meta = read_encoder_meta(tmp_path / "pre" / "encoder")
    assert meta["target"] == "hog" and meta["epochs"] == 1 and meta["depth"] == 1
    fine = _trainer(tmp_path / "fine", "pll.pretrain_epochs=0", f"pll.encoder={tmp_path / 'pre' / 'encoder'}")
    fine.fit(stop_after=0)  # setup only
    a, b = pre.model.net.encoder.state_dict(), fine.model.net.encoder.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="shape does not fit"):
        _trainer(tmp_path / "bad", "pll.pretrain_epochs=0", "pll.depth=2",
                 f"pll.encoder={tmp_path / 'pre' / 'encoder'}").fit(stop_after=0)


def test_config_errors_are_clear():
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import load_config

    path = recipe_for_method("pll").path("config")
    for bad, match in (("model.backbone=resnet18", "ViT"), ("pll.patch=7", "divide"), ("pll.target=depth", "target"),
                       ("pll.hog_cell=3", "hog_cell"), ("pll.mask_ratio=1.0", "mask_ratio"),
                       ("pll.labels=votes", "labels"), ("pll.scorer=mean", "scorer"), ("pll.hog_norm=patch", "hog_norm"),
                       ("pll.hog_floor=-1", "hog_floor"), ("pll.layer_decay=0", "layer_decay"),
                       ("pll.layer_decay=1.5", "layer_decay")):
        with pytest.raises(ValueError, match=match):
            load_config(path, [bad], method="pll")


def test_label_query_decoder_scores_each_query_with_its_class_weights():
    from fer_edge.models.pll import LabelQueryDecoder

    torch.manual_seed(0)
    dec = LabelQueryDecoder(16, 3, layers=1, heads=2)  # per_class by default
    tokens = torch.randn(2, 5, 16)
    q = dec.queries.unsqueeze(0).expand(2, -1, -1)
    h = dec.decoder(q, tokens)
    expected = torch.stack([h[:, k] @ dec.class_weight[k] + dec.class_bias[k] for k in range(3)], 1)
    torch.testing.assert_close(dec(tokens), expected)
    # queries start as distinct N(0, 1) vectors (DETR), not lost in the residual stream
    assert 0.5 < float(dec.queries.std()) < 1.5
    shared = LabelQueryDecoder(16, 3, layers=1, heads=2, scorer="shared")
    h = shared.decoder(shared.queries.unsqueeze(0).expand(2, -1, -1), tokens)
    torch.testing.assert_close(shared(tokens), shared.score(h).squeeze(-1))
    with pytest.raises(ValueError, match="scorer"):
        LabelQueryDecoder(16, 3, scorer="mean")


def test_block_normalised_hog_keeps_flat_patches_near_zero():
    from fer_edge.train.partial_labels import block_normalise

    raw = torch.zeros(1, 3, 4)
    raw[0, 0] = torch.tensor([3.0, 4.0, 0.0, 0.0])   # norm 5: an edge-rich patch
    raw[0, 1] = torch.tensor([0.0, 0.0, 0.03, 0.04])  # norm 0.05: a flat patch
    raw[0, 2] = torch.tensor([1.0, 0.0, 0.0, 0.0])    # norm 1
    mean_norm = (5 + 0.05 + 1) / 3                    # 2.0167; floor 0.1 x that = 0.20167
    out = block_normalise(raw, 0.1)
    torch.testing.assert_close(out[0, 0], torch.tensor([0.6, 0.8, 0.0, 0.0]))
    torch.testing.assert_close(out[0, 1], torch.tensor([0.0, 0.0, 0.03, 0.04]) / (0.1 * mean_norm))
    torch.testing.assert_close(out[0, 2], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    # floor 0: plain per-patch L2 (the flat patch becomes unit norm as well)
    torch.testing.assert_close(block_normalise(raw, 0.0).norm(dim=-1), torch.ones(1, 3))


def test_fine_tuning_groups_decay_the_lr_by_layer_and_spare_norms_and_queries_from_weight_decay():
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import load_config
    from fer_edge.train.methods.base import get_method

    cfg = load_config(recipe_for_method("pll").path("config"), ["pll.depth=2", "pll.layer_decay=0.5"], method="pll")
    method = get_method("pll", cfg)
    model = method.build_model(8, 1)
    pretrain, finetune = method.stages()
    assert len(method.param_groups(model, pretrain)) == 1  # pre-training as before: one group
    groups = method.param_groups(model, finetune)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert set(by_param) == {id(p) for p in named.values()}  # every parameter in exactly one group
    assert sum(len(g["params"]) for g in groups) == len(named)
    mult = lambda n: by_param[id(named[n])]["lr_mult"]  # noqa: E731
    wd = lambda n: by_param[id(named[n])].get("weight_decay", "stage")  # noqa: E731
    # depth 2: embedding = layer 0 (0.5^3), block i = layer i+1, decoder and final norm = layer 3 (1.0)
    assert mult("net.encoder.embed.weight") == mult("net.encoder.pos") == 0.125
    assert mult("net.encoder.blocks.0.mlp.0.weight") == 0.25 and mult("net.encoder.blocks.1.attn.in_proj_weight") == 0.5
    assert mult("net.encoder.norm.weight") == mult("net.decoder.queries") == mult("net.decoder.class_weight") == 1.0
    for name in ("net.encoder.cls", "net.encoder.pos", "net.decoder.queries", "net.encoder.blocks.0.norm1.weight",
                 "net.encoder.blocks.1.mlp.0.bias", "net.decoder.class_bias"):
        assert wd(name) == 0.0, name
    for name in ("net.encoder.embed.weight", "net.encoder.blocks.0.mlp.0.weight", "net.decoder.class_weight"):
        assert wd(name) == "stage", name
    # layer_decay=1 (the default): every group at the stage's lr
    cfg1 = load_config(recipe_for_method("pll").path("config"), ["pll.depth=2"], method="pll")
    m1 = get_method("pll", cfg1)
    assert {g["lr_mult"] for g in m1.param_groups(m1.build_model(8, 1), m1.stages()[1])} == {1.0}
