"""export(): checkpoint -> ONNX / OpenVINO / TensorRT artifacts, each verified, one report.

    from fer_edge.export import export
    report = export("runs/baseline_ferplus/best.pt", ["onnx:fp32", "openvino:int8"], "exports/")
"""
from __future__ import annotations

import datetime as dt
import json
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
    return out


def load_for_export(checkpoint_path: str | Path):
    """(model in eval mode, method, config, checkpoint state) from a fer_edge checkpoint."""
    from fer_edge.train import checkpoint
    from fer_edge.train.config import config_from_dict
    from fer_edge.train.methods import get_method

    state = checkpoint.load(checkpoint_path)
    cfg = config_from_dict(state["config"])
    method = get_method(cfg.method, cfg)
    model = method.build_model(len(state["classes"]), 1 if cfg.data.color == "gray" else 3)
    model.load_state_dict(state["model"])
    return model.eval(), method, cfg, state


def pixels(dataset, size: int, indices=None) -> tuple[np.ndarray, np.ndarray]:
    """Raw 0-255 pixels [N, C, size, size] float32 and labels, as the runtime would feed them."""
    import cv2

    idx = range(len(dataset)) if indices is None else indices
    imgs, labels = [], []
    for i in idx:
        it = dataset[int(i)]
        img = it["image"]
        if img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
        imgs.append(img[None] if img.ndim == 2 else img.transpose(2, 0, 1))
        labels.append(it["label"])
    return np.stack(imgs).astype(np.float32), np.array(labels)


def parse_targets(targets) -> list[tuple[str, str]]:
    out = []
    for t in targets:
        name, _, precision = t.partition(":")
        fmt = get_format(name, precision or None)
        out.append((fmt.name, precision or fmt.precisions[0]))
    return out


def export(checkpoint_path: str | Path, targets=DEFAULT_TARGETS, out_dir: str | Path = "exports", name: str | None = None,
           calibration_size: int = 300, val_limit: int = 0, seed: int = 0, batch_sizes=(1, 8, 32),
           workspace_mb: int = 1024, dla_core: int | None = None, threads: int | None = None, verbose: bool = True) -> dict:
    """Exports and verifies; returns the report (also written as <name>.export.json)."""
    import torch

    from fer_edge import metadata as md
    from fer_edge.export.graph import InferenceGraph
    from fer_edge.export.onnx_export import to_onnx_model, write_onnx
    from fer_edge.export.openvino_export import write_openvino
    from fer_edge.export.quantize import qdq_onnx
    from fer_edge.export.tensorrt_export import TensorRTUnavailable, build_engine
    from fer_edge.export.verify import compare
    from fer_edge.train.trainer import open_split

    targets = parse_targets(targets)
    checkpoint_path = Path(checkpoint_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, method, cfg, state = load_for_export(checkpoint_path)
    name = name or checkpoint_path.parent.name or "model"
    size, color = cfg.data.image_size, cfg.data.color
    channels = 1 if color == "gray" else 3
    graph = InferenceGraph(model, state["mean"], state["std"], method.predict).eval()
    base_meta = {
        "schema": md.SCHEMA, "classes": list(state["classes"]), "input": [channels, size, size], "color": color,
        "mean": list(state["mean"]), "std": list(state["std"]), "method": cfg.method,
        "needs_landmarks": bool(getattr(method, "needs_landmarks", False)),
        "extras": getattr(method, "export_extras", lambda m: {})(model),
        "source_checkpoint_sha256": md.sha256_bytes(checkpoint_path.read_bytes()),
        "exporters": _versions(), "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "input_range": "raw pixels 0-255, normalised inside the graph",
        # how the runtime must crop faces: the framing the training images had
        "align_template": "fer2013" if cfg.data.dataset in ("ferplus", "fer2013") or cfg.data.dataset.startswith("fer2013:") else "arcface",
    }
    # validation images (never test) and calibration images from the training split
    val_set = open_split(f"{cfg.data.dataset}:{cfg.select_on}" if cfg.data.dataset == "ferplus" else f"{cfg.data.dataset}@{cfg.select_on}",
                         len(state["classes"]), color)
    val_idx = range(min(val_limit, len(val_set))) if val_limit else None
    val_x, val_y = pixels(val_set, size, val_idx)
    with torch.no_grad():
        torch_logits = np.concatenate([graph(torch.from_numpy(val_x[i:i + 256])).numpy() for i in range(0, len(val_x), 256)])
    calib_x = None
    if any(p == "int8" for _, p in targets):
        train_set = open_split(f"{cfg.data.dataset}:train" if cfg.data.dataset == "ferplus" else f"{cfg.data.dataset}@train",
                               len(state["classes"]), color)
        rng = np.random.default_rng(seed)
        calib_x, _ = pixels(train_set, size, rng.choice(len(train_set), min(calibration_size, len(train_set)), replace=False))

    fp32 = to_onnx_model(graph, (channels, size, size))
    qdq = None
    report = {"checkpoint": str(checkpoint_path), "validation_set": f"{cfg.data.dataset}:{cfg.select_on}",
              "torch_accuracy": float((torch_logits.argmax(1) == val_y).mean()), "calibration_images": 0 if calib_x is None else len(calib_x),
              "artifacts": []}
    for fmt_name, precision in targets:
        fmt = get_format(fmt_name, precision)
        path = out_dir / f"{name}.{precision}{fmt.suffix}"
        meta = dict(base_meta, format=fmt_name, precision=precision)
        row = {"format": fmt_name, "precision": precision, "file": str(path)}
        try:
            if fmt_name == "onnx":
                if precision == "int8":
                    qdq = qdq if qdq is not None else qdq_onnx(fp32, calib_x)
                    write_onnx(qdq, meta, path)
                else:
                    write_onnx(fp32, meta, path)
            elif fmt_name == "openvino":
                write_openvino(fp32, meta, path, precision, calib_x)
            else:
                if precision == "int8":
                    qdq = qdq if qdq is not None else qdq_onnx(fp32, calib_x)
                src = qdq if precision == "int8" else fp32
                build_engine(src.SerializeToString(), meta, path, precision, batch_sizes, workspace_mb,
                             out_dir / "timing.cache", dla_core)
            row.update(compare(path, precision, torch_logits, val_y, val_x, threads=threads))
            row["accuracy_change_vs_torch"] = row["accuracy"] - report["torch_accuracy"]
        except TensorRTUnavailable as exc:
            row["skipped"] = str(exc)
        report["artifacts"].append(row)
        if verbose:
            print(format_row(row), flush=True)
    (out_dir / f"{name}.export.json").write_text(json.dumps(report, indent=2))
    return report


def format_row(r: dict) -> str:
    if "skipped" in r:
        return f"{r['format']:9s} {r['precision']:5s} skipped: {r['skipped']}"
    return (f"{r['format']:9s} {r['precision']:5s} {r['size_mb']:8.2f} MB  acc {r['accuracy']:.4f} "
            f"({r['accuracy_change_vs_torch']:+.4f})  agree {r['agreement_with_torch']:.4f}  "
            f"max|d| {r['max_abs_diff']:.2e}  {r['latency_ms_batch1']:.3f} ms/img")
