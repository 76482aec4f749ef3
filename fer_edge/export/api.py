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
    if hasattr(method, "load_state_dict"):  # e.g. AGLRLS's learning status for GLPC
        method.load_state_dict(state.get("method_state", {}))
    return model.eval(), method, cfg, state


def align_template(cfg) -> str:
    """How the runtime must crop faces: the framing the training images had (FER2013/FERPlus
    crops are looser than ArcFace's)."""
    d = cfg.data.dataset
    return "fer2013" if d in ("ferplus", "fer2013") or d.startswith("fer2013:") else "arcface"


def pixels(dataset, size: int, indices=None, landmarks: bool = False):
    """Raw 0-255 pixels [N, C, size, size] float32 and labels, as the runtime would feed them;
    with `landmarks`, also the items' landmarks [N, 5, 2] scaled to the resized input."""
    import cv2

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
        if landmarks:
            if it.get("landmarks") is None:
                raise ValueError(f"{dataset.name}: sample {it['name']} has no landmarks (attach a landmark cache)")
            lms.append(np.asarray(it["landmarks"], np.float32) * np.array([size / w, size / h], np.float32))
    x, y = np.stack(imgs).astype(np.float32), np.array(labels)
    return (x, y, np.stack(lms).astype(np.float32)) if landmarks else (x, y)


def _with_landmarks(dataset, spec: str, method, needed: bool):
    """Attaches (detecting once, if the cache lacks them) the landmarks a landmark model needs."""
    if not needed:
        return dataset
    from fer_edge.data import landmarks

    landmarks.ensure(dataset, method.landmark_file(spec))
    return dataset


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

    from fer_edge import metadata as md
    from fer_edge.export.graph import InferenceGraph
    from fer_edge.export.onnx_export import to_onnx_model, write_onnx
    from fer_edge.export.openvino_export import write_openvino
    from fer_edge.export.quantize import qdq_onnx
    from fer_edge.export.tensorrt_export import TensorRTUnavailable, build_engine
    from fer_edge.export.verify import compare
    from fer_edge.train.trainer import open_split

    targets = parse_targets(targets)
    if plain_names and len({f for f, _ in targets}) != len(targets):
        raise ValueError("plain_names: give one precision per format (the file names would collide)")
    checkpoint_path = Path(checkpoint_path)
    decide = None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, method, cfg, state = load_for_export(checkpoint_path)
    name = name or checkpoint_path.parent.name or "model"
    size, color = cfg.data.image_size, cfg.data.color
    channels = 1 if color == "gray" else 3
    graph = InferenceGraph(model, state["mean"], state["std"], method.predict).eval()
    needs_lm = bool(getattr(method, "needs_landmarks", False))
    decide = method.decide  # the method's own decision rule (AGLRLS: GLPC over the 7 heads)
    base_meta = {
        "schema": md.SCHEMA, "classes": list(state["classes"]), "input": [channels, size, size], "color": color,
        "mean": list(state["mean"]), "std": list(state["std"]), "method": cfg.method,
        "needs_landmarks": needs_lm,
        "extras": getattr(method, "export_extras", lambda m: {})(model),
        "source_checkpoint_sha256": md.sha256_bytes(checkpoint_path.read_bytes()),
        "exporters": _versions(), "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "input_range": "raw pixels 0-255, normalised inside the graph",
        "align_template": align_template(cfg),
    }
    # validation images (never test) and calibration images from the training split
    d = cfg.data.dataset
    val_spec = f"{d}:{cfg.select_on}" if d == "ferplus" else f"{d}@{cfg.select_on}"
    val_set = _with_landmarks(open_split(val_spec, len(state["classes"]), color), val_spec, method, needs_lm)
    val_idx = range(min(val_limit, len(val_set))) if val_limit else None
    val_x, val_y, *val_lm = pixels(val_set, size, val_idx, landmarks=needs_lm)
    with torch.no_grad():
        torch_logits = np.concatenate([graph(torch.from_numpy(val_x[i:i + 256]), *[torch.from_numpy(a[i:i + 256]) for a in val_lm]).numpy()
                                       for i in range(0, len(val_x), 256)])
    calib = None
    if any(p == "int8" for _, p in targets):
        train_spec = f"{d}:train" if d == "ferplus" else f"{d}@train"
        train_set = open_split(train_spec, len(state["classes"]), color)
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(train_set), min(calibration_size, len(train_set)), replace=False))
        if needs_lm:
            train_set = _with_landmarks(train_set.subset(pick), train_spec, method, True)
            pick = None
        calib_x, _, *calib_lm = pixels(train_set, size, pick, landmarks=needs_lm)
        calib = [calib_x, *calib_lm]

    fp32 = to_onnx_model(graph, (channels, size, size), landmarks=needs_lm)
    qdq = None
    report = {"checkpoint": str(checkpoint_path), "validation_set": f"{cfg.data.dataset}:{cfg.select_on}",
              "torch_accuracy": float((decide(torch_logits) == val_y).mean()), "calibration_images": 0 if calib is None else len(calib[0]),
              "artifacts": []}
    for fmt_name, precision in targets:
        fmt = get_format(fmt_name, precision)
        path = out_dir / (f"{name}{fmt.suffix}" if plain_names else f"{name}.{precision}{fmt.suffix}")
        meta = dict(base_meta, format=fmt_name, precision=precision)
        row = {"format": fmt_name, "precision": precision, "file": str(path)}
        try:
            if fmt_name == "onnx":
                if precision == "int8":
                    qdq = qdq if qdq is not None else qdq_onnx(fp32, calib)
                    write_onnx(qdq, meta, path)
                else:
                    write_onnx(fp32, meta, path)
            elif fmt_name == "openvino":
                write_openvino(fp32, meta, path, precision, calib)
            else:
                if precision == "int8":
                    qdq = qdq if qdq is not None else qdq_onnx(fp32, calib)
                src = qdq if precision == "int8" else fp32
                build_engine(src.SerializeToString(), meta, path, precision, batch_sizes, workspace_mb,
                             out_dir / "timing.cache", dla_core)
            row.update(compare(path, precision, torch_logits, val_y, [val_x, *val_lm], threads=threads, decide=decide))
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
