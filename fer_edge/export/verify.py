"""Every export verifies itself: the written artifact is loaded through the runtime backend and
compared with the PyTorch model on real validation images."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def batched(fn, inputs: list[np.ndarray], batch: int = 64) -> np.ndarray:
    return np.concatenate([fn(*[a[i:i + batch] for a in inputs]) for i in range(0, len(inputs[0]), batch)])


def latency_ms(fn, inputs: list[np.ndarray], repeats: int = 50) -> float:
    """Median single-image latency."""
    for _ in range(5):
        fn(*inputs)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*inputs)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def compare(path: Path, precision: str, torch_logits: np.ndarray, labels: np.ndarray, inputs,
            backend: str = "auto", threads: int | None = None, decide=None) -> dict:
    """inputs: images [N, C, H, W], or [images, landmarks]; decide: logits -> labels (default arg-max)."""
    from fer_edge.runtime.backends import open_backend

    inputs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    images = inputs[0]
    decide = decide or (lambda z: z.argmax(1))
    with open_backend(path, backend, threads=threads) as b:
        logits = batched(b.infer, inputs)
        lat = latency_ms(b.infer, [a[:1] for a in inputs])
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    return {
        "file": str(path), "precision": precision, "size_mb": round(sum(f.stat().st_size for f in files) / 2**20, 3),
        "max_abs_diff": float(np.abs(logits - torch_logits).max()),
        "agreement_with_torch": float((decide(logits) == decide(torch_logits)).mean()),
        "accuracy": float((decide(logits) == labels).mean()),
        "latency_ms_batch1": round(lat, 4),
        "images": int(len(images)),
    }
