#!/usr/bin/env python3
"""TensorRT engines of the shipped ONNX model, checked against ONNX Runtime (benchmarks/gpu_check.sh).

    python benchmarks/gpu_models.py --out gpu_check [--faces 512]

Builds an FP16 engine from fer_edge/assets/default.onnx (its metadata carried over), runs it and
the ONNX file on the same faces (FERPlus valid when FER_EDGE_DATA holds it, else seeded random
pixels, said so in the output) and writes <out>/gpu_models.json: agreement of labels, max |d| of
logits, and batch-1 / batch-32 latency of both."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fer_edge import metadata as md
from fer_edge.export.tensorrt_export import build_engine
from fer_edge.runtime.backends import open_backend

ASSETS = Path(__file__).resolve().parents[1] / "fer_edge" / "assets"


def faces(n: int, shape) -> tuple[np.ndarray, str]:
    try:
        from fer_edge.data import open_dataset

        ds = open_dataset("ferplus", "valid")
        return np.stack([ds[i]["image"][None] for i in range(min(n, len(ds)))]).astype(np.float32), "FERPlus valid"
    except Exception as exc:  # no data folder on this machine
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, *shape)).astype(np.float32), f"random pixels ({type(exc).__name__})"


def latency(fn, x, repeats: int = 50) -> float:
    for _ in range(5):
        fn(x)
    t = []
    for _ in range(repeats):
        s = time.perf_counter()
        fn(x)
        t.append((time.perf_counter() - s) * 1e3)
    return float(np.median(t))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("gpu_check"))
    ap.add_argument("--faces", type=int, default=512)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import onnx

    src = ASSETS / "default.onnx"
    model = onnx.load(str(src))
    meta = md.upgrade(json.loads({p.key: p.value for p in model.metadata_props}[md.ONNX_KEY]), str(src))
    meta = dict(meta, format="tensorrt", precision="fp16")
    engine = args.out / "default.fp16.engine"
    build_engine(src.read_bytes(), meta, engine, "fp16", (1, 8, 32), 1024, args.out / "timing.cache")
    x, what = faces(args.faces, meta["input"])
    report = {"source": str(src), "faces": what, "count": len(x)}
    with open_backend(src) as ort, open_backend(engine) as trt:
        a = np.concatenate([ort.infer(x[i:i + 64]) for i in range(0, len(x), 64)])
        b = np.concatenate([trt.infer(x[i:i + 100]) for i in range(0, len(x), 100)])  # 100 > profile max 32: chunks
        report.update(agreement=float((a.argmax(1) == b.argmax(1)).mean()), max_abs_diff=float(np.abs(a - b).max()),
                      latency_ms={"onnxruntime_b1": latency(ort.infer, x[:1]), "tensorrt_b1": latency(trt.infer, x[:1]),
                                  "onnxruntime_b32": latency(ort.infer, x[:32]), "tensorrt_b32": latency(trt.infer, x[:32])})
    (args.out / "gpu_models.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if report["agreement"] >= 0.99 else 1


if __name__ == "__main__":
    raise SystemExit(main())
