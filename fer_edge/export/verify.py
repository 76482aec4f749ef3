"""Every export verifies itself: the written artifact is loaded through the runtime backend and
compared with the PyTorch model on real validation images."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def batched(fn, images: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([fn(images[i:i + batch]) for i in range(0, len(images), batch)])


def latency_ms(fn, image: np.ndarray, repeats: int = 50) -> float:
    """Median single-image latency."""
    for _ in range(5):
        fn(image)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(image)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def compare(path: Path, precision: str, torch_logits: np.ndarray, labels: np.ndarray, images: np.ndarray,
            backend: str = "auto", threads: int | None = None) -> dict:
    from fer_edge.runtime.backends import open_backend

    with open_backend(path, backend, threads=threads) as b:
        logits = batched(b.infer, images)
        lat = latency_ms(b.infer, images[:1])
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    return {
        "file": str(path), "precision": precision, "size_mb": round(sum(f.stat().st_size for f in files) / 2**20, 3),
        "max_abs_diff": float(np.abs(logits - torch_logits).max()),
        "agreement_with_torch": float((logits.argmax(1) == torch_logits.argmax(1)).mean()),
        "accuracy": float((logits.argmax(1) == labels).mean()),
        "latency_ms_batch1": round(lat, 4),
        "images": int(len(images)),
    }
