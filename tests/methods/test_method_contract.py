"""The method contract, for every registered method (a new method gets these tests by
registering itself and adding its recipe): build -> one real train_step on real faces -> state
round trip -> resume equivalence across stages -> export to ONNX (FP32 and Q/DQ, both passing the
static TensorRT check) -> the runtime's decision equals the method's decision on the same inputs."""
import dataclasses
import importlib.util
import io
import os

import numpy as np
import pytest
import torch

from fer_edge import decisions
from fer_edge.recipe import recipe_for_method
from fer_edge.train import Trainer, checkpoint, load_config
from fer_edge.train.data_roles import stage_loader
from fer_edge.train.methods import Method, method_class, method_names

os.environ.setdefault("FER_EDGE_PROGRESS", "0")
METHODS = method_names()


@pytest.fixture(scope="module")
def landmarks_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("contract_landmarks")


def smoke_config(name, out, landmarks_dir, *extra):
    recipe = recipe_for_method(name)
    return load_config(recipe.path("config"), [*recipe.smoke, f"out_dir={out}", f"data.landmarks_dir={landmarks_dir}",
                                               "eval_sets=ckplus", *extra], method=name)


def test_every_builtin_method_is_registered():
    assert {"baseline", "aglrls"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_declares_description_config_stages_and_recipe(name):
    cls = method_class(name)
    assert issubclass(cls, Method) and cls.description and dataclasses.is_dataclass(cls.Config)
    recipe = recipe_for_method(name)
    cfg = load_config(recipe.path("config"), recipe.smoke, method=name)
    stages = cls(cfg).stages()
    assert stages and all(s.epochs >= 0 for s in stages) and len({s.name for s in stages}) == len(stages)
    from fer_edge.cli import _methods_epilog

    assert f"  {name} " in _methods_epilog(["train", "--help"])


@pytest.mark.parametrize("name", METHODS)
def test_one_real_train_step_returns_finite_named_losses_with_gradients(name, data_root, tmp_path, landmarks_dir):
    trainer = Trainer(smoke_config(name, tmp_path, landmarks_dir))
    starts = np.cumsum([0] + [s.epochs for s in trainer.stages])
    for stage, start in zip(trainer.stages, starts):  # one step of every stage, on real faces
        trainer.epoch = int(start)
        trainer._optimizer_for(stage)
        steps = trainer._steps(stage)
        logs = {}
        ctx = trainer._context(stage, steps, logs)
        trainer.method.on_stage_start(ctx)
        trainer.method.on_epoch_start(ctx)
        batch = next(iter(stage_loader(stage, trainer.data, trainer.epoch, steps, 0, 0, 1, 0)))
        if stage.data[0] != "labelled":
            assert "label" not in batch
        for role in stage.data[1:]:  # later roles are unlabelled and prefixed
            assert not any(k.startswith(f"{role}_label") or k == f"{role}_soft_label" for k in batch)
        trainer.net.train()
        terms = trainer.method.train_step(ctx, batch)
        assert terms and all(isinstance(k, str) and v.dim() == 0 and torch.isfinite(v) for k, v in terms.items())
        trainer.opt.zero_grad()
        sum(terms.values()).backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.parameters())


@pytest.mark.parametrize("name", METHODS)
def test_method_state_round_trips_through_a_checkpoint(name, data_root, tmp_path, landmarks_dir):
    trainer = Trainer(smoke_config(name, tmp_path, landmarks_dir))
    trainer.fit(stop_after=trainer.total_epochs)
    state = trainer.method.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    other = method_class(name)(trainer.cfg)
    other.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert repr(other.state_dict()) == repr(state)
    assert other.decision() == trainer.method.decision()


@pytest.fixture(scope="module", params=METHODS)
def finished(request, tmp_path_factory, data_root, landmarks_dir):
    out = tmp_path_factory.mktemp(f"contract_{request.param}")
    trainer = Trainer(smoke_config(request.param, out, landmarks_dir))
    trainer.fit()
    return request.param, out, trainer


def test_a_run_interrupted_after_every_epoch_ends_where_a_straight_run_does(finished, tmp_path, landmarks_dir):
    name, out, straight = finished
    total = straight.total_epochs
    assert total >= 2
    for k in range(1, total + 1):  # every boundary, the stage boundaries included
        Trainer(smoke_config(name, tmp_path, landmarks_dir)).fit(stop_after=k)
    a, b = checkpoint.load(out / "last.pt"), checkpoint.load(tmp_path / "last.pt")
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    assert repr(a["method_state"]) == repr(b["method_state"])
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert [h["stage"] for h in a["history"]] == [s.name for s in straight.stages for _ in range(s.epochs)]


def test_the_exported_models_decision_is_the_methods(finished, tmp_path):
    from fer_edge.export import export
    from fer_edge.export.api import load_for_export, pixels
    from fer_edge.export.graph import InferenceGraph
    from fer_edge.runtime.backends import open_backend
    from fer_edge.runtime.recognizer import decide as runtime_decide

    name, out, trainer = finished
    ckpt = trainer.report_checkpoint
    # OpenVINO FP32 too: its CPU plugin once fused the PLL decoder's scorer wrongly where ONNX Runtime was exact
    formats = ["onnx:fp32", "onnx:int8"] + (["openvino:fp32"] if importlib.util.find_spec("openvino") else [])
    report = export(ckpt, formats, tmp_path, name="m", val_limit=48, calibration_size=32, verbose=False)
    for row in report["artifacts"]:
        if row["precision"] == "fp32":
            assert row["agreement_with_torch"] == 1.0 and row["max_abs_diff"] < 1e-3, row
    # nothing in the method's graph, FP32 or Q/DQ, would stop TensorRT 10 from building it
    assert report["tensorrt_check"] == {"fp32": [], "int8": []}
    model, method, cfg, state = load_for_export(ckpt)
    with open_backend(tmp_path / "m.fp32.onnx") as b:
        assert b.meta["method"] == name and b.meta["decision"] == method.decision().to_dict()
        assert b.extra_inputs == [i.name for i in method.inference().inputs]
        assert b.meta["heads"] == list(method.inference().heads)
        inputs, _ = pixels(_faces_dataset(trainer), cfg.data.image_size, range(48), tuple(b.extra_inputs))
        runtime_logits = b.infer(inputs["pixels"], **{k: v for k, v in inputs.items() if k != "pixels"})
    graph = InferenceGraph(model, state["mean"], state["std"], method.predict).eval()
    with torch.no_grad():
        torch_logits = graph(*[torch.from_numpy(inputs[k]) for k in ("pixels", *b.extra_inputs)]).numpy()
    rule = method.decision()
    method_labels = decisions.decide(torch_logits, rule.rule, rule.params)[0]
    runtime_labels = runtime_decide(runtime_logits, b.meta)[0]
    assert np.array_equal(method_labels, runtime_labels)


def _faces_dataset(trainer):
    """The selection split as a FaceDataset (what export reads), with the run's landmark cache."""
    from fer_edge.data import landmarks
    from fer_edge.train.data_roles import open_split, split_spec

    cfg = trainer.cfg
    spec = split_spec(cfg.data.dataset, cfg.select_on)
    ds = open_split(spec, cfg.data.num_classes, cfg.data.color)
    if "landmarks" in trainer.method.fields:
        landmarks.ensure(ds, landmarks.cache_file(spec, cfg.data.landmarks_dir))
    return ds


def test_trainer_has_no_method_names():
    """The trainer drives any method through the contract: no method is named in it."""
    from pathlib import Path

    import fer_edge.train.trainer as t

    text = Path(t.__file__).read_text().lower()
    assert not [n for n in METHODS if n in text.replace("method", "")]


def test_the_readme_example_method_plugs_in_and_trains(data_root, tmp_path):
    """README 'How a method plugs in': the smallest complete method, as printed, registers and trains."""
    import re
    from pathlib import Path

    from fer_edge.train.methods import base

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### How a method plugs in"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    try:
        namespace = {"__name__": "readme_example"}
        exec(compile(code, "README.md", "exec"), namespace)
        cfg = load_config(None, [f"out_dir={tmp_path}", "data.limit=64", "data.batch_size=16", "optim.epochs=1",
                                 "optim.max_steps=2", "model.width=0.25", "threads=1", "smoothed.eps=0.2",
                                 "eval_sets=ckplus"], method="smoothed")
        assert cfg.method_config.eps == 0.2
        trainer = Trainer(cfg)
        trainer.fit()
        history = trainer.history
        assert history[0]["stage"] == "supervised" and np.isfinite(history[0]["ce_loss"])
        assert trainer.report()["sets"]["ckplus"]["count"] == 981
    finally:
        base._METHODS.pop("smoothed", None)
