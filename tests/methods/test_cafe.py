"""CAFE (methods.md §5): channel groups, drop masks, L_sep and L_div on hand-computed cases, the
frozen encoder (no gradient, unchanged weights, eval mode), encoder loading errors, real steps.
The method contract test covers build / step / resume / export / the runtime's decision too."""
import os

import pytest
import torch
import torch.nn.functional as F

from fer_edge import ops
from fer_edge.train.methods.cafe import diverse_loss, drop_mask

os.environ.setdefault("FER_EDGE_PROGRESS", "0")


def test_groups_cover_every_channel_unevenly():
    sizes = ops.even_groups(192, 8)
    assert sum(sizes) == 192 and len(sizes) == 8 and sizes == [24] * 8
    sizes = ops.even_groups(512, 7)
    assert sum(sizes) == 512 and sizes[-1] == 74  # the released code leaves channel 511 out


def test_drop_masks_are_seeded_redrawn_and_never_empty_a_group():
    sizes = [73] * 6 + [74]
    a = drop_mask(sizes, 10 / 73, torch.Generator().manual_seed(5))
    b = drop_mask(sizes, 10 / 73, torch.Generator().manual_seed(5))
    c = drop_mask(sizes, 10 / 73, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    starts = [0, *torch.tensor(sizes).cumsum(0).tolist()]
    assert [int(a[s:e].sum()) for s, e in zip(starts, starts[1:])] == [10] * 7
    tiny = drop_mask([1, 2], 0.9, torch.Generator().manual_seed(0))
    assert tiny.tolist().count(False) >= 2 and not tiny[0]  # a 1-channel group keeps its channel


def test_separation_and_diverse_losses_on_a_hand_computed_case():
    f = torch.tensor([[0.2, 0.9, 0.1, 0.4, 0.8]], requires_grad=True)
    sizes = [2, 3]
    drop = torch.tensor([False, True, False, False, False])  # channel 1 dropped from group 0
    logits = ops.chanpool_max(f, sizes, drop)
    assert logits[0].tolist() == pytest.approx([0.2, 0.8])
    sep = F.cross_entropy(logits, torch.tensor([0]))
    assert sep.item() == pytest.approx(-torch.log_softmax(torch.tensor([0.2, 0.8]), 0)[0].item())
    div = diverse_loss(ops.chanpool_max(f, sizes), sizes)
    assert div.item() == pytest.approx(1 - (0.9 / 2 + 0.8 / 3) / 2)
    (sep + div).backward()
    assert f.grad[0, 1] != 0 and f.grad[0, 4] != 0 and f.grad[0, 2] == 0  # only group maxima get gradient


def _trainer(tmp_path, *extra):
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import Trainer, load_config

    recipe = recipe_for_method("cafe")
    cfg = load_config(recipe.path("config"), [*recipe.smoke, f"out_dir={tmp_path}", "eval_sets=[]", *extra],
                      method="cafe")
    return Trainer(cfg)


def test_the_frozen_encoder_gets_no_gradient_and_keeps_its_weights(data_root, tmp_path):
    t = _trainer(tmp_path, "optim.epochs=1", "optim.max_steps=3")
    enc = t.model.encoder
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    assert all(not p.requires_grad for p in enc.parameters())
    t.fit()
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    t.model.train()
    assert not enc.module.training  # stays in eval mode while the rest trains
    h = t.history[-1]
    assert all(k in h for k in ("ce_loss", "sep_loss", "div_loss"))


def test_a_mim_encoder_loads_by_path_and_bad_paths_are_clear(data_root, tmp_path):
    from fer_edge.models.encoder_io import save_encoder
    from fer_edge.models.vit import ViT

    vit = ViT("tiny", 8, 48, 1, 0.0, depth=1)
    save_encoder(vit, tmp_path / "enc", target="hog")
    t = _trainer(tmp_path / "run", f"cafe.encoder=mim:{tmp_path / 'enc'}")
    assert torch.equal(t.model.encoder.module.pos, vit.pos)
    with pytest.raises(FileNotFoundError, match="side by side"):
        _trainer(tmp_path / "run2", f"cafe.encoder=mim:{tmp_path / 'missing'}")
    save_encoder(ViT("tiny", 8, 64, 1, 0.0, depth=1), tmp_path / "enc64")
    with pytest.raises(ValueError, match="64 px"):
        _trainer(tmp_path / "run3", f"cafe.encoder=mim:{tmp_path / 'enc64'}")
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="foreign.pt"):
        _trainer(tmp_path / "run4", f"cafe.encoder=supervised:{tmp_path / 'foreign.pt'}")


def test_a_supervised_checkpoint_gives_its_backbone_as_the_encoder(data_root, tmp_path):
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import Trainer, load_config

    base = recipe_for_method("baseline")
    cfg = load_config(base.path("config"), [*base.smoke, f"out_dir={tmp_path / 'base'}", "eval_sets=[]"], method="baseline")
    b = Trainer(cfg)
    b.fit()
    t = _trainer(tmp_path / "cafe", f"cafe.encoder=supervised:{tmp_path / 'base' / 'last.pt'}")
    a, c = b.model.backbone.state_dict(), t.model.encoder.module.state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_the_plain_classifier_baseline_gives_its_cnn_as_the_budget_matched_encoder(data_root, tmp_path):
    base = _trainer(tmp_path / "base", "cafe.encoder=none", "cafe.separation=false", "cafe.diverse=false")
    base.fit()
    t = _trainer(tmp_path / "cafe", f"cafe.encoder=supervised:{tmp_path / 'base' / 'last.pt'}")
    a, c = base.model.generator.state_dict(), t.model.encoder.module.state_dict()
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)
    # a CAFE run with a frozen encoder is no supervised CNN: its generator is a mask, not a classifier
    masked = _trainer(tmp_path / "masked", "cafe.encoder=random")
    masked.fit()
    with pytest.raises(ValueError, match="not a supervised CNN"):
        _trainer(tmp_path / "cafe2", f"cafe.encoder=supervised:{tmp_path / 'masked' / 'last.pt'}")


def test_config_errors_are_clear():
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import load_config

    path = recipe_for_method("cafe").path("config")
    for bad, match in (("cafe.encoder=clip", "encoder"), ("cafe.encoder=mim", "encoder"), ("cafe.mask=relu", "mask"),
                       ("cafe.encoder=none", "baseline"), ("model.backbone=vit_tiny", "CNN")):
        with pytest.raises(ValueError, match=match):
            load_config(path, [bad], method="cafe")


def test_a_mask_from_the_encoder_sees_the_face_only_through_the_encoder():
    from torch import nn

    from fer_edge.models import build_backbone
    from fer_edge.models.cafe import CAFENet, FeatureMaskGenerator, FrozenFeatures

    class ChannelMeans(nn.Module):  # a frozen "encoder" that keeps only each image's mean brightness
        out_dim = 6

        def forward(self, x):
            return x.mean((1, 2, 3))[:, None].repeat(1, 6) * torch.arange(1.0, 7.0)

    torch.manual_seed(0)
    a = torch.rand(1, 1, 48, 48)
    b = a.flip(-1).roll(7, -2)  # another face, same mean brightness
    enc = FrozenFeatures(ChannelMeans())
    fed_f = CAFENet(enc, FeatureMaskGenerator(6, 5), 3, mask_from="encoder").eval()
    fed_x = CAFENet(enc, build_backbone("resnet18", 1, 48, width=0.25, stem="s2"), 3).eval()
    with torch.no_grad():
        assert torch.allclose(fed_f(a), fed_f(b))      # the encoder saw the same, so the mask did too
        assert not torch.allclose(fed_x(a), fed_x(b))  # the paper's generator reads the face itself
        # by hand: fc(F * sigmoid(to_mask(GELU(Linear(LayerNorm(F))))))
        f = enc(a)
        h = F.gelu(F.linear(F.layer_norm(f, (6,)), fed_f.generator.net[1].weight, fed_f.generator.net[1].bias))
        m = torch.sigmoid(fed_f.to_mask(h))
        assert torch.allclose(fed_f(a), fed_f.fc(f * m), atol=1e-6)
        ff, mm = fed_f.encoder_and_mask(a)
        assert torch.allclose(ff, f) and torch.allclose(mm, m)
    with pytest.raises(ValueError, match="mask_from"):
        CAFENet(None, FeatureMaskGenerator(6), 3, mask_from="encoder")


def test_mask_from_encoder_trains_exports_and_keeps_the_encoder_frozen(data_root, tmp_path):
    from fer_edge.export import export
    from fer_edge.models.cafe import FeatureMaskGenerator

    t = _trainer(tmp_path / "run", "cafe.mask_from=encoder", "cafe.mask_hidden=32", "optim.epochs=1", "optim.max_steps=3")
    assert isinstance(t.model.generator, FeatureMaskGenerator)
    before = {k: v.clone() for k, v in t.model.encoder.state_dict().items()}
    gen_before = {k: v.clone() for k, v in t.model.generator.state_dict().items()}
    t.fit()
    assert all(torch.equal(before[k], v) for k, v in t.model.encoder.state_dict().items())
    assert any(not torch.equal(gen_before[k], v) for k, v in t.model.generator.state_dict().items())
    assert all(k in t.history[-1] for k in ("ce_loss", "sep_loss", "div_loss"))
    report = export(t.report_checkpoint, ["onnx:fp32"], tmp_path / "x", name="m", val_limit=32, verbose=False)
    row = report["artifacts"][0]
    assert row["agreement_with_torch"] == 1.0 and row["max_abs_diff"] < 1e-3, row


def test_mask_from_config_errors_are_clear():
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import load_config

    path = recipe_for_method("cafe").path("config")
    for bad, match in ((["cafe.mask_from=face"], "mask_from"), (["cafe.mask_hidden=0"], "mask_hidden"),
                       (["cafe.encoder=none", "cafe.separation=false", "cafe.diverse=false", "cafe.mask_from=encoder"],
                        "needs a frozen encoder")):
        with pytest.raises(ValueError, match=match):
            load_config(path, bad, method="cafe")
    # the generator's backbone only matters when it reads the image
    load_config(path, ["cafe.mask_from=encoder", "model.backbone=vit_tiny"], method="cafe")
