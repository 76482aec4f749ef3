"""export(): checkpoint -> ONNX / OpenVINO / TensorRT artifacts, each verified, one report.

    from fer_edge.export import export
    report = export("runs/baseline_ferplus/best.pt", ["onnx:fp32", "openvino:int8"], "exports/")
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from fer_edge.export.formats import get_format

DEFAULT_TARGETS = ("onnx:fp32", "onnx:int8", "openvino:fp32", "openvino:fp16", "openvino:int8", "tensorrt:fp16", "tensorrt:int8")


def _versions() -> dict:
    out = {}
    for mod in ("fer_edge", "torch", "onnx", "onnxsim", "onnxruntime", "openvino", "nncf", "tensorrt"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # absent, or a package without __version__
            pass
    commit = _source_commit()
    if commit:  # the version string has not moved across model-code changes; the commit says which code exported
        out["fer_edge_commit"] = commit
    return out


def _source_commit() -> str | None:
    """The git commit of the fer_edge source this runs from (an editable install in a checkout),
    with "+dirty" when it has uncommitted changes; None outside a checkout or without git."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "fer_edge"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def load_for_export(checkpoint_path: str | Path):
    """(model in eval mode, method, config, checkpoint state) from a fer_edge checkpoint. The
    model is the method's evaluated module with the weights evaluation uses (EMA when the method
    evaluates with its teacher)."""
    from fer_edge.train import checkpoint
    from fer_edge.train.config import config_from_dict
    from fer_edge.train.methods import get_method

    state = checkpoint.load(checkpoint_path)
    cfg = config_from_dict(state["config"])
    method = get_method(cfg.method, cfg)
    model = method.build_model(len(state["classes"]), 1 if cfg.data.color == "gray" else 3)
    use_ema = method.evaluate_with_ema and state.get("ema") is not None
    model.load_state_dict(state["ema"] if use_ema else state["model"])
    method.load_state_dict(state.get("method_state", {}))  # e.g. AGLRLS's learning status for GLPC
    return method.export_module(model).eval(), method, cfg, state


def model_metadata(method, cfg, state) -> dict:
    """The metadata a model of this checkpoint carries, from what its method declares: inputs,
    heads and decision rule (fer_edge/metadata.py). Export and the .pt backend both use it."""
    from fer_edge import metadata as md

    size, color = cfg.data.image_size, cfg.data.color
    channels = 1 if color == "gray" else 3
    spec = method.inference()
    return {
        "schema": md.SCHEMA, "classes": list(state["classes"]), "input": [channels, size, size], "color": color,
        "mean": list(state["mean"]), "std": list(state["std"]), "method": cfg.method,
        "inputs": [{"name": "pixels", "shape": ["N", channels, size, size]}]
                  + [{"name": i.name, "shape": ["N", *i.shape]} for i in spec.inputs],
        "heads": list(spec.heads), "decision": method.decision().to_dict(), "extras": method.export_extras(),
        "input_range": "raw pixels 0-255, normalised inside the graph", "align_template": align_template(cfg),
    }


def align_template(cfg) -> str:
    """How the runtime must crop faces: the framing the training images had (FER2013/FERPlus
    crops are looser than ArcFace's)."""
    d = cfg.data.dataset
    return "fer2013" if d in ("ferplus", "fer2013") or d.startswith("fer2013:") else "arcface"


# the extra graph inputs export knows how to feed from a dataset's items
DATASET_FIELDS = ("landmarks",)


def pixels(dataset, size: int, indices=None, extra: tuple[str, ...] = ()) -> tuple[dict, np.ndarray]:
    """({"pixels": raw 0-255 pixels [N, C, size, size] float32, plus each `extra` input}, labels),
    as the runtime would feed them; landmarks are scaled to the resized input."""
    import cv2

    unknown = [e for e in extra if e not in DATASET_FIELDS]
    if unknown:
        raise ValueError(f"export cannot feed the graph inputs {unknown} from a dataset (it knows {DATASET_FIELDS})")
    idx = range(len(dataset)) if indices is None else indices
    imgs, labels, lms = [], [], []
    for i in idx:
        it = dataset[int(i)]
        img = it["image"]
        h, w = img.shape[:2]
        if (h, w) != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
        imgs.append(img[None] if img.ndim == 2 else img.transpose(2, 0, 1))
        labels.append(it["label"])
        if "landmarks" in extra:
            if it.get("landmarks") is None:
                raise ValueError(f"{dataset.name}: sample {it['name']} has no landmarks (attach a landmark cache)")
            lms.append(np.asarray(it["landmarks"], np.float32) * np.array([size / w, size / h], np.float32))
    inputs = {"pixels": np.stack(imgs).astype(np.float32)}
    if "landmarks" in extra:
        inputs["landmarks"] = np.stack(lms).astype(np.float32)
    return inputs, np.array(labels)


def _attach_fields(dataset, spec: str, cfg, extra) -> None:
    """Attaches (detecting once, if the cache lacks them) the landmarks a landmark model needs."""
    if "landmarks" in extra:
        from fer_edge.data import landmarks

        landmarks.ensure(dataset, landmarks.cache_file(spec, cfg.data.landmarks_dir or None))


def parse_targets(targets) -> list[tuple[str, str]]:
    out = []
    for t in targets:
        name, _, precision = t.partition(":")
        fmt = get_format(name, precision or None)
        out.append((fmt.name, precision or fmt.precisions[0]))
    return out


def export(checkpoint_path: str | Path, targets=DEFAULT_TARGETS, out_dir: str | Path = "exports", name: str | None = None,
           calibration_size: int = 300, val_limit: int = 0, seed: int = 0, batch_sizes=(1, 8, 32),
           workspace_mb: int = 1024, dla_core: int | None = None, threads: int | None = None, verbose: bool = True,
           plain_names: bool = False) -> dict:
    """Exports and verifies; returns the report (also written as <name>.export.json).

    Files are named <name>.<precision><suffix>; with `plain_names` (one precision per format)
    <name><suffix>, the deployment names (aglrls.xml, aglrls.engine)."""
    import torch

    from fer_edge import decisions
    from fer_edge import metadata as md
    from fer_edge.export.graph import InferenceGraph
    from fer_edge.export.onnx_export import to_onnx_model, write_onnx
    from fer_edge.export.openvino_export import write_openvino
    from fer_edge.export.quantize import qdq_onnx
    from fer_edge.export.tensorrt_export import TensorRTUnavailable, build_engine
    from fer_edge.export.verify import compare
    from fer_edge.train.data_roles import open_split, split_spec

    if val_limit < 0 or calibration_size < 1:
        raise ValueError(f"val_limit must be >= 0 and calibration_size >= 1, got {val_limit} and {calibration_size}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"out_dir {out_dir}: a file, not a folder")
    targets = parse_targets(targets)
    if plain_names and len({f for f, _ in targets}) != len(targets):
        raise ValueError("plain_names: give one precision per format (the file names would collide)")
    checkpoint_path = Path(checkpoint_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, method, cfg, state = load_for_export(checkpoint_path)
    name = name or checkpoint_path.parent.name or "model"
    graph = InferenceGraph(model, state["mean"], state["std"], method.predict).eval()
    base_meta = dict(model_metadata(method, cfg, state),
                     source_checkpoint_sha256=md.sha256_bytes(checkpoint_path.read_bytes()), exporters=_versions(),
                     created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    extra = tuple(i["name"] for i in base_meta["inputs"][1:])
    rule = method.decision()

    def decide(outputs):  # the rule the metadata carries, through the same function as the runtime
        return decisions.decide(outputs, rule.rule, rule.params)[0]

    # validation images (never test) and calibration images from the training split
    d = cfg.data.dataset
    val_spec = split_spec(d, cfg.select_on)
    val_set = open_split(val_spec, len(state["classes"]), cfg.data.color)
    if val_limit:
        val_set = val_set.subset(range(min(val_limit, len(val_set))))
    _attach_fields(val_set, val_spec, cfg, extra)  # landmarks are detected only for the faces used
    val_inputs, val_y = pixels(val_set, cfg.data.image_size, None, extra)
    with torch.no_grad():
        n = len(val_y)
        torch_logits = np.concatenate([graph(*[torch.from_numpy(val_inputs[k][i:i + 256]) for k in ("pixels", *extra)]).numpy()
                                       for i in range(0, n, 256)])
    if not np.isfinite(torch_logits).all():
        raise ValueError(f"{checkpoint_path}: the model gives non-finite outputs on the validation images "
                         "(trained with a diverging loss?); nothing was exported")
    calib = None
    if any(p == "int8" for _, p in targets):
        train_spec = split_spec(d, "train")
        train_set = open_split(train_spec, len(state["classes"]), cfg.data.color)
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(train_set), min(calibration_size, len(train_set)), replace=False))
        train_set = train_set.subset(pick)
        _attach_fields(train_set, train_spec, cfg, extra)
        calib, _ = pixels(train_set, cfg.data.image_size, None, extra)

    fp32 = to_onnx_model(graph, base_meta["inputs"])
    qdq = None
    report = {"checkpoint": str(checkpoint_path), "validation_set": f"{cfg.data.dataset}:{cfg.select_on}",
              "decision": rule.rule, "torch_accuracy": float((decide(torch_logits) == val_y).mean()),
              "calibration_images": 0 if calib is None else len(calib["pixels"]), "artifacts": [],
              "tensorrt_check": {"fp32": _tensorrt_findings(fp32, "FP32 graph")}}
    for fmt_name, precision in targets:
        fmt = get_format(fmt_name, precision)
        path = out_dir / (f"{name}{fmt.suffix}" if plain_names else f"{name}.{precision}{fmt.suffix}")
        meta = dict(base_meta, format=fmt_name, precision=precision)
        row = {"format": fmt_name, "precision": precision, "file": str(path)}
        # Each artifact is written and verified in a staging folder and only then moved under its
        # name: a file that fails verification never replaces a good one from an earlier export, and
        # is kept in <out_dir>/failed/ for a bug report instead of lying around as if deployable.
        with tempfile.TemporaryDirectory(prefix=".staging-", dir=out_dir) as stage:
            staged = Path(stage) / path.name
            try:
                if fmt_name == "onnx":
                    if precision == "int8":
                        qdq = qdq if qdq is not None else qdq_onnx(fp32, calib)
                        write_onnx(qdq, meta, staged)
                    else:
                        write_onnx(fp32, meta, staged)
                elif fmt_name == "openvino":
                    write_openvino(fp32, meta, staged, precision, calib)
                else:
                    if precision == "int8":
                        qdq = qdq if qdq is not None else qdq_onnx(fp32, calib)
                    src = qdq if precision == "int8" else fp32
                    build_engine(src.SerializeToString(), meta, staged, precision, batch_sizes, workspace_mb,
                                 out_dir / "timing.cache", dla_core)
                try:
                    row.update(compare(staged, precision, torch_logits, val_y, val_inputs, threads=threads,
                                       decide=decide))
                except ValueError as exc:
                    kept = _move_all(Path(stage), out_dir / "failed")
                    raise ValueError(f"{exc} (not written as {path}; the failed file is kept as "
                                     f"{', '.join(str(k) for k in kept)})") from exc
                _move_all(Path(stage), out_dir)
                row["file"] = str(path)
                row["accuracy_change_vs_torch"] = row["accuracy"] - report["torch_accuracy"]
                if fmt_name == "tensorrt":
                    from fer_edge.export.deepstream import write_deepstream_config

                    row["deepstream_config"] = str(write_deepstream_config(path, meta) or "")
            except TensorRTUnavailable as exc:
                row["skipped"] = str(exc)
        report["artifacts"].append(row)
        if verbose:
            print(format_row(row), flush=True)
    if qdq is not None:
        report["tensorrt_check"]["int8"] = _tensorrt_findings(qdq, "Q/DQ INT8 graph")
    (out_dir / f"{name}.export.json").write_text(json.dumps(report, indent=2))
    return report


def _move_all(src: Path, dest: Path) -> list[Path]:
    """Moves every file of an artifact (an IR's .xml and .bin together) into dest, replacing."""
    dest.mkdir(parents=True, exist_ok=True)
    moved = []
    for f in sorted(src.iterdir()):
        if f.is_file():
            os.replace(f, dest / f.name)
            moved.append(dest / f.name)
    return moved


def _tensorrt_findings(model, what: str) -> list[str]:
    """The static TensorRT 10 check of a graph (tensorrt_check.py); each finding is a warning
    naming the node, on every export, so that a graph that would not build is known before it
    reaches a GPU."""
    import sys

    from fer_edge.export.tensorrt_check import check

    findings = [str(f) for f in check(model)]
    for f in findings:
        print(f"warning: TensorRT would not build the {what}: {f}", file=sys.stderr)
    return findings


def format_row(r: dict) -> str:
    if "skipped" in r:
        return f"{r['format']:9s} {r['precision']:5s} skipped: {r['skipped']}"
    return (f"{r['format']:9s} {r['precision']:5s} {r['size_mb']:8.2f} MB  acc {r['accuracy']:.4f} "
            f"({r['accuracy_change_vs_torch']:+.4f})  agree {r['agreement_with_torch']:.4f}  "
            f"max|d| {r['max_abs_diff']:.2e}  {r['latency_ms_batch1']:.3f} ms/img")
