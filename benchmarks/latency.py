"""Runtime latency: per stage (detect, align, infer, total) for every exported artifact, with the
anchors (PyTorch eager and ONNX Runtime FP32 of the same model) in the same run.

    python benchmarks/latency.py --checkpoint runs/baseline_ferplus/best.pt --exports exports --name baseline_ferplus
    python benchmarks/latency.py ... --soak 10000      # memory over a 10,000-frame stream

Frames are the real photos in $FER_EDGE_DATA/faces resized to 640x480 and 1280x720 (one face:
a portrait; several: the group photo). Stages are timed separately on the same frames;
"total" is Recognizer.predict end to end. Writes JSON and a PNG chart to benchmarks/results/.
The same script runs on a Jetson with .engine files in --exports.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fer_edge.benchmark import percentiles as shared_percentiles, timed  # noqa: E402  (one timing loop for both)


def percentiles(samples_ms: list[float]) -> dict:
    """fer_edge.benchmark's percentiles (rounded to the microsecond) plus the FPS of the median."""
    out = shared_percentiles(samples_ms)
    out["fps"] = float(1000.0 / np.median(samples_ms))
    return out


def frames(data_root: Path) -> dict[str, np.ndarray]:
    portrait = cv2.imread(str(data_root / "faces" / "test_images" / "paul_rudd" / "1.jpg"))
    group = cv2.imread(str(data_root / "faces" / "multiface.jpg"))
    out = {}
    for name, img in (("one_face", portrait), ("six_faces", group)):
        for w, h in ((640, 480), (1280, 720)):
            out[f"{name}_{w}x{h}"] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return out


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="the source checkpoint (PyTorch eager anchor); omit on machines without torch")
    p.add_argument("--exports", required=True, help="folder of exported artifacts")
    p.add_argument("--name", required=True, help="artifact stem, e.g. baseline_ferplus")
    p.add_argument("--also", nargs="*", default=[], help="more model files timed in the same run, side by side "
                   "(e.g. fer_edge/assets/default.onnx: the shipped model as the anchor for a new method)")
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--soak", type=int, default=0, help="also stream this many frames and record memory")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--tag", default=platform.node() or "machine")
    args = p.parse_args(argv)

    from fer_edge.paths import data_root
    from fer_edge.faces import FaceDetector, align
    from fer_edge.faces.align import template
    from fer_edge.runtime import Recognizer

    root = data_root()
    detector = FaceDetector()
    exports = Path(args.exports)
    models = sorted(q for q in exports.iterdir() if q.name.startswith(args.name + ".") and q.suffix in (".onnx", ".xml", ".engine"))
    models += [Path(q) for q in args.also]
    recs = {q.name: Recognizer(q, detector=detector, threads=args.threads) for q in models}
    test_frames = frames(root)
    results = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "threads": args.threads},
               "repeats": args.repeats, "frames": {}, "classifier_per_face": {}}
    # anchors: PyTorch eager on the same graph (needs torch; skipped where it is absent)
    torch_graph = None
    if args.checkpoint:
        import torch

        from fer_edge.export.api import load_for_export
        from fer_edge.export.graph import InferenceGraph

        torch.set_num_threads(args.threads)
        model, method, _, state = load_for_export(args.checkpoint)
        torch_graph = InferenceGraph(model, state["mean"], state["std"], method.predict).eval()
    def one_face(r):
        """A face of the model's own input shape; landmark models (AGLRLS) also take the face's 5
        points: the template's, as for an aligned face."""
        c, s, _ = r.model.input_shape
        x = np.random.default_rng(0).integers(0, 256, (1, c, s, s)).astype(np.float32)
        return x, (template(s, r.template)[None].astype(np.float32) if r.needs_landmarks else None)

    any_rec = recs[models[0].name]
    face, points = one_face(any_rec)
    s = any_rec.model.input_shape[1]
    # classifier alone, one face, alternating across implementations
    impls = {name: (lambda r=r, xp=one_face(r): r.model.infer(*xp)) for name, r in recs.items()}
    if torch_graph is not None:
        import torch

        xt = [torch.from_numpy(face)] + ([torch.from_numpy(points)] if points is not None else [])

        def eager():
            with torch.no_grad():
                torch_graph(*xt)

        impls["pytorch_eager_fp32"] = eager
    # rotate blocks of 10 calls: per-call alternation would time each runtime against the
    # previous one's spinning worker threads rather than on its own
    samples = {k: [] for k in impls}
    for _ in range(max(1, args.repeats // 10)):
        for k, fn in impls.items():
            samples[k] += timed(fn, 10, warmup=2)
    results["classifier_per_face"] = {k: percentiles(v) for k, v in samples.items()}
    anchor = results["classifier_per_face"].get(f"{args.name}.fp32.onnx")
    for k, v in results["classifier_per_face"].items():
        if anchor:
            v["speedup_vs_onnxruntime_fp32"] = anchor["p50_ms"] / v["p50_ms"]
        print(f"classifier {k:32s} p50 {v['p50_ms']:.3f} ms  p99 {v['p99_ms']:.3f} ms")
    # the pipeline per frame: stages and total, per model
    for fname, frame in test_frames.items():
        faces = detector.detect(frame)
        row = {"faces": len(faces), "detect": percentiles(timed(lambda: detector.detect(frame), args.repeats // 2))}
        tmpl = any_rec.template
        row["align"] = percentiles(timed(lambda: [align(frame, f.landmarks, s, template_name=tmpl) for f in faces], args.repeats // 2))
        for name, r in recs.items():
            x, lm, _faces = r.crops(frame)
            lm = lm if r.needs_landmarks else None
            row[f"infer {name}"] = percentiles(timed(lambda: r.model.infer(x, lm) if len(x) else None, args.repeats // 2))
            row[f"total {name}"] = percentiles(timed(lambda: r.predict(frame), args.repeats // 2))
        results["frames"][fname] = row
        totals = "  ".join(f"{k[6:]}={v['p50_ms']:.2f}" for k, v in row.items() if k.startswith("total"))
        print(f"{fname:22s} faces {row['faces']}  detect {row['detect']['p50_ms']:.2f} ms  align {row['align']['p50_ms']:.2f} ms  total p50 ms: {totals}")
    if args.soak:
        r = next(iter(recs.values()))
        frame = test_frames["one_face_640x480"]
        before = rss_mb()
        marks = []
        for k, _ in enumerate(r.stream(frame for _ in range(args.soak))):
            if k % max(1, args.soak // 10) == 0:
                marks.append(round(rss_mb(), 1))
        results["soak"] = {"frames": args.soak, "rss_mb_before": round(before, 1), "rss_mb_marks": marks,
                           "rss_mb_after": round(rss_mb(), 1)}
        print(f"soak {args.soak} frames: RSS {before:.1f} -> {rss_mb():.1f} MB (marks {marks})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"latency-{args.tag}-{args.name}.json"
    path.write_text(json.dumps(results, indent=2))
    chart(results, out / f"latency-{args.tag}-{args.name}.png")
    print(f"wrote {path}")
    return 0


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = results["frames"].get("one_face_640x480") or next(iter(results["frames"].values()))
    totals = {k[6:]: v["p50_ms"] for k, v in frame.items() if k.startswith("total")}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    cls = results["classifier_per_face"]
    axes[0].barh(list(cls), [v["p50_ms"] for v in cls.values()])
    axes[0].set_xlabel("classifier p50 ms per face")
    axes[1].barh(list(totals), list(totals.values()))
    axes[1].set_xlabel("whole pipeline p50 ms, 640x480, one face")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
