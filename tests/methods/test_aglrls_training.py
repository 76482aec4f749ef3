"""AGLRLS end to end on real data (issue 7): a few real training steps FERPlus -> CK+48 through
both stages, resume equivalence, the ablation switches, and the export round trip with GLPC."""
import glob
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_edge.train import Trainer, checkpoint, load_config

TINY = ["data.limit=40", "data.image_size=56", "data.batch_size=8", "model.width=0.25", "optim.max_steps=2",
        "aglrls.source_batch=4", "aglrls.target_batch=4", "optim.epochs=2", "aglrls.source_epochs=1", "resume=true",
        "eval_sets=ckplus", "aglrls.decision=glpc"]  # the tiny 40-face target would ship the heads' mean under `auto`


def tiny_config(out, landmarks_dir, *extra):
    return load_config(Path(__file__).resolve().parents[2] / "configs" / "aglrls_ferplus_ckplus.yaml",
                       TINY + [f"out_dir={out}", f"data.landmarks_dir={landmarks_dir}", *extra])


@pytest.fixture(scope="module")
def landmarks_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("landmarks")


@pytest.fixture(scope="module")
def aglrls_run(tmp_path_factory, landmarks_dir, data_root, monkeypatch_module):
    out = tmp_path_factory.mktemp("aglrls_run")
    trainer = Trainer(tiny_config(out, landmarks_dir))
    trainer.fit()
    trainer.report()
    return out, trainer


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    mp.setenv("FER_EDGE_PROGRESS", "0")
    yield mp
    mp.undo()


def test_two_stages_train_measure_and_report(aglrls_run, landmarks_dir):
    out, trainer = aglrls_run
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["stage"] for h in history] == ["source", "transfer", "transfer"]
    for h in history[1:]:  # stage 2 trains with every loss term and measures the learning status
        assert h["cdan_loss"] > 0 and h["ce_loss"] > 0 and 0 <= h["pseudo_label_rate"] <= 1
        assert 0 <= h["beta_mean"] <= 1
    assert all(np.isfinite(h["train_loss"]) for h in history)
    state = checkpoint.load(out / "last.pt")
    beta = np.array(state["method_state"]["beta"])
    assert beta.shape == (7, 7) and ((beta >= 0) & (beta <= 1)).all()
    final = json.loads((out / "final.json").read_text())
    assert final["selected_on"].startswith("last epoch")  # no selection: target labels never choose
    ck = final["sets"]["ckplus"]
    assert set(ck["rules"]) == {"glpc", "average_7", "global", "concat"}
    assert ck["accuracy"] == pytest.approx(ck["rules"]["glpc"])
    assert (out / "confusion_ckplus.png").is_file()
    # landmark caches were filled by detection, once, for exactly the faces used
    cache = np.load(landmarks_dir / "ferplus_train.npz")
    assert len(cache["names"]) == 40 and cache["detected"].mean() > 0.8


def test_auto_decision_ships_glpc_only_on_a_target_of_small_target_faces(tmp_path, landmarks_dir):
    from fer_edge.train.methods.aglrls import AGLRLS

    def method(*extra):
        m = AGLRLS(tiny_config(tmp_path, landmarks_dir, *extra))
        m.beta, m.target_faces = np.full((7, 7), 0.3), 299
        return m

    assert method("aglrls.decision=auto").decision().rule == "mean_softmax"  # 299 < 300 faces
    big = method("aglrls.decision=auto")
    big.target_faces = 300
    assert big.decision().rule == "glpc" and big.decision().params["beta"] == np.full((7, 7), 0.3).tolist()
    assert method("aglrls.decision=glpc").decision().rule == "glpc"
    assert method("aglrls.decision=mean", "aglrls.small_target_faces=0").decision().rule == "mean_softmax"
    unmeasured = method("aglrls.decision=glpc")
    unmeasured.beta = None  # before stage 2 has measured a learning status: the heads' mean
    assert unmeasured.decision().rule == "mean_softmax"
    # GLPC stays among the reported rules whatever ships
    assert "glpc" in method("aglrls.decision=mean").decision_rules()
    # the pool size survives a checkpoint round trip, so a resumed run ships the same rule
    m = method("aglrls.decision=auto")
    m2 = method("aglrls.decision=auto")
    m2.target_faces = None
    m2.load_state_dict(m.state_dict())
    assert m2.target_faces == 299 and m2.decision().rule == "mean_softmax"
    with pytest.raises(ValueError, match="aglrls.decision"):
        tiny_config(tmp_path, landmarks_dir, "aglrls.decision=vote")  # checked when the config loads


def test_the_target_pool_keeps_contempt_unlabelled_and_eval_drops_it(aglrls_run):
    _, trainer = aglrls_run
    target = trainer.data.role("target")
    assert target.num_classes == 8 and trainer.classes[-1] == "fear" and len(trainer.classes) == 7
    item = target.with_view("weak+strong")[0]
    x_w, lm_w, x_s, lm_s = item["weak"], item["weak_landmarks"], item["strong"], item["strong_landmarks"]
    assert x_w.shape == x_s.shape == (3, 56, 56) and lm_w.shape == lm_s.shape == (5, 2)
    assert not torch.equal(x_w, x_s)  # weak and strong views differ


def test_resume_after_an_interruption_matches_an_uninterrupted_run(aglrls_run, tmp_path, landmarks_dir):
    out_full, _ = aglrls_run
    cut = Trainer(tiny_config(tmp_path, landmarks_dir))
    cut.fit(stop_after=2)  # interrupted inside stage 2
    resumed = Trainer(tiny_config(tmp_path, landmarks_dir))
    resumed.fit()
    a, b = checkpoint.load(out_full / "last.pt"), checkpoint.load(tmp_path / "last.pt")
    assert a["method_state"]["beta"] == b["method_state"]["beta"]
    for k, v in a["model"].items():
        assert torch.allclose(v.float(), b["model"][k].float(), atol=1e-6), k


def test_source_only_variant_never_feeds_the_target_and_init_from_starts_stage_two(aglrls_run, tmp_path, landmarks_dir):
    out_full, _ = aglrls_run
    t = Trainer(tiny_config(tmp_path, landmarks_dir, f"aglrls.init_from={out_full}/last.pt", "optim.epochs=1",
                            "aglrls.align=none", "aglrls.pseudo_labels=false"))
    start = checkpoint.load(out_full / "last.pt")["model"]
    assert all(torch.equal(v, start[k]) for k, v in t.model.state_dict().items())
    t.fit()
    h = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert h["stage"] == "transfer" and h["ce_loss"] > 0  # the only loss term: no target face reached the model
    assert "cdan_loss" not in h and "pseudo_loss" not in h and "pseudo_label_rate" not in h


def test_bad_settings_are_clear_errors(tmp_path, landmarks_dir):
    with pytest.raises(ValueError, match="aglrls.align"):
        Trainer(tiny_config(tmp_path, landmarks_dir, "aglrls.align=everything"))
    with pytest.raises(ValueError, match="backbone"):
        Trainer(tiny_config(tmp_path, landmarks_dir, "model.backbone=resnet18"))
    with pytest.raises(ValueError, match="set data.target"):
        Trainer(tiny_config(tmp_path, landmarks_dir, "data.target="))
    with pytest.raises(ValueError, match="aglrls.taps"):
        Trainer(tiny_config(tmp_path, landmarks_dir, "aglrls.taps=wide"))


def test_adapts_to_a_folder_of_unlabelled_faces(tmp_path, landmarks_dir, data_root, monkeypatch_module):
    cam = tmp_path / "camera_faces" / "day1"  # a camera's face crops: no class folders, no labels
    cam.mkdir(parents=True)
    for f in sorted((data_root / "ckplus48" / "CK+48").glob("*/*.png"))[::70]:
        shutil.copy(f, cam / f.name)
    target = f"data.target=unlabelled:{cam.parent}"
    trainer = Trainer(tiny_config(tmp_path / "run", landmarks_dir, target, "optim.epochs=1"))
    assert len(trainer.data.role("target")) == 15 and (trainer.data.role("target").labels == -1).all()
    trainer.fit()
    h = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert h["stage"] == "transfer" and h["cdan_loss"] > 0 and 0 <= h["pseudo_label_rate"] <= 1 and 0 <= h["beta_mean"] <= 1
    with pytest.raises(ValueError, match="no labels to train, select or evaluate on"):
        Trainer(tiny_config(tmp_path / "bad", landmarks_dir, target, f"eval_sets=ckplus,unlabelled:{cam}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        Trainer(tiny_config(tmp_path / "bad", landmarks_dir, f"data.target=unlabelled:{tmp_path / 'empty'}"))


@pytest.fixture(scope="module")
def aglrls_exports(aglrls_run, tmp_path_factory):
    from fer_edge.export import export

    out, _ = aglrls_run
    dst = tmp_path_factory.mktemp("aglrls_exports")
    report = export(out / "last.pt", ["onnx:fp32", "openvino:fp32", "openvino:int8"], dst, name="aglrls",
                    val_limit=40, calibration_size=16, verbose=False)
    return dst, report


def test_export_carries_all_heads_landmark_input_and_glpc_status(aglrls_run, aglrls_exports):
    from fer_edge.runtime.backends import open_backend

    out, _ = aglrls_run
    dst, report = aglrls_exports
    fp32 = [r for r in report["artifacts"] if r["precision"] == "fp32"]
    assert all(r["agreement_with_torch"] == 1.0 and r["max_abs_diff"] < 1e-3 for r in fp32)
    beta = checkpoint.load(out / "last.pt")["method_state"]["beta"]
    with open_backend(dst / "aglrls.fp32.xml") as b:
        assert b.extra_inputs == ["landmarks"] and b.meta["decision"] == {"rule": "glpc", "params": {"beta": beta, "tau": 0.95}}
        assert b.heads == 7 and b.meta["heads"][6] == "concat"
        x = np.full((2, 3, 56, 56), 128, np.float32)
        lm = np.tile(np.array([[19, 26], [37, 26], [28, 36], [21, 46], [35, 46]], np.float32), (2, 1, 1))
        assert b.infer(x, lm).shape == (2, 7, 7)
        with pytest.raises(ValueError, match="needs landmarks"):
            b.infer(x)
        with pytest.raises(ValueError, match=r"\[2, 5, 2\]"):
            b.infer(x, lm[:, :4])
        with pytest.raises(ValueError, match="NaN"):
            b.infer(x, np.full((2, 5, 2), np.nan, np.float32))


def test_recognizer_gives_the_pytorch_glpc_labels_on_ckplus(aglrls_run, aglrls_exports, data_root, detector):
    from fer_edge import Recognizer

    out, _ = aglrls_run
    dst, _ = aglrls_exports
    files = sorted(glob.glob(str(data_root / "ckplus48" / "CK+48" / "*" / "*.png")))[::50]
    torch_rec = Recognizer(out / "last.pt", detector=detector)  # the PyTorch model, same pipeline
    expected = [r[0].label for r in torch_rec.predict(files)]
    for name in ("aglrls.fp32.onnx", "aglrls.fp32.xml"):
        got = [r[0].label for r in Recognizer(dst / name, detector=detector).predict(files)]
        assert got == expected, name
    # INT8 of a model trained for 4 steps (near-uniform outputs) may flip close calls: it must run
    int8 = Recognizer(dst / "aglrls.int8.xml", detector=detector).predict(files)
    assert all(len(r) == 1 and r[0].label in torch_rec.classes for r in int8)


def test_torchrun_two_processes_shard_the_transfer_pairs(aglrls_run, tmp_path, landmarks_dir, data_root):
    """AGLRLS under torchrun (gloo): both stages run, and each rank trains on its own share of
    the source/target pairs (data_roles.PairedSteps), so an epoch has half the steps per rank."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cfg = Path(__file__).resolve().parents[2] / "configs" / "aglrls_ferplus_ckplus.yaml"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "fer_edge.cli", "train", "aglrls", "--config", str(cfg), "--no-report", *TINY, "optim.max_steps=0",
           "aglrls.steps_per_epoch=4", f"out_dir={out}", f"data.landmarks_dir={landmarks_dir}"]
    env = dict(os.environ, FER_EDGE_PROGRESS="0", OMP_NUM_THREADS="1", FER_EDGE_DATA=str(data_root))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = checkpoint.load(out / "last.pt")
    assert state["epoch"] == 3 and [h["stage"] for h in state["history"]] == ["source", "transfer", "transfer"]
    assert all(np.isfinite(h["train_loss"]) for h in state["history"])


def test_paired_steps_give_each_rank_its_own_pairs():
    from fer_edge.train.data_roles import PairedSteps

    class Faces:  # the ids are the items: enough to see which faces a step takes
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return {"image": torch.tensor([float(i)]), "label": 0, "soft_label": torch.zeros(2), "index": i}

    first, second = Faces(40), Faces(10)
    args = (first, second, ("labelled", "target"), (4, 2), 0, 3)
    whole = PairedSteps(*args, steps=10)
    r0, r1 = PairedSteps(*args, steps=5, rank=0, world=2), PairedSteps(*args, steps=5, rank=1, world=2)
    as_lists = lambda pairs: [(a.tolist(), b.tolist()) for a, b in pairs]  # noqa: E731
    assert as_lists([p for pair in zip(r0.pairs, r1.pairs) for p in pair]) == as_lists(whole.pairs)
    batch = r1[0]
    assert batch["index"].tolist() == whole.pairs[1][0].tolist() and "target_label" not in batch
    assert batch["target_index"].tolist() == whole.pairs[1][1].tolist()


def test_check_set_is_reported_never_trained_on_and_the_run_tells_how_adaptation_went(aglrls_run, tmp_path, landmarks_dir,
                                                                                       data_root):
    """Issue 20: a user's few labelled target faces (3 per class) are scored before and after
    adaptation, never enter a training batch, and the run ends with the label-free health summary."""
    out_full, _ = aglrls_run
    check = tmp_path / "check"
    for cls in ("anger", "happy", "surprise"):
        (check / cls).mkdir(parents=True)
        for f in sorted((data_root / "ckplus48" / "CK+48" / cls).glob("*.png"))[:3]:
            shutil.copy(f, check / cls / f.name)
    t = Trainer(tiny_config(tmp_path / "run", landmarks_dir, f"aglrls.init_from={out_full}/last.pt", "optim.epochs=1",
                            f"aglrls.check_set=folder:{check}", "data.target=ckplus@draw3", "eval_sets=ckplus@draw3"))
    from unittest import mock

    from fer_edge.train import trainer as trainer_module

    served, scored = [], []
    real_loader, real_outputs = trainer_module.stage_loader, t.eval_outputs

    def loader(stage, data, *args, **kw):  # every training batch comes from a stage loader
        served.extend(data.role(r).name for r in stage.data)
        return real_loader(stage, data, *args, **kw)

    def outputs(spec, as_selection=False):
        scored.append(spec)
        return real_outputs(spec, as_selection)

    with mock.patch.object(trainer_module, "stage_loader", loader), mock.patch.object(t, "eval_outputs", outputs):
        t.fit()
    assert "ckplus48@draw3" in served and not any("check" in name for name in served)
    # the check set before adaptation (the stage-1 model) and after the epoch; source validation once, at the end
    assert scored == [f"folder:{check}", f"folder:{check}", "ferplus:valid"]
    h = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= h["check_acc"] <= 1 and 0 <= h["target_flip_rate"] <= 1 and len(h["target_pred_share"]) == 7
    assert 0 <= h["report_target_acc"] <= 1  # CK+ draws have labels: the study's report-only columns
    final = t.report()
    s = final["method_summary"]
    assert s["signals"]["check"][0] is not None and s["signals"]["check"][1] == h["check_acc"]
    assert s["signals"]["source_val"][0] is not None  # the stage-1 model's validation accuracy, from init_from
    assert any(line.startswith("adaptation check") for line in s["lines"])
    assert json.loads((tmp_path / "run" / "final.json").read_text())["method_summary"]["lines"] == s["lines"]
    with pytest.raises(ValueError, match="check_set needs labelled faces"):
        Trainer(tiny_config(tmp_path / "bad", landmarks_dir, f"aglrls.check_set=unlabelled:{check}"))
