"""Cross-layer contrastive learning (methods.md §3): the losses on hand-computed cases, gradients
reaching layer 2, the channel coding, MSR's attention, and real steps end to end. The method
contract test covers build / step / resume / export for it too."""
import math
import os

import pytest
import torch

from fer_edge.models import build_backbone
from fer_edge.models.cross_layer import CrossLayerModel, CrossLayerNet, MultiScaleFusion
from fer_edge.train import cross_layer as cl

os.environ.setdefault("FER_EDGE_PROGRESS", "0")


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.hypot(*a) / math.hypot(*b)


def test_alignment_matches_a_hand_computed_case_with_an_empty_cluster():
    deep = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]], requires_grad=True)
    shallow = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [1.0, 2.0]]], requires_grad=True)
    deep_labels = torch.tensor([[0, 0, 1, 1]])
    centroids = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])  # cluster 2: no member on either side
    loss, stats = cl.alignment(deep, shallow, deep_labels, centroids)
    # deep means (1, .05), (.05, 1), centroid (-1, 0); shallow means (2, 0), (.5, 2.5), centroid (-1, 0)
    want = ((1 - _cos((2, 0), (1, 0.05))) + (1 - _cos((0.5, 2.5), (0.05, 1))) + 0.0) / 3
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert stats["shallow_clusters_used"] == 2
    loss.backward()
    assert shallow.grad.abs().sum() > 0 and deep.grad.abs().sum() > 0


def test_an_empty_cluster_contributes_nothing_and_no_gradient():
    deep = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], requires_grad=True)
    shallow = torch.tensor([[[1.0, 0.0], [2.0, 0.1]]], requires_grad=True)  # both go to cluster 0
    loss, _ = cl.alignment(deep, shallow, torch.tensor([[0, 1]]), torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    mean0 = (1.5, 0.05)
    assert loss.item() == pytest.approx((1 - _cos(mean0, (1, 0))) / 2, rel=1e-5)
    loss.backward()
    assert deep.grad[0, 1].abs().sum() == 0  # cluster 1's deep member: its shallow side is empty


def test_class_centre_control_uses_only_the_classes_present():
    deep = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.2, 1.0]])
    shallow = torch.tensor([[1.0, 0.2], [0.1, 1.0], [1.0, 0.0]])
    labels = torch.tensor([5, 2, 2])  # classes 5 and 2 of 8
    loss, stats = cl.class_centre_alignment(deep, shallow, labels, 8)
    # centres: class 5 -> (1, 0), class 2 -> mean((0,1),(.2,1)) = (.1, 1); shallow rows 0 and 2 go
    # to class 5, row 1 to class 2
    want = ((1 - _cos((1.0, 0.1), (1, 0))) + (1 - _cos((0.1, 1.0), (0.1, 1.0)))) / 2
    assert loss.item() == pytest.approx(want, abs=1e-6)
    assert stats["shallow_clusters_used"] == 2


def test_native_and_torch_kmeans_give_the_same_loss():
    g = torch.Generator().manual_seed(0)
    deep, shallow = torch.randn(6, 40, 4, generator=g), torch.randn(6, 12, 4, generator=g)
    a, _ = cl.cluster_alignment(deep, shallow, 4, 10, seed=123, impl="native")
    b, _ = cl.cluster_alignment(deep, shallow, 4, 10, seed=123, impl="torch")
    assert a.item() == pytest.approx(b.item(), abs=1e-5)


def test_soft_coding_finds_the_peak_and_has_a_gradient():
    maps = torch.zeros(2, 3, 5, 4)
    maps[0, 0, 1, 3] = 50.0  # a sharp peak at row 1, column 3
    maps.requires_grad_(True)
    codes = cl.coordinate_codes(maps, "soft", temperature=0.1)
    assert codes.shape == (2, 3, 4)
    x, y = (3 + 0.5) / 4, (1 + 0.5) / 5
    assert codes[0, 0].tolist() == pytest.approx([x, y, 1 - x, 1 - y], abs=1e-3)
    assert codes[1, 0].tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5], abs=1e-6)  # a flat map: the centre
    (codes[0, 0, 0] * 1.0).backward()
    assert maps.grad is not None and torch.isfinite(maps.grad).all() and maps.grad.abs().sum() > 0


def test_topk_coding_is_the_released_index_code_without_gradient():
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 2, 1], maps[0, 0, 0, 3] = 5.0, 4.0
    codes = cl.coordinate_codes(maps, "topk")
    assert codes[0, 0].tolist() == pytest.approx([2.5 / 4, 1.5 / 4, 0.5 / 4, 3.5 / 4])
    m = maps.clone().requires_grad_(True)
    c = cl.coordinate_codes(m, "topk")
    assert not c.requires_grad  # indices: nothing flows back (the released CLFM's fault)
    with pytest.raises(ValueError, match="coding"):
        cl.coordinate_codes(maps, "hash")


def _model(msr="attention", heads=True, width=0.25, vector_relu=True):
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", 1, 48, width=width, stem="s2")
    return CrossLayerModel(CrossLayerNet(backbone, 8, msr), (2, 4) if heads else (), vector_relu=vector_relu)


@pytest.mark.parametrize("vector_relu", [True, False])
def test_clbs_vectors_are_signed_only_without_the_papers_relu(vector_relu):
    model = _model(msr="none", vector_relu=vector_relu)
    out = model(torch.randn(16, 1, 48, 48))
    v = torch.cat([out["vectors"][2], out["vectors"][4]])
    assert (v.min() < 0) != vector_relu
    loss, _ = cl.cluster_alignment(out["vectors"][4].unsqueeze(0), out["vectors"][2].unsqueeze(0), 7, 10, seed=3)
    loss.backward()  # the gradient reaches layer 2 either way
    assert sum(p.grad.abs().sum() for p in model.net.backbone.stages[1].parameters() if p.grad is not None) > 0


@pytest.mark.parametrize("coding,reaches", [("soft", True), ("topk", False)])
def test_clfm_gradient_reaches_layer2_only_with_the_soft_coding(coding, reaches):
    model = _model(heads=False)
    out = model(torch.randn(4, 1, 48, 48))
    deep, shallow = (cl.coordinate_codes(out["maps"][j], coding) for j in (3, 1))
    loss, _ = cl.cluster_alignment(deep, shallow, 4, 5, seed=1)
    if not reaches:
        assert not loss.requires_grad
        return
    loss.backward()
    layer2 = model.net.backbone.stages[1]
    assert sum(p.grad.abs().sum() for p in layer2.parameters() if p.grad is not None) > 0


def test_clbs_gradient_reaches_layer2():
    model = _model(msr="none")
    out = model(torch.randn(16, 1, 48, 48))
    loss, _ = cl.cluster_alignment(out["vectors"][4].unsqueeze(0), out["vectors"][2].unsqueeze(0), 7, 10, seed=3)
    loss.backward()
    layer2 = model.net.backbone.stages[1]
    assert sum(p.grad.abs().sum() for p in layer2.parameters() if p.grad is not None) > 0


def test_msr_attention_weights_and_plain_sum():
    torch.manual_seed(0)
    maps = [torch.randn(3, c, s, s) for c, s in ((16, 24), (32, 12), (64, 6), (128, 3))]
    fusion = MultiScaleFusion([16, 32, 64, 128], dim=8, attention=True).eval()
    feats = fusion.layer_features(maps)
    assert feats.shape == (3, 4, 8)
    mu = torch.sigmoid(feats @ fusion.attention.weight[0] + fusion.attention.bias[0])
    assert torch.allclose(fusion.weights(feats), mu)
    assert torch.allclose(fusion(maps), (mu.unsqueeze(-1) * feats).sum(1), atol=1e-6)
    plain = MultiScaleFusion([16, 32, 64, 128], dim=8, attention=False).eval()
    assert torch.allclose(plain(maps), plain.layer_features(maps).sum(1), atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        MultiScaleFusion([16, 32, 60, 128])


def test_a_prediction_does_not_depend_on_its_batch_mates():
    net = _model().net.eval()
    x = torch.randn(5, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(net(x)[:2], net(x[:2]), atol=1e-5)


def test_msr_vectors_are_the_features_the_classifier_reads():
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", 1, 48, width=0.25, stem="s2")
    model = CrossLayerModel(CrossLayerNet(backbone, 8, "attention"), (2, 4), vectors="msr").eval()
    assert len(model.bs_heads) == 0  # no training-only heads to collapse
    x = torch.randn(6, 1, 48, 48)
    with torch.no_grad():
        out = model(x)
        feats = model.net.msr.layer_features(model.net.backbone.forward_features(x))
        assert torch.allclose(out["logits"], model.net(x), atol=1e-5)  # the exported path
    assert torch.allclose(out["vectors"][2], feats[:, 1], atol=1e-6) and torch.allclose(out["vectors"][4], feats[:, 3], atol=1e-6)
    model.train()
    out = model(torch.randn(16, 1, 48, 48))
    loss, _ = cl.cluster_alignment(out["vectors"][4].unsqueeze(0), out["vectors"][2].unsqueeze(0), 7, 10, seed=3)
    loss.backward()
    assert sum(p.grad.abs().sum() for p in model.net.backbone.stages[1].parameters() if p.grad is not None) > 0
    with pytest.raises(ValueError, match="needs MSR on"):
        CrossLayerModel(CrossLayerNet(backbone, 8, "none"), (2, 4), vectors="msr")


def test_real_steps_end_to_end_log_losses_and_gradient_ratio(data_root, tmp_path):
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import Trainer, load_config

    recipe = recipe_for_method("cross_layer")
    cfg = load_config(recipe.path("config"), [*recipe.smoke, f"out_dir={tmp_path}", "optim.max_steps=3",
                                              "optim.epochs=1", "eval_sets=[]"], method="cross_layer")
    trainer = Trainer(cfg)
    logs = trainer.train_epoch()
    for key in ("ce_loss", "clbs_loss", "clfm_loss", "grad_norm_layer2", "grad_norm_layer4", "grad_ratio_2_4",
                "msr_mu1", "msr_mu4", "clbs_vector_cos"):
        assert key in logs and math.isfinite(logs[key]), key
    assert -1 <= logs["clbs_vector_cos"] <= 1 + 1e-6
    assert logs["clbs_loss"] >= 0 and logs["clfm_loss"] >= 0
    assert logs["grad_ratio_2_4"] == pytest.approx(logs["grad_norm_layer2"] / logs["grad_norm_layer4"])


def test_config_errors_are_clear(tmp_path):
    from fer_edge.recipe import recipe_for_method
    from fer_edge.train import load_config

    path = recipe_for_method("cross_layer").path("config")
    for bad, match in (("cross_layer.shallow_layer=4", "shallow_layer"), ("cross_layer.msr=mean", "msr"),
                       ("cross_layer.coding=hash", "coding"), ("model.backbone=mobilenet_v2", "ResNet"),
                       ("cross_layer.clbs_k=1", "clbs_k"), ("cross_layer.temperature=0", "temperature"),
                       ("cross_layer.clbs_vectors=pool", "clbs_vectors")):
        with pytest.raises(ValueError, match=match):
            load_config(path, [bad], method="cross_layer")
    with pytest.raises(ValueError, match="needs cross_layer.msr=attention or sum"):
        load_config(path, ["cross_layer.clbs_vectors=msr", "cross_layer.msr=none"], method="cross_layer")
