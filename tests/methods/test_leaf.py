"""LEAF on Ada-CM (methods.md §4): gating gradients, the load-balancing loss, ambiguous pseudo
labels and their weights, Ada-CM thresholds, the labelled draw and the pool, cycled batches
sharded by rank, the EMA teacher at evaluation, and real steps. The method contract test covers
build / step / resume / export (TopK, no plugin) / the runtime's decision too."""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_edge.models.leaf import MatchedMLP, MoE
from fer_edge.train import semi_supervised as ssl

os.environ.setdefault("FER_EDGE_PROGRESS", "0")


@pytest.mark.parametrize("k,gets_gradient", [(2, True), (1, False)])
def test_top2_gating_trains_the_gate_and_top1_does_not(k, gets_gradient):
    torch.manual_seed(0)
    moe = MoE(16, experts=8, k=k, noisy=False).train()
    y, stats = moe(torch.randn(32, 16))
    y.pow(2).sum().backward()  # the task loss alone, without the balance loss
    grad = moe.gate.weight.grad
    assert (grad is not None and grad.abs().sum() > 0) == gets_gradient


def test_load_balancing_loss_on_a_hand_computed_case(monkeypatch):
    moe = MoE(4, experts=4, k=1, noisy=False).train()
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    monkeypatch.setattr(moe.gate, "forward", lambda x: logits)
    _, stats = moe(torch.zeros(4, 4))
    assert stats["usage"].tolist() == [0.5, 0.0, 0.25, 0.25]
    p_hi, p_lo = math.exp(4) / (math.exp(4) + 3), 1 / (math.exp(4) + 3)
    mean_p = [(2 * p_hi + 2 * p_lo) / 4, 4 * p_lo / 4, (p_hi + 3 * p_lo) / 4, (p_hi + 3 * p_lo) / 4]
    want = 4 * (0.5 * mean_p[0] + 0.25 * mean_p[2] + 0.25 * mean_p[3])
    assert stats["balance"].item() == pytest.approx(want, rel=1e-5)


def test_eval_routing_matches_the_kernel_and_the_mlp_control_matches_parameters():
    torch.manual_seed(1)
    moe = MoE(16, experts=8, k=2, noisy=False)
    x = torch.randn(10, 16)
    moe.train()
    y_train, _ = moe(x)
    moe.eval()
    y_eval, stats = moe(x)
    assert torch.allclose(y_train, y_eval, atol=1e-5) and stats == {}
    n_experts = sum(p.numel() for e in moe.experts for p in e.parameters())
    n_mlp = sum(p.numel() for p in MatchedMLP(16, 8).parameters())
    assert abs(n_mlp - n_experts) / n_experts < 0.5  # biases differ: 8 x (8 + 16) vs 64 + 16


def test_plain_network_classifies_the_backbone_feature_and_the_chain_the_normalised_one():
    from fer_edge.models import build_backbone
    from fer_edge.models.leaf import LEAFNet

    torch.manual_seed(0)
    x = torch.randn(4, 1, 48, 48)
    for blocks, normalised in (("none", False), ("mlp", True)):
        net = LEAFNet(build_backbone("resnet18", 1, 48, width=0.25), 8, blocks).eval()
        with torch.no_grad():
            f = net.backbone(x)
            logits, z, _ = net(x, with_features=True)
            h = net.instance(F.normalize(net.semantic(f)[0], dim=1) if normalised else f)[0]
        assert torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)  # the contrastive feature, either way
        assert torch.allclose(logits, net.classifier(h), atol=1e-5)


def test_ambiguous_sets_and_weights_on_hand_computed_cases():
    q = torch.tensor([[0.92, 0.05, 0.02, 0.01, 0.0],    # S2 = .97 >= .9 -> P = {0}
                      [0.50, 0.30, 0.15, 0.04, 0.01],   # S2 = .80, S3 = .95 -> P = {0, 1}
                      [0.30, 0.25, 0.20, 0.15, 0.10]])  # S4 = .90 -> i = 3: P = {0, 1, 2}
    pos, w, size = ssl.ambiguous_sets(q, mass=0.9)
    assert size.tolist() == [1, 2, 3]
    assert pos.tolist() == [[True, False, False, False, False], [True, True, False, False, False],
                            [True, True, True, False, False]]
    def weight(s_next, q_next, i):
        m = s_next / (i + 1)
        return min(1.0, math.log1p(50 * (m - q_next)) / math.log1p(50 * m))
    want = [weight(0.97, 0.05, 1), weight(0.95, 0.15, 2), weight(0.90, 0.15, 3)]
    assert w.tolist() == pytest.approx(want, rel=1e-5)


def test_ambiguous_loss_is_the_pairwise_softplus():
    z = torch.tensor([[2.0, 1.0, -1.0, 0.5]])
    pos = torch.tensor([[True, True, False, False]])
    want = math.log(1 + (math.exp(-2) + math.exp(-1)) * (math.exp(-1) + math.exp(0.5)))
    assert ssl.ambiguous_loss(z, pos).item() == pytest.approx(want, rel=1e-6)


def test_adaptive_thresholds_on_a_hand_computed_case():
    probs = np.array([[0.9, 0.1, 0.0], [0.95, 0.05, 0.0], [0.6, 0.4, 0.0], [0.1, 0.9, 0.0], [0.5, 0.5, 0.0]])
    labels = np.array([0, 0, 1, 1, 2])
    t = ssl.adaptive_thresholds(probs, labels, epoch=3)
    scale = 0.97 / (1 + math.exp(-3))
    assert t[0] == pytest.approx(max(0.8, 0.925 * scale))  # faces 0 and 1 right
    assert t[1] == pytest.approx(max(0.8, 0.9 * scale))     # face 3 right, face 2 wrong
    assert t[2] == 0.8                                       # nobody right: the floor
    assert ssl.confident(torch.tensor([[0.85, 0.15, 0.0], [0.2, 0.8, 0.0]]), torch.tensor(t)).tolist() == [
        0.85 >= t[0], 0.8 >= t[1]]


def test_contrastive_pairs_prefers_matching_views():
    z = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    aligned = ssl.contrastive_pairs(z, z + 0.01 * torch.randn(6, 8))
    shuffled = ssl.contrastive_pairs(z, z[torch.tensor([1, 2, 3, 4, 5, 0])])
    assert aligned < shuffled
    assert ssl.contrastive_pairs(z[:0], z[:0]).item() == 0.0


def test_labelled_draw_is_seeded_per_class_and_the_pool_is_the_rest():
    from fer_edge.train.data_roles import labelled_draw

    labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
    a, b, c = labelled_draw(labels, 4, 0), labelled_draw(labels, 4, 0), labelled_draw(labels, 4, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(labels[a]).tolist() == [4, 3, 4]  # class 1 has only 3


def test_cycled_pairs_shard_by_rank():
    from fer_edge.train.data_roles import PairedSteps

    class Faces:
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return {"image": torch.tensor([float(i)]), "label": 0, "soft_label": torch.zeros(2), "index": i}

    args = (Faces(6), Faces(50), ("labelled", "unlabelled"), (4, 4), 0, 2)
    whole = PairedSteps(*args, steps=8, cycle=True)  # 8 steps from 6 labelled faces: they cycle
    r0, r1 = PairedSteps(*args, steps=4, rank=0, world=2, cycle=True), PairedSteps(*args, steps=4, rank=1, world=2, cycle=True)
    assert len(whole) == 8
    flat = [p for pair in zip(r0.pairs, r1.pairs) for p in pair]
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(flat, whole.pairs))
    assert "unlabelled_label" not in r0[0] and "unlabelled_index" in r0[0]
    # the 32 labelled slots visit 6 faces ~5 times each: every visit is numbered apart (its own views)
    visits = np.concatenate([a for a, _ in whole.pairs])
    assert len(np.unique(visits)) == len(visits) == 32 and set((visits % 6).tolist()) == set(range(6))


def test_a_face_cycled_within_an_epoch_gets_fresh_views_and_keeps_its_index(data_root, tmp_path):
    t = _trainer(tmp_path)
    faces = t.data.role("labelled").with_view("weak+weak+strong")
    faces.set_epoch(0)
    n = len(faces)
    first, again, later = faces[3], faces[3], faces[3 + 2 * n]  # pass 0 twice, then pass 2 of face 3
    assert first["index"] == later["index"] == 3 and first["label"] == later["label"]
    for field in ("weak", "weak2", "strong"):
        assert torch.equal(first[field], again[field])  # seeded: the same visit is the same image
        assert not torch.equal(first[field], later[field])
    with pytest.raises(IndexError):
        faces[-1]


def _trainer(tmp_path, *extra):
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import Trainer, load_config

    recipe = recipe_for_method("leaf")
    cfg = load_config(recipe.path("config"), [*recipe.smoke, f"out_dir={tmp_path}", "eval_sets=[]", *extra],
                      method="leaf")
    return Trainer(cfg)


def test_real_steps_log_precision_coverage_usage_and_evaluate_the_ema_teacher(data_root, tmp_path):
    t = _trainer(tmp_path, "optim.epochs=1", "leaf.steps_per_epoch=3", "optim.max_steps=3")
    labelled, pool = t.data.role("labelled"), t.data.role("unlabelled")
    assert np.bincount(labelled.labels).max() <= 4 and len(labelled) + len(pool) == 200
    t.fit()
    h = t.history[-1]
    for key in ("x_loss", "u_loss", "s_loss", "balance_loss", "pseudo_coverage", "usage_semantic_min",
                "usage_instance_e7", "threshold_mean"):
        assert key in h and np.isfinite(h[key]), key
    assert sum(h[f"usage_instance_e{j}"] for j in range(8)) == pytest.approx(1.0)
    assert t.eval_model() is t.ema.module  # evaluation, reports and export use the teacher


def test_supervised_variant_trains_only_the_labelled_faces(data_root, tmp_path):
    t = _trainer(tmp_path, "leaf.unlabelled=false", "leaf.blocks=none", "optim.epochs=1", "optim.max_steps=2")
    assert [s.data for s in t.stages] == [("labelled",)]
    t.fit()
    assert "u_loss" not in t.history[-1] and np.isfinite(t.history[-1]["x_loss"])


def test_config_errors_are_clear():
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import load_config

    path = recipe_for_method("leaf").path("config")
    for bad, match in (("leaf.blocks=bank", "blocks"), ("leaf.k=5", "k"), ("data.labels_per_class=0", "labels_per_class"),
                       ("leaf.thresholds=soft", "thresholds"), ("model.backbone=mobilenet_v2", "ResNet")):
        with pytest.raises(ValueError, match=match):
            load_config(path, [bad], method="leaf")
    with pytest.raises(ValueError, match="vit_tiny"):
        load_config(path, ["leaf.encoder=some/encoder"], method="leaf")  # an encoder is a ViT
    with pytest.raises(ValueError, match="leaf.encoder"):
        load_config(path, ["model.backbone=vit_tiny", "model.pretrained=w.pt"], method="leaf")
    with pytest.raises(ValueError, match="ViT backbones"):
        load_config(path, ["leaf.layer_decay=0.5"], method="leaf")  # the ResNet has no layers to decay by
    with pytest.raises(ValueError, match="layer_decay"):
        load_config(path, ["model.backbone=vit_tiny", "leaf.layer_decay=0"], method="leaf")


def test_vit_fine_tuning_groups_decay_the_lr_down_the_encoder():
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import load_config
    from fer_edge.train.methods.leaf import LEAF

    cfg = load_config(recipe_for_method("leaf").path("config"), ["model.backbone=vit_tiny", "leaf.depth=2",
                                                                 "leaf.layer_decay=0.5"], method="leaf")
    method = LEAF(cfg)
    model = method.build_model(8, 1)
    groups = method.param_groups(model, method.stages()[0])
    by_name = {g["name"]: g for g in groups}
    # depth 2: embedding layer 0 at 0.5^3, blocks at 0.5^2 and 0.5^1, heads (MoEs, classifier) at 1
    assert by_name["layer0"]["lr_mult"] == 0.125 and by_name["layer1"]["lr_mult"] == 0.25
    assert by_name["layer2"]["lr_mult"] == 0.5 and by_name["layer3"]["lr_mult"] == 1.0
    ids = {id(p): g["name"] for g in groups for p in g["params"]}
    assert ids[id(model.backbone.embed.weight)] == "layer0"
    assert ids[id(model.backbone.cls)] == ids[id(model.backbone.pos)] == "layer0_no_decay"
    assert ids[id(model.backbone.blocks[1].norm1.weight)] == "layer2_no_decay"
    assert ids[id(model.classifier.weight)] == "layer3"
    assert all(g["weight_decay"] == 0.0 for g in groups if g["name"].endswith("_no_decay"))
    # every trainable parameter is in exactly one group
    assert sorted(ids) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert len(ids) == sum(len(g["params"]) for g in groups)
    # a ResNet keeps one group at the stage's lr
    resnet = LEAF(load_config(recipe_for_method("leaf").path("config"), [], method="leaf"))
    assert len(resnet.param_groups(resnet.build_model(8, 1), resnet.stages()[0])) == 1


def test_a_pretrained_vit_encoder_starts_both_student_and_teacher(data_root, tmp_path):
    from fer_edge.models.encoder_io import save_encoder
    from fer_edge.models.vit import ViT

    torch.manual_seed(3)
    vit = ViT("tiny", 8, 48, 1, 0.0, depth=1)
    save_encoder(vit, tmp_path / "enc", target="pixel", epochs=1)
    t = _trainer(tmp_path / "run", "model.backbone=vit_tiny", "leaf.depth=1", f"leaf.encoder={tmp_path / 'enc'}",
                 "optim.epochs=1", "leaf.steps_per_epoch=2", "optim.max_steps=2")
    want = vit.state_dict()
    for net in (t.model, t.ema.module):
        assert all(torch.equal(want[k], v) for k, v in net.backbone.state_dict().items())
    t.fit()  # real steps through the ViT and the MoEs; the student moved away from the encoder
    assert np.isfinite(t.history[-1]["train_loss"])
    assert any(not torch.equal(want[k], v) for k, v in t.model.backbone.state_dict().items())
    with pytest.raises(ValueError, match="shape"):  # an encoder of another shape is refused, not half-loaded
        _trainer(tmp_path / "run2", "model.backbone=vit_tiny", "leaf.depth=2", f"leaf.encoder={tmp_path / 'enc'}")
