"""AGLRLS building blocks (issue 7): branches, crop mapping, GRL, CDAN-E, thresholds, GLPC."""
import math

import numpy as np
import pytest
import torch

from fer_edge.models.aglrls import AGLRLSNet, crop_windows, landmark_cells
from fer_edge.decisions import confidence_thresholds, glpc
from fer_edge.train.adversarial import CDANDiscriminator, cdan_e_loss, grad_reverse, grl_coeff
from fer_edge.train.pseudo_labels import DynamicThresholds, pseudo_label_loss

LM = torch.tensor([[[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]]])


@pytest.mark.parametrize("backbone,width,shared_heads", [("ir50", 0.125, False), ("mobilenet_v2", 0.5, True)])
def test_shapes_and_gradients_of_every_branch(backbone, width, shared_heads):
    # 56 px keeps the test fast: a 14x14 stage-2 map, same crop rule (clamped to [3, 10])
    torch.manual_seed(0)
    net = AGLRLSNet(7, backbone, 56, width=width, shared_heads=shared_heads, taps="backbone")
    x = torch.randn(2, 3, 56, 56)
    lm = LM.expand(2, -1, -1) / 2
    out = net(x, lm)
    assert [f.shape for f in out["features"]] == [(2, 64)] * 6 + [(2, 384)]
    assert net.backbone.forward_features(x)[1].shape[-1] >= 7  # a 7x7 window fits
    assert all(l.shape == (2, 7) for l in out["logits"]) and len(out["logits"]) == 7
    assert net.all_logits(x, lm).shape == (2, 7, 7)
    assert len(net.heads) == (3 if shared_heads else 7)
    assert len(net.crop_nets) == (1 if backbone == "mobilenet_v2" else 5)
    for k in range(7):  # each classifier's loss reaches the backbone and its own branch
        net.zero_grad()
        out = net(x, lm)
        out["logits"][k].sum().backward()
        assert net.backbone.stem[0].weight.grad.abs().sum() > 0
        if 1 <= k <= 5 and len(net.crop_nets) == 5:
            assert net.crop_nets[k - 1].out[0].weight.grad.abs().sum() > 0
            others = [net.crop_nets[j].out[0].weight.grad for j in range(5) if j != k - 1]
            assert all(g is None or g.abs().sum() == 0 for g in others)


def test_paper_taps_give_the_branches_methods_md_maps_at_any_width():
    """taps="paper" (the default): stage-2 map 128 ch and last map 512 ch at 28 / 7 px whatever the
    backbone width, and crop nets 128 -> 256 -> 512; "backbone" keeps MobileNet-v2's own narrow maps."""
    torch.manual_seed(0)
    x, lm = torch.randn(2, 3, 112, 112), LM.expand(2, -1, -1)
    paper = AGLRLSNet(7, "mobilenet_v2", 112, width=0.5)
    maps = paper.backbone.forward_features(x)
    assert paper.tap2(maps[1]).shape == (2, 128, 28, 28) and paper.tap_last(maps[-1]).shape == (2, 512, 7, 7)
    crop = paper.crop_nets[0].blocks
    assert (crop[0].conv1.in_channels, crop[0].conv1.out_channels, crop[2].conv1.out_channels) == (128, 256, 512)
    assert paper.global_branch[0].in_channels == 512
    assert paper.all_logits(x, lm).shape == (2, 7, 7)
    narrow = AGLRLSNet(7, "mobilenet_v2", 112, width=0.5, taps="backbone")
    assert narrow.crop_nets[0].blocks[0].conv1.in_channels == narrow.backbone.stage_channels[1] == 16
    assert isinstance(narrow.tap2, torch.nn.Identity)
    with pytest.raises(ValueError, match="taps"):
        AGLRLSNet(7, "mobilenet_v2", 112, taps="wide")


def test_cdan_e_entropy_weight_carries_the_reversed_gradient_only_when_asked():
    torch.manual_seed(0)
    disc = CDANDiscriminator(8, 3).eval()
    f = torch.randn(6, 8)
    for entropy_grad in (True, False):
        z = torch.randn(6, 3, generator=torch.Generator().manual_seed(1)).requires_grad_()
        loss = cdan_e_loss(disc, f, torch.softmax(z, 1), n_source=3, coeff=0.5, entropy_grad=entropy_grad)
        loss.backward()
        if not entropy_grad:
            assert z.grad is None or z.grad.abs().sum() == 0
            continue
        # the gradient reaching the logits is -coeff times that of the same loss without reversal
        z2 = z.detach().clone().requires_grad_()
        from fer_edge.train import adversarial

        p = torch.softmax(z2, 1)
        logits = disc(f, p.detach())
        w = 1 + torch.exp(-adversarial.entropy(p))
        wd = w.detach()
        weight = torch.cat([w[:3] / wd[:3].sum(), w[3:] / wd[3:].sum()])
        tgt = torch.tensor([1.0, 1, 1, 0, 0, 0])
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, tgt, reduction="none")
        ((weight * bce).sum() / (torch.cat([wd[:3] / wd[:3].sum(), wd[3:] / wd[3:].sum()])).sum()).backward()
        assert z.grad.abs().sum() > 0 and torch.allclose(z.grad, -0.5 * z2.grad, atol=1e-6)


def test_stage2_is_the_authors_28px_map_at_112():
    net = AGLRLSNet(7, "mobilenet_v2", 112, width=0.35)
    assert net.backbone.forward_features(torch.zeros(1, 3, 112, 112))[1].shape[-1] == 28


def test_landmark_to_crop_mapping_and_borders():
    # the authors' rule at 112 px onto a 28x28 map: int(x * 28 / 112), clamped to [3, 24]
    lm = torch.tensor([[[0.0, 0.0], [111.9, 111.9], [56.0, 20.0], [13.0, 100.0], [15.99, 16.0]]])
    cells = landmark_cells(lm, 112, 28)
    assert cells[0].tolist() == [[3, 3], [24, 24], [14, 5], [3, 24], [3, 4]]
    fmap = torch.arange(2 * 28 * 28, dtype=torch.float32).view(1, 2, 28, 28)
    win = crop_windows(fmap, cells)
    assert win.shape == (1, 5, 2, 7, 7)
    for p, (cx, cy) in enumerate(cells[0].tolist()):
        assert torch.equal(win[0, p], fmap[0, :, cy - 3:cy + 4, cx - 3:cx + 4])


def test_grl_sign_and_schedule():
    x = torch.randn(4, 3, requires_grad=True)
    grad_reverse(x, 0.3).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.3))
    assert grl_coeff(0) == 0.0
    assert grl_coeff(10000) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    values = [grl_coeff(i) for i in range(0, 20001, 1000)]
    assert all(a < b for a, b in zip(values, values[1:])) and values[-1] < 1.0


def test_cdan_e_reverses_feature_gradients_and_weights_domains():
    torch.manual_seed(0)
    disc = CDANDiscriminator(8, 3)
    disc.eval()  # no dropout: compare gradients deterministically
    f = torch.randn(6, 8, requires_grad=True)
    p = torch.softmax(torch.randn(6, 3), 1)
    loss = cdan_e_loss(disc, f, p, n_source=3, coeff=1.0, entropy_grad=False)
    assert torch.isfinite(loss)
    loss.backward()
    g_rev = f.grad.clone()
    # without reversal the gradient w.r.t. the features has the opposite sign
    f2 = f.detach().clone().requires_grad_()
    from fer_edge.train import adversarial

    logits = disc(f2, p)
    tgt = torch.tensor([1.0, 1, 1, 0, 0, 0])
    w = 1 + torch.exp(-adversarial.entropy(p))
    weight = torch.cat([w[:3] / w[:3].sum(), w[3:] / w[3:].sum()])
    plain = (weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, tgt, reduction="none")).sum() / weight.sum()
    plain.backward()
    assert torch.allclose(g_rev, -f2.grad, atol=1e-6)
    assert loss.item() == pytest.approx(plain.item(), rel=1e-6)


def test_threshold_update_rule_on_a_hand_computed_case():
    t = DynamicThresholds(num_classifiers=1, num_classes=3, tau=0.95)
    probs = torch.tensor([[0.97, 0.02, 0.01], [0.96, 0.02, 0.02], [0.01, 0.98, 0.01], [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]])
    t.update([probs])
    # sigma = [2, 1, 0], unselected = 2 -> beta = sigma / max(2, 2) = [1, 0.5, 0]
    assert t.sigma[0].tolist() == [2, 1, 0] and t.unselected.tolist() == [2]
    assert t.beta[0].tolist() == [1.0, 0.5, 0.0]
    np.testing.assert_allclose(t.thresholds()[0].numpy(), [0.95, 0.95 * 0.75 ** 2, 0.95 * 0.25], rtol=1e-12)
    weak = torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.3, 0.6], [0.2, 0.55, 0.25]])
    loss, mask = pseudo_label_loss(weak, torch.zeros(3, 3), t.thresholds()[0])
    # class 0 needs 0.95 (0.6 fails); class 2 needs 0.2375 (0.6 passes); class 1 needs 0.534 (0.55 passes)
    assert mask.tolist() == [0.0, 1.0, 1.0]
    assert loss.item() == pytest.approx(2 * math.log(3) / 3)
    t.reset()
    assert t.sigma.sum() == 0 and t.unselected.sum() == 0


def test_glpc_on_hand_computed_cases():
    beta = np.full((7, 3), 0.5)  # thresholds 0.95 * 0.75^2 = 0.534 for every class
    assert confidence_thresholds(beta)[0, 0] == pytest.approx(0.534375)
    probs = np.tile(np.array([0.4, 0.35, 0.25]), (7, 3, 1))
    probs[6, 0] = [0.1, 0.8, 0.1]          # sample 0: concat confident -> 1
    probs[0, 1] = [0.05, 0.05, 0.9]        # sample 1: concat not confident, global is -> 2
    probs[6, 1] = [0.5, 0.3, 0.2]
    # sample 2: nobody confident; zero p < beta (all 0.4/0.35/0.25 < 0.5) except where raised
    probs[3, 2] = [0.1, 0.1, 0.8]          # one local head: p2 = 0.8 >= 0.5 kept
    probs[4, 2] = [0.45, 0.5, 0.05]        # another: p1 = 0.5 kept
    assert glpc(probs, beta).tolist() == [1, 2, 2]
    with pytest.raises(ValueError, match=r"expected \[7, N, C\]"):
        glpc(np.zeros((6, 1, 3)), beta)


# -- small targets (issue 20) ---------------------------------------------------------------------
def test_distribution_alignment_hand_computed():
    from fer_edge.train.pseudo_labels import align_distribution

    probs = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    # the model now predicts class 0 for 80% of the target where the stage-1 model saw 50%
    out = align_distribution(probs, torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([0.8, 0.2], dtype=torch.float64))
    # row 0: [0.6 * 0.625, 0.4 * 2.5] = [0.375, 1.0] -> [0.2727, 0.7273]; row 1: [0.3125, 1.25] -> [0.2, 0.8]
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([[0.375 / 1.375, 1.0 / 1.375], [0.2, 0.8]]), atol=1e-6)
    same = align_distribution(probs, torch.tensor([0.3, 0.7]), torch.tensor([0.3, 0.7]))
    assert torch.allclose(same, probs)  # no drift: unchanged


def test_adaptation_signals_and_warnings_on_a_synthetic_collapse():
    from fer_edge.train import adaptation_health as health

    classes = ["neutral", "happiness", "surprise"]
    prior = np.array([0.5, 0.3, 0.2])
    # 10 faces, 2 heads: before, predictions spread 4/3/3 and both heads agree
    before = np.zeros((10, 2, 3))
    before[np.arange(10), :, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]] = 1.0
    before = 0.1 + 0.7 * before  # rows sum to 1: 0.8 on the predicted class
    ref = health.signals(before, prior)
    assert ref["pred_share"] == pytest.approx([0.4, 0.3, 0.3]) and ref["head_agreement"] == 1.0
    assert ref["prior_tv"] == pytest.approx(0.5 * (0.1 + 0.0 + 0.1)) and ref["drift_tv"] == ref["flip_rate"] == 0.0
    assert ref["entropy"] == pytest.approx(-(0.8 * np.log(0.8) + 2 * 0.1 * np.log(0.1)) / np.log(3))
    ok = health.assess(ref, health.signals(before, prior, reference=ref), classes, (0.80, 0.79))
    assert ok["warnings"] == [] and ok["lines"][-1].strip() == "no warning signs"
    # after: head 0 calls faces 0-8 "happiness" (0.9), head 1 still says what it said (0.8), so the
    # mean of the heads is happiness for faces 0-8: 6 faces changed class (0-3, 7-8)
    after = before.copy()
    after[:9, 0] = [0.05, 0.9, 0.05]
    fin = health.signals(after, prior, thresholds=np.full((2, 3), 0.75), reference=ref)
    assert fin["pred_share"] == pytest.approx([0.0, 0.9, 0.1])
    assert fin["flip_rate"] == pytest.approx(0.6) and fin["drift_tv"] == pytest.approx(0.5 * (0.4 + 0.6 + 0.2))
    # heads agreeing with the combined label: half of them on faces 0-3 and 7-8, both elsewhere
    assert fin["pseudo_rate"] == 1.0 and fin["head_agreement"] == pytest.approx(0.7)
    bad = health.assess(ref, fin, classes, (0.80, 0.68), (0.6, 0.4))
    text = " | ".join(bad["warnings"])
    assert "'happiness' swallowed the target: 90%" in text and "moved by 60%" in text
    assert "agree less" in text and "fell from 80.0% to 68.0%" in text and "check set got worse" in text
    assert "signals" in bad and "pred" not in bad["signals"]["after"]
    # a small source-validation drop is reported, not warned about: it says little about the target
    mild = health.assess(ref, health.signals(before, prior, reference=ref), classes, (0.80, 0.75))
    assert mild["warnings"] == [] and any("80.0% -> 75.0%" in line for line in mild["lines"])
    # a small target is told that the signals cannot vouch for it, and pointed to a check set
    small = health.assess(ref, health.signals(before, prior, reference=ref), classes, target_faces=80)
    assert small["warnings"] == [] and any("the target has 80 faces" in line and "aglrls.check_set" in line
                                           for line in small["lines"])
    checked = health.assess(ref, health.signals(before, prior, reference=ref), classes, check=(0.5, 0.6), target_faces=80)
    assert not any("aglrls.check_set" in line for line in checked["lines"])
    big = health.assess(ref, health.signals(before, prior, reference=ref), classes, target_faces=5000)
    assert not any("the target has" in line for line in big["lines"])


def test_classes_swapping_without_drift_still_warn():
    from fer_edge.train import adaptation_health as health

    classes = ["neutral", "happiness", "surprise"]
    prior = np.array([0.4, 0.4, 0.2])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    before = np.full((10, 1, 3), 0.1)
    before[np.arange(10), 0, labels] = 0.8
    ref = health.signals(before, prior)
    # faces 0-1 go neutral -> happiness and faces 4-5 happiness -> neutral: the shares stay 40/40/20
    swapped = labels.copy()
    swapped[[0, 1]], swapped[[4, 5]] = 1, 0
    after = np.full((10, 1, 3), 0.1)
    after[np.arange(10), 0, swapped] = 0.8
    fin = health.signals(after, prior, reference=ref)
    assert fin["drift_tv"] == 0.0 and fin["flip_rate"] == pytest.approx(0.4)
    out = health.assess(ref, fin, classes)
    assert len(out["warnings"]) == 1 and "40% of its faces changed class" in out["warnings"][0]
    # below the flip threshold (2 of 10 < 25%): no warning
    swapped = labels.copy()
    swapped[0], swapped[4] = 1, 0
    after = np.full((10, 1, 3), 0.1)
    after[np.arange(10), 0, swapped] = 0.8
    assert health.assess(ref, health.signals(after, prior, reference=ref), classes)["warnings"] == []


def test_threshold_floor_lifts_the_dynamic_thresholds_it_is_below(tmp_path):
    from fer_edge.train import load_config
    from fer_edge.train.methods.base import Stage, TrainContext, get_method
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "aglrls_ferplus_ckplus.yaml",
                      [f"out_dir={tmp_path}", "aglrls.threshold_floor=0.8"])
    m = get_method("aglrls", cfg)
    m.beta = np.zeros((7, 7))
    m.beta[0, 0] = 1.0  # tau * ((beta + 1) / 2) ** 2: 0.2375 at beta 0, 0.95 at beta 1
    m.on_epoch_start(TrainContext(stage=Stage("transfer", 1, 0.1), device=torch.device("cpu")))
    assert m._thr[0, 0].item() == pytest.approx(0.95) and m._thr[0, 1].item() == pytest.approx(0.8)
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "aglrls_ferplus_ckplus.yaml",
                      [f"out_dir={tmp_path}", "aglrls.threshold_floor=0"])
    paper = get_method("aglrls", cfg)
    paper.beta = m.beta
    paper.on_epoch_start(TrainContext(stage=Stage("transfer", 1, 0.1), device=torch.device("cpu")))
    assert paper._thr[0, 1].item() == pytest.approx(0.2375)
    with pytest.raises(ValueError, match="threshold_floor"):
        load_config(Path(__file__).resolve().parents[2] / "configs" / "aglrls_ferplus_ckplus.yaml",
                    [f"out_dir={tmp_path}", "aglrls.threshold_floor=1.5"])


def test_safety_auto_applies_floor_and_alignment_only_to_small_targets(tmp_path):
    from fer_edge.train import load_config
    from fer_edge.train.methods.base import Stage, TrainContext, get_method
    from pathlib import Path

    def method(faces, *extra):
        cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "aglrls_ferplus_ckplus.yaml",
                          [f"out_dir={tmp_path}", "aglrls.threshold_floor=0.8", *extra])
        m = get_method("aglrls", cfg)
        m.beta, m.target_faces = np.zeros((7, 7)), faces
        m.on_epoch_start(TrainContext(stage=Stage("transfer", 1, 0.1), device=torch.device("cpu")))
        return m

    # beta 0: the dynamic threshold is 0.95 / 4 = 0.2375; the 0.8 floor lifts it on a small target only
    small, large = method(299), method(300)
    assert small.safety_on() and small._thr[3, 2].item() == pytest.approx(0.8)
    assert not large.safety_on() and large._thr[3, 2].item() == pytest.approx(0.2375)
    assert method(None).safety_on()  # before the pool is measured: the cautious side
    assert method(5000, "aglrls.safety=on")._thr[0, 0].item() == pytest.approx(0.8)
    off = method(10, "aglrls.safety=off")
    assert not off.safety_on() and off._thr[0, 0].item() == pytest.approx(0.2375)
    assert method(1000, "aglrls.small_target_faces=2000").safety_on()
    with pytest.raises(ValueError, match="aglrls.safety"):
        method(10, "aglrls.safety=maybe")


def test_signals_follow_the_models_own_decision_rule():
    from fer_edge import decisions
    from fer_edge.train import adaptation_health as health

    # 7 classifiers, 2 classes, 2 faces: the concat head is sure of class 1 on face 0, the other six
    # lean to class 0, so GLPC answers 1 where the heads' mean answers 0
    probs = np.full((2, 7, 2), 0.5)
    probs[0, :6] = [0.6, 0.4]
    probs[0, 6] = [0.1, 0.9]
    probs[1, :] = [0.8, 0.2]
    prior = np.array([0.5, 0.5])
    by_mean = health.signals(probs, prior)
    assert by_mean["pred"] == [0, 0] and by_mean["pred_share"] == [1.0, 0.0]
    glpc = decisions.glpc(probs.transpose(1, 0, 2), np.full((7, 2), 0.5))
    assert glpc.tolist() == [1, 0]
    by_rule = health.signals(probs, prior, pred=glpc)
    assert by_rule["pred_share"] == [0.5, 0.5] and by_rule["prior_tv"] == 0.0
    # agreement is with the rule's label: on face 0 only the concat head says 1
    assert by_rule["head_agreement"] == pytest.approx((1 / 7 + 1) / 2)
    with pytest.raises(ValueError, match="one label per target face"):
        health.signals(probs, prior, pred=np.array([0, 1, 0]))
