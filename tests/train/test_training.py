import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fer_edge.models import BACKBONES, Classifier, build_backbone, load_weights
from fer_edge.train import Trainer, load_config
from fer_edge.train import checkpoint
from fer_edge.train.metrics import confusion_matrix, summarize

os.environ.setdefault("FER_EDGE_PROGRESS", "0")


def tiny(tmp_path, *overrides):
    """A few real FERPlus images, a few steps: smoke configs, never results."""
    return load_config(None, [f"out_dir={tmp_path / 'run'}", "threads=1", "data.limit=96", "data.batch_size=16",
                              "optim.epochs=2", "optim.max_steps=2", "model.width=0.25", "eval_sets=ckplus", *overrides])


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_builds_exposes_features_and_trains(name, data_root, tmp_path):
    size = 48
    kw = {"width": 0.25} if not name.startswith("vit") else {}
    backbone = build_backbone(name, 1, size, **kw)
    x = torch.randn(3, 1, size, size)
    feats = backbone.forward_features(x)
    emb = backbone(x)
    assert emb.shape == (3, backbone.out_dim)
    if name.startswith("vit"):
        assert len(feats) == 12 and feats[-1].shape == (3, 1 + (size // 16) ** 2, backbone.out_dim)
    else:
        assert len(feats) == 4 and all(f.shape[0] == 3 and f.dim() == 4 for f in feats)
        assert [f.shape[1] for f in feats] == backbone.stage_channels
        assert feats[0].shape[-1] > feats[-1].shape[-1]
    model = Classifier(backbone, 8)
    opt = torch.optim.SGD(model.parameters(), 0.01)
    from fer_edge.data import open_dataset

    ds = open_dataset("ferplus", "valid")
    imgs = torch.tensor(np.stack([ds[i]["image"] for i in range(8)]), dtype=torch.float32)[:, None] / 255
    labels = torch.tensor([ds[i]["label"] for i in range(8)])
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(imgs), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert all(p.grad is not None for p in model.head.parameters())


def test_stage_maps_at_112_px_match_the_methods():
    # methods.md §1: IR-50 and MobileNet-v2 give 56/28/14/7 px stage maps at 112 px
    x = torch.randn(1, 3, 112, 112)
    assert [f.shape[-1] for f in build_backbone("ir50", 3, 112, width=0.25).forward_features(x)] == [56, 28, 14, 7]
    assert [f.shape[-1] for f in build_backbone("mobilenet_v2", 3, 112).forward_features(x)] == [56, 28, 14, 7]


@pytest.mark.parametrize("mode", ["majority", "probability"])
def test_baseline_smoke_trains_selects_and_reports(mode, data_root, tmp_path):
    t = Trainer(tiny(tmp_path, f"data.label_mode={mode}"))
    summary = t.fit()
    assert summary["best_epoch"] in (1, 2)
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    res = t.report()
    assert res["selected_on"] == "valid" and "ckplus" in res["sets"]
    ck = res["sets"]["ckplus"]
    assert ck["count"] == 981 and 0 <= ck["accuracy_shared_classes"] <= 1 and "neutral" not in ck["shared_classes"]
    assert (tmp_path / "run" / "confusion_ckplus.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_after_interruption_equals_an_uninterrupted_run(data_root, tmp_path):
    straight = Trainer(tiny(tmp_path / "a", "optim.epochs=3"))
    straight.fit()
    interrupted = Trainer(tiny(tmp_path / "b", "optim.epochs=3"))
    interrupted.fit(stop_after=1)
    resumed = Trainer(tiny(tmp_path / "b", "optim.epochs=3"))
    resumed.fit()
    assert resumed.epoch == 3 and len(resumed.history) == 3
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]


def test_checkpoints_are_atomic_and_foreign_or_corrupt_files_are_rejected(tmp_path):
    path = checkpoint.save(tmp_path / "c.pt", {"model": {"w": torch.ones(2)}, "config": {}, "epoch": 1})
    assert checkpoint.load(path)["epoch"] == 1
    assert not list(tmp_path.glob(".*tmp*"))
    (tmp_path / "junk.pt").write_bytes(os.urandom(256))
    with pytest.raises(checkpoint.CheckpointError, match="not a loadable checkpoint"):
        checkpoint.load(tmp_path / "junk.pt")
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="not a loadable checkpoint"):
        checkpoint.load(tmp_path / "trunc.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "foreign.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a fer_edge checkpoint"):
        checkpoint.load(tmp_path / "foreign.pt")
    torch.save({"format": checkpoint.FORMAT, "obj": Classifier}, tmp_path / "code.pt")  # would unpickle a class
    with pytest.raises(checkpoint.CheckpointError, match="not a loadable checkpoint"):
        checkpoint.load(tmp_path / "code.pt")
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.pt")


def test_corrupt_last_checkpoint_stops_resume_with_a_clear_error(data_root, tmp_path):
    cfg = tiny(tmp_path)
    (tmp_path / "run").mkdir(parents=True)
    (tmp_path / "run" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match="last.pt"):
        Trainer(cfg).fit()


def test_config_yaml_overrides_and_errors(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("seed: 3\ndata:\n  image_size: 64\noptim:\n  lr: 1\n")
    cfg = load_config(y, ["optim.lr=0.5", "data.augment=strong", "amp=false", "eval_sets=ferplus:test,ckplus"])
    assert cfg.seed == 3 and cfg.data.image_size == 64 and cfg.optim.lr == 0.5 and cfg.amp is False
    assert cfg.eval_sets == ["ferplus:test", "ckplus"] and isinstance(cfg.optim.lr, float)
    with pytest.raises(ValueError, match="unknown config key 'optim.learning_rate'"):
        load_config(None, ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="expected key=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ValueError, match="never selected on a test split"):
        Trainer(load_config(None, ["select_on=test", "data.limit=8"]))


def test_metrics_on_a_hand_computed_case():
    cm = confusion_matrix([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 2], 4)
    s = summarize(cm, ["a", "b", "c", "d"])
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["mean_class_accuracy"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert s["per_class_accuracy"]["d"] is None


def test_local_pretrained_weights(tmp_path):
    src = build_backbone("resnet18", 1, 48, width=0.25)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = build_backbone("resnet18", 1, 48, width=0.25)
    n = len(dst.state_dict())
    assert load_weights(dst, tmp_path / "w.pt", strict=True) == {"missing": [], "unexpected": [], "loaded": n, "total": n}
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a readable weights file"):
        load_weights(dst, tmp_path / "bad.pt")


def test_ddp_two_cpu_processes_with_gloo(data_root, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "fer_edge.cli", "train", "baseline", "--no-report", f"out_dir={out}", "threads=1", "data.limit=64",
           "data.batch_size=8", "optim.epochs=1", "optim.max_steps=2", "model.width=0.25"]
    env = dict(os.environ, FER_EDGE_PROGRESS="0", OMP_NUM_THREADS="1", FER_EDGE_DATA=str(data_root))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = checkpoint.load(out / "last.pt")
    assert state["epoch"] == 1


def test_runs_with_the_same_seed_are_identical_and_seeds_differ(data_root, tmp_path):
    a, b, c = Trainer(tiny(tmp_path / "a")), Trainer(tiny(tmp_path / "b")), Trainer(tiny(tmp_path / "c", "seed=1"))
    for t in (a, b, c):
        t.fit(stop_after=1)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
