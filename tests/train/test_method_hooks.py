"""The trainer's shared hooks, driven by a small method written here: stages with Adam/AdamW and
the exponential/constant schedules, a labelled + unlabelled stage, an EMA teacher that evaluation
and export use, per-sample state by dataset index, and resume through all of them."""
import math
import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_edge.models import Classifier, build_backbone
from fer_edge.train import Trainer, checkpoint, load_config
from fer_edge.train.ema import EMA
from fer_edge.train.methods import Method, Stage, base, register_method
from fer_edge.train.trainer import lr_factor

os.environ.setdefault("FER_EDGE_PROGRESS", "0")


@dataclass
class ProbeConfig:
    consistency: float = 1.0
    poison: bool = False  # the consistency term becomes NaN (a diverging loss)


class Probe(Method):
    name = "probe_hooks"
    description = "test method exercising every trainer hook"
    Config = ProbeConfig
    ema_decay = 0.5
    evaluate_with_ema = True

    def build_model(self, num_classes, in_channels):
        return Classifier(build_backbone("resnet18", in_channels, self.cfg.data.image_size, width=0.125), num_classes)

    def stages(self):
        return [Stage("warm", 1, 0.02, optimizer="adam", schedule="exponential", gamma=0.5, evaluate=False, weight_decay=0),
                Stage("semi", 2, 0.01, data=("labelled", "unlabelled"), optimizer="adamw", schedule="exponential",
                      gamma=0.5, batch={"unlabelled": 8})]

    def setup(self, ctx):
        self.samples["seen"] = torch.zeros(ctx.num_faces("labelled"))

    def train_step(self, ctx, batch):
        self.samples["seen"][batch["index"].cpu()] += 1
        terms = {"ce": F.cross_entropy(ctx.model(batch["image"]), batch["label"])}
        if ctx.stage.name == "semi":
            assert "unlabelled_label" not in batch and ctx.teacher is not None
            with torch.no_grad():
                target = torch.softmax(ctx.teacher(batch["unlabelled_weak"]), 1)
            student = torch.log_softmax(ctx.model(batch["unlabelled_strong"]), 1)
            terms["consistency"] = self.config.consistency * F.kl_div(student, target, reduction="batchmean")
            if self.config.poison:
                terms["consistency"] = terms["consistency"] * float("nan")
            ctx.log(teacher_confidence=target.max(1).values.mean().item())
        return terms


@pytest.fixture
def probe():
    register_method(Probe)
    yield Probe
    base._METHODS.pop(Probe.name, None)


def config(out, *extra):
    return load_config(None, [f"out_dir={out}", "data.limit=48", "data.batch_size=8", "optim.max_steps=2", "threads=1",
                              "eval_sets=ckplus", *extra], method="probe_hooks")


def test_ema_follows_its_decay_on_a_hand_computed_case():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, 0.75, warmup=False)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)  # 0.75 * 1 + 0.25 * 3
    assert ema.module.weight.item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, 1.0)


def test_ema_warms_up_its_decay_so_the_initialisation_does_not_linger():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, 0.75)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)  # d_0 = min(0.75, 1/10): 0.1 * 1 + 0.9 * 3
    assert ema.module.weight.item() == pytest.approx(2.8)
    with torch.no_grad():
        model.weight.fill_(5.0)
    ema.update(model)  # d_1 = 2/11
    assert ema.module.weight.item() == pytest.approx(2 / 11 * 2.8 + 9 / 11 * 5.0)
    ema.updates = 100  # (1 + 100) / 110 > 0.75: the configured decay from here on
    assert ema.current_decay == 0.75


def test_schedules_on_hand_computed_cases():
    s = Stage("s", 4, 0.1, schedule="exponential", gamma=0.5)
    assert lr_factor(s, 0, 2, 40, 10) == pytest.approx(0.025)
    s = Stage("s", 4, 0.1, schedule="dann")
    assert lr_factor(s, 20, 2, 40, 10) == pytest.approx(0.1 / 6 ** 0.75)
    s = Stage("s", 4, 0.1, schedule="cosine", warmup_epochs=1)
    assert lr_factor(s, 4, 0, 40, 10) == pytest.approx(0.05)  # warm-up step 5 of 10
    assert lr_factor(s, 25, 2, 40, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.5)))
    with pytest.raises(ValueError, match="schedule"):
        Stage("s", 1, 0.1, schedule="step")
    with pytest.raises(ValueError, match="roles"):
        Stage("s", 1, 0.1, data=("labelled", "validation"))


def test_stages_optimisers_ema_and_per_sample_state(probe, data_root, tmp_path):
    t = Trainer(config(tmp_path))
    t.fit()
    h = t.history
    assert [x["stage"] for x in h] == ["warm", "semi", "semi"]
    assert "val_acc" not in h[0] and "val_acc" in h[1]  # the warm stage is not evaluated
    assert [x["lr"] for x in h] == pytest.approx([0.02, 0.01, 0.005])  # exponential per stage epoch
    assert isinstance(t.opt, torch.optim.AdamW) and t.opt_stage == "semi"
    assert h[1]["consistency_loss"] >= 0 and 0 < h[1]["teacher_confidence"] <= 1
    seen = t.method.samples["seen"]
    assert seen.sum() == 3 * 2 * 8 and seen.max() >= 1  # 3 epochs x 2 steps x 8 faces, counted by index
    state = checkpoint.load(tmp_path / "last.pt")
    assert torch.equal(state["method_state"]["samples"]["seen"], seen)
    # evaluation and export use the EMA teacher's weights
    assert t.eval_model() is t.ema.module
    from fer_edge.export.api import load_for_export

    model, *_ = load_for_export(t.report_checkpoint)
    ema = checkpoint.load(t.report_checkpoint)["ema"]
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())


def test_resume_restores_optimiser_ema_and_per_sample_state(probe, data_root, tmp_path):
    straight = Trainer(config(tmp_path / "a"))
    straight.fit()
    for k in (1, 2, 3):
        Trainer(config(tmp_path / "b")).fit(stop_after=k)
    a, b = checkpoint.load(tmp_path / "a" / "last.pt"), checkpoint.load(tmp_path / "b" / "last.pt")
    for key in ("model", "ema"):
        assert all(torch.equal(v, b[key][k]) for k, v in a[key].items()), key
    assert a["ema_updates"] == b["ema_updates"] > 0  # the teacher's decay schedule continues on resume
    assert torch.equal(a["method_state"]["samples"]["seen"], b["method_state"]["samples"]["seen"])


def test_non_finite_loss_stops_with_the_epoch_step_and_term(probe, data_root, tmp_path):
    with pytest.raises(FloatingPointError, match=r"epoch 2 step 0 \(stage semi.*consistency"):
        Trainer(config(tmp_path, "probe_hooks.poison=true")).fit()
    with pytest.raises(ValueError, match="finite"):
        config(tmp_path, "probe_hooks.consistency=inf")


def test_unlabelled_faces_are_never_labels(probe, data_root, tmp_path):
    with pytest.raises(ValueError, match="no labels to train, select or evaluate on"):
        Trainer(config(tmp_path, "data.dataset=unlabelled:/nowhere"))
