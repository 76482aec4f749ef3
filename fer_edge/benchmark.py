"""`fer-edge benchmark`: every form of a model that runs on this machine, side by side in one run.

For a model (the shipped default, exported files, or a training checkpoint, which is first
exported to every format x precision that runs here: ONNX FP32/INT8, OpenVINO FP32/FP16/INT8,
TensorRT FP16/INT8 where TensorRT is installed), one row per form with:
- file size; accuracy on a labelled dataset (FERPlus valid by default, any dataset spec) through
  the runtime on its face crops (`detect=False`; landmark models get the template's landmarks),
  and agreement with the FP32 form's labels;
- classifier latency per face at batch 1 and at a camera-like batch (p50 / p90 / p99, faces/s);
- the whole pipeline on a 640x480 one-face frame, per stage (detect / align / infer /
  post-process) and end to end, for one frame and for a batch of frames (several cameras);
- anchors in the same run: the pipeline as it was before `min_face` (full-resolution detection)
  and the faces each detector finds on the data folder's photos and crops,
  a video stream with detection every frame vs every 3rd frame (landmark flow between), and the
  `fer` package's pipeline when it is installed.
Output: a printed table, JSON and a PNG chart, with the machine's facts (CPU, cores, threads,
library versions, commit). Runs without torch, except to export a checkpoint.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np


# -- measurement helpers -------------------------------------------------------------------------------
def percentiles(samples_ms) -> dict:
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "runs": int(len(a))}


def timed(fn, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def rotate(fns: dict, repeats: int, block: int = 10) -> dict:
    """Each callable timed `repeats` times in blocks of `block`, the blocks rotating across them,
    so that no implementation is timed against another's spinning worker threads or a warmer cache."""
    samples = {k: [] for k in fns}
    for _ in range(max(1, repeats // block)):
        for k, fn in fns.items():
            samples[k] += timed(fn, block, warmup=1)
    return samples


def machine_facts(threads: int | None) -> dict:
    facts = {"platform": platform.platform(), "python": platform.python_version(), "cpu": platform.processor() or "",
             "cores": os.cpu_count(), "threads": threads or "runtime default"}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("numpy", "cv2", "onnxruntime", "openvino", "tensorrt", "torch"):
        try:
            m = __import__(mod)
            versions["opencv" if mod == "cv2" else mod] = getattr(m, "__version__", "?")
        except ImportError:
            pass
    from fer_edge import __version__

    versions["fer_edge"] = __version__
    facts["versions"] = versions
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent)
        facts["commit"] = commit.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        facts["commit"] = None
    return facts


# -- which models -------------------------------------------------------------------------------------
def runnable_targets() -> list[str]:
    """format:precision of every form that runs on this machine."""
    targets = ["onnx:fp32", "onnx:int8"]
    try:
        import openvino  # noqa: F401

        targets += ["openvino:fp32", "openvino:fp16", "openvino:int8"]
    except ImportError:
        pass
    from fer_edge.export.tensorrt_export import tensorrt_available

    if tensorrt_available():
        targets += ["tensorrt:fp16", "tensorrt:int8"]
    return targets


def resolve_models(models: list[str], out: Path, formats: list[str] | None, val_limit: int) -> list[Path]:
    """Paths to benchmark: the shipped default's forms, exported files as given, and for each
    checkpoint its exports (written under out/exports)."""
    from fer_edge.runtime.recognizer import default_model_path, resolve_model_path

    if not models:
        paths = [default_model_path(precision="fp32")]
        try:
            paths.append(default_model_path(precision="int8"))
        except (ImportError, FileNotFoundError):
            pass
        return paths
    paths = []
    for m in models:
        p = Path(m)
        if p.suffix == ".pt":
            from fer_edge.export import export

            report = export(p, formats or runnable_targets(), out / "exports", val_limit=val_limit, verbose=True)
            paths += [Path(r["file"]) for r in report["artifacts"] if "skipped" not in r]
        else:
            paths.append(resolve_model_path(p))
    return paths


def model_size_mb(path: Path) -> float:
    size = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return round(size / 2**20, 3)


# -- the benchmark ------------------------------------------------------------------------------------
def accuracy(rec, faces: list[np.ndarray], labels: np.ndarray, batch: int = 256) -> tuple[float, np.ndarray]:
    """Accuracy on face crops through the runtime (`detect=False`), and the predicted labels."""
    pred = []
    for i in range(0, len(faces), batch):
        results = rec.predict(faces[i:i + batch], detect=False)
        pred += [rec.classes.index(r[0].label) for r in results]
    pred = np.asarray(pred)
    known = labels >= 0
    return float((pred[known] == labels[known]).mean()), pred


def load_faces(spec: str, limit: int, classes: list[str]):
    """Face crops (BGR uint8) and labels of a dataset spec, labels mapped onto `classes` by name
    (faces of classes the model lacks get -1 and are not scored)."""
    import cv2

    from fer_edge.data import open_dataset

    kind, _, rest = spec.partition(":")
    split = None
    if kind == "ferplus" and rest in ("train", "valid", "test"):
        spec, split = "ferplus", rest
    ds = open_dataset(spec, split, num_classes=8)
    n = len(ds) if not limit else min(limit, len(ds))
    faces, labels = [], []
    for i in range(n):
        img = ds.image(i)
        faces.append(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img)
        name = ds.classes[ds.samples[i].label] if ds.samples[i].label >= 0 else None
        labels.append(classes.index(name) if name in classes else -1)
    return faces, np.asarray(labels), f"{ds.name} ({n} faces)"


def default_frame() -> np.ndarray:
    """A real one-face photo (the data folder's portrait) at 640x480."""
    import cv2

    from fer_edge.paths import data_root

    root = data_root(required=False)
    path = None if root is None else root / "faces" / "test_images" / "paul_rudd" / "1.jpg"
    if path is None or not path.is_file():
        raise FileNotFoundError("no frame to time the pipeline on: pass --frame <photo with one face> "
                                "(or set FER_EDGE_DATA to the data folder)")
    return cv2.resize(cv2.imread(str(path)), (640, 480), interpolation=cv2.INTER_AREA)


def pipeline_stages(rec, frame: np.ndarray, repeats: int, camera_batch: int) -> dict:
    """Per stage and end to end on one frame, and per frame for a batch of `camera_batch` frames."""
    faces = rec.detect(frame)
    x, lm, _ = rec.crops_for(frame, faces)
    outputs = rec.infer(x, lm) if len(x) else None
    frames = [frame] * camera_batch
    fns = {"detect": lambda: rec.detect(frame), "align": lambda: rec.crops_for(frame, faces),
           "infer": (lambda: rec.infer(x, lm)) if len(x) else (lambda: None),
           "post": lambda: rec.results([faces], outputs), "total": lambda: rec.predict(frame),
           f"total_batch{camera_batch}": lambda: rec.predict(frames)}
    row = {k: percentiles(v) for k, v in rotate(fns, repeats).items()}
    b = row[f"total_batch{camera_batch}"]
    row[f"per_frame_batch{camera_batch}"] = {k: round(v / camera_batch, 3) if k.endswith("_ms") else v for k, v in b.items()}
    row["faces"] = len(faces)
    row["fps"] = round(1000.0 / row["total"]["p50_ms"], 1)
    return row


def stream_anchor(rec, frame: np.ndarray, frames: int = 60) -> dict:
    """ms per frame of a stream (the frame panned 2 px per frame: real pixels, known motion) with
    detection on every frame vs every 3rd frame."""
    seq = [np.roll(frame, 2 * k, axis=1) for k in range(frames)]
    out = {}
    for every in (1, 3):
        list(rec.stream(seq[:5], detect_every=every))  # warm-up
        t = time.perf_counter()
        n_faces = [len(r) for _, r in rec.stream(seq, detect_every=every)]
        out[f"detect_every_{every}"] = {"ms_per_frame": round((time.perf_counter() - t) * 1e3 / frames, 3),
                                        "faces_per_frame": float(np.mean(n_faces))}
    return out


def detection_rates(before, after, crops: list[np.ndarray], crops_name: str, limit: int) -> dict:
    """Faces found with the detector as it was (full resolution) and as it is now (min_face):
    per photo of the data folder's faces/, and the share of one-face crops with a face found
    (the --data crops, and CK+48 when the data folder has it)."""
    import cv2

    from fer_edge.paths import IMAGE_SUFFIXES, data_root

    out = {"photos": {}, "crops": {}}
    root = data_root(required=False)
    if root is not None and (root / "faces").is_dir():
        for p in sorted(q for q in (root / "faces").rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES):
            img = cv2.imread(str(p))
            if img is not None:
                out["photos"][str(p.relative_to(root))] = {"before": len(before.detect(img)), "after": len(after.detect(img))}
    sets = {crops_name: crops}
    if root is not None and (root / "ckplus48").is_dir():
        from fer_edge.data import open_dataset

        ck = open_dataset("ckplus", num_classes=8)
        n = len(ck) if not limit else min(limit, len(ck))
        sets[f"ckplus48 ({n} faces)"] = [ck.image(i) for i in range(n)]
    for name, imgs in sets.items():
        found_b = np.mean([len(before.detect(im)) > 0 for im in imgs])
        found_a = np.mean([len(after.detect(im)) > 0 for im in imgs])
        out["crops"][name] = {"before": round(float(found_b), 4), "after": round(float(found_a), 4)}
    return out


def fer_package_anchor(frame: np.ndarray, repeats: int) -> dict | None:
    """The `fer` package's pipeline (Haar cascade + mini-Xception) on the same frame, if installed."""
    try:
        from fer import FER
    except Exception:  # not installed, or its TensorFlow fails to import
        return None
    detector = FER()
    return percentiles(timed(lambda: detector.detect_emotions(frame), repeats))


def run(models: list[str] | None = None, data: str = "ferplus:valid", limit: int = 0, formats: list[str] | None = None,
        batch: int = 8, camera_batch: int = 4, repeats: int = 50, threads: int | None = None, frame_path: str | None = None,
        out: str | Path = "fer_edge_benchmark", chart: bool = True, yunet: str | None = None, min_face: int = 40,
        detection: bool = True) -> dict:
    import cv2

    from fer_edge.faces import FaceDetector
    from fer_edge.runtime import Recognizer
    from fer_edge.runtime.frames import to_bgr

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = resolve_models(list(models or []), out, formats, limit)
    if not paths:
        raise ValueError("nothing to benchmark: no model form could be made on this machine")
    frame = to_bgr(frame_path) if frame_path else default_frame()
    detector = FaceDetector(yunet, min_face=min_face)
    full_res = FaceDetector(yunet, min_face=None)  # the pipeline as it was: detection at full resolution
    recs = {p.name: Recognizer(p, detector=detector, threads=threads, min_face=min_face) for p in paths}
    first = next(iter(recs.values()))
    faces, labels, data_name = load_faces(data, limit, first.classes)

    report = {"machine": machine_facts(threads), "data": data_name, "frame": frame_path or "portrait 640x480",
              "batch": batch, "camera_batch": camera_batch, "repeats": repeats, "min_face": min_face, "models": {}}
    reference = None
    for name, rec in recs.items():
        acc, pred = accuracy(rec, faces, labels)
        meta = rec.meta
        row = {"file": str(rec.model.path), "format": meta.get("format"), "precision": meta.get("precision"),
               "backend": rec.model.name, "size_mb": model_size_mb(rec.model.path), "accuracy": round(acc, 4)}
        if reference is None or (meta.get("precision") == "fp32" and reference[0] != "fp32"):
            reference = (meta.get("precision"), pred, name)
        row["_pred"] = pred
        report["models"][name] = row
    for name, row in report["models"].items():
        row["agreement_with"] = reference[2]
        row["agreement"] = round(float((row.pop("_pred") == reference[1]).mean()), 4)

    # classifier alone: batch 1 and a camera-like batch, blocks rotating across the forms
    c, s, _ = first.model.input_shape
    rng = np.random.default_rng(0)
    fns = {}
    for name, rec in recs.items():
        for b in (1, batch):
            x = rng.integers(0, 256, (b, c, s, s)).astype(np.float32)
            lm = None
            if rec.needs_landmarks:
                from fer_edge.faces.align import template

                lm = np.repeat(template(s, rec.template)[None].astype(np.float32), b, 0)
            fns[(name, b)] = (lambda r=rec, x=x, lm=lm: r.model.infer(x, lm))
    for (name, b), v in rotate(fns, repeats * 2).items():
        p = percentiles(np.asarray(v) / b)
        p["faces_per_s"] = round(1000.0 / p["p50_ms"], 1)
        report["models"][name][f"classifier_per_face_batch{b}"] = p

    # the whole pipeline, per stage, per form
    for name, rec in recs.items():
        report["models"][name]["pipeline"] = pipeline_stages(rec, frame, repeats, camera_batch)

    # anchors in the same run, on the first form
    before = Recognizer(paths[0], detector=full_res, threads=threads, min_face=None)
    report["anchors"] = {
        "pipeline_before_min_face": pipeline_stages(before, frame, repeats, camera_batch),
        "stream": stream_anchor(first, frame),
    }
    if detection:
        report["anchors"]["detection_rate"] = detection_rates(full_res, detector, faces, data_name, limit)
    fer_pkg = fer_package_anchor(frame, repeats)
    if fer_pkg is not None:
        report["anchors"]["fer_package_pipeline"] = fer_pkg
    now = report["models"][first.model.path.name]["pipeline"]["total"]["p50_ms"]
    was = report["anchors"]["pipeline_before_min_face"]["total"]["p50_ms"]
    report["anchors"]["speedup_vs_before"] = round(was / now, 2)

    stem = f"benchmark-{_slug(report['machine'].get('cpu') or 'cpu')}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    report["json"] = str(out / f"{stem}.json")
    if chart:
        report["chart"] = str(draw_chart(report, out / f"{stem}.png"))
    return report


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "cpu"


def format_table(report: dict) -> str:
    b, cb = report["batch"], report["camera_batch"]
    head = ["model", "format", "prec", "MB", "acc %", "agree %", "cls b1 p50/p99 ms", f"cls b{b} ms/face",
            "detect", "align", "infer", "post", "total p50/p90/p99", f"per frame x{cb}", "FPS"]
    rows = []
    for name, r in report["models"].items():
        p = r["pipeline"]
        c1, cb_ = r["classifier_per_face_batch1"], r[f"classifier_per_face_batch{b}"]
        rows.append([name, r["format"] or "?", r["precision"] or "?", f"{r['size_mb']:.1f}", f"{100 * r['accuracy']:.2f}",
                     f"{100 * r['agreement']:.2f}", f"{c1['p50_ms']:.3f}/{c1['p99_ms']:.3f}", f"{cb_['p50_ms']:.3f}",
                     f"{p['detect']['p50_ms']:.2f}", f"{p['align']['p50_ms']:.2f}", f"{p['infer']['p50_ms']:.2f}",
                     f"{p['post']['p50_ms']:.2f}",
                     f"{p['total']['p50_ms']:.2f}/{p['total']['p90_ms']:.2f}/{p['total']['p99_ms']:.2f}",
                     f"{p[f'per_frame_batch{cb}']['p50_ms']:.2f}", f"{p['fps']:.0f}"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    text = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    a = report["anchors"]
    was = a["pipeline_before_min_face"]
    text += ["", f"pipeline before min_face (full-resolution detection): total p50 {was['total']['p50_ms']:.2f} ms "
                 f"(detect {was['detect']['p50_ms']:.2f}) -> now {a['speedup_vs_before']:.2f}x faster",
             "stream: " + ", ".join(f"{k.replace('_', ' ')} {v['ms_per_frame']:.2f} ms/frame" for k, v in a["stream"].items())]
    if "detection_rate" in a:
        d = a["detection_rate"]
        text.append("faces found before -> after min_face: " + ", ".join(
            [f"{k} {v['before']}->{v['after']}" for k, v in d["photos"].items()]
            + [f"{k} {100 * v['before']:.1f}%->{100 * v['after']:.1f}%" for k, v in d["crops"].items()]))
    if "fer_package_pipeline" in a:
        text.append(f"fer package (Haar + mini-Xception): total p50 {a['fer_package_pipeline']['p50_ms']:.2f} ms")
    m = report["machine"]
    text += ["", f"accuracy on {report['data']}; agreement with {next(iter(report['models'].values()))['agreement_with']}; "
                 f"times in ms on {m['cpu']} ({m['cores']} cores, threads {m['threads']}), commit {m.get('commit')}"]
    return "\n".join(text)


def draw_chart(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["models"])
    stages = ("detect", "align", "infer", "post")
    fig, axes = plt.subplots(1, 2, figsize=(13, 1.2 + 0.55 * (len(names) + 1)))
    left = np.zeros(len(names) + 1)
    labels = names + ["before min_face"]
    rows = [report["models"][n]["pipeline"] for n in names] + [report["anchors"]["pipeline_before_min_face"]]
    for st in stages:
        vals = np.array([r[st]["p50_ms"] for r in rows])
        axes[0].barh(labels, vals, left=left, label=st)
        left += vals
    axes[0].set_xlabel("pipeline p50 ms per 640x480 frame, by stage")
    axes[0].legend(loc="lower right", fontsize=8)
    b = report["batch"]
    x = np.arange(len(names))
    axes[1].barh(x - 0.2, [report["models"][n]["classifier_per_face_batch1"]["p50_ms"] for n in names], 0.4, label="batch 1")
    axes[1].barh(x + 0.2, [report["models"][n][f"classifier_per_face_batch{b}"]["p50_ms"] for n in names], 0.4,
                 label=f"batch {b}")
    axes[1].set_yticks(x, [f"{n} ({100 * report['models'][n]['accuracy']:.1f}%)" for n in names])
    axes[1].set_xlabel("classifier p50 ms per face (accuracy in brackets)")
    axes[1].legend(loc="lower right", fontsize=8)
    m = report["machine"]
    fig.suptitle(f"fer-edge benchmark on {m['cpu']} ({m['cores']} cores), commit {m.get('commit')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
