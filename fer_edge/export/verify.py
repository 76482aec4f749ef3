"""Every export verifies itself: the written artifact is loaded through the runtime backend and
compared with the PyTorch model on real validation images."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


FP32_TOLERANCE = 1e-2  # of the logits' range (at least 1): TF32 and fused kernels stay far below it


def _call(backend, inputs: dict[str, np.ndarray]) -> np.ndarray:
    rest = {k: v for k, v in inputs.items() if k != "pixels"}
    return backend.infer(inputs["pixels"], **rest)


def batched(backend, inputs: dict[str, np.ndarray], batch: int = 64) -> np.ndarray:
    n = len(inputs["pixels"])
    return np.concatenate([_call(backend, {k: v[i:i + batch] for k, v in inputs.items()}) for i in range(0, n, batch)])


def latency_ms(backend, inputs: dict[str, np.ndarray], repeats: int = 50) -> float:
    """Median single-image latency."""
    for _ in range(5):
        _call(backend, inputs)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        _call(backend, inputs)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def compare(path: Path, precision: str, torch_logits: np.ndarray, labels: np.ndarray, inputs,
            backend: str = "auto", threads: int | None = None, decide=None) -> dict:
    """inputs: images [N, C, H, W], or {input name: array} with "pixels"; decide: logits -> labels
    (default arg-max). Non-finite outputs fail the verification."""
    from fer_edge.runtime.backends import open_backend

    inputs = {"pixels": inputs} if isinstance(inputs, np.ndarray) else dict(inputs)
    images = inputs["pixels"]
    decide = decide or (lambda z: z.argmax(1))
    with open_backend(path, backend, threads=threads) as b:
        logits = batched(b, inputs)
        if not np.isfinite(logits).all():
            raise ValueError(f"{path}: the exported model gives non-finite outputs on the validation images")
        lat = latency_ms(b, {k: v[:1] for k, v in inputs.items()})
    diff = float(np.abs(logits - torch_logits).max())
    if precision == "fp32" and diff > FP32_TOLERANCE * max(1.0, float(np.abs(torch_logits).max())):
        # an FP32 artifact computes the PyTorch function up to rounding; more than this is a converter or
        # runtime fault (e.g. a wrong fusion) that would ship a different model under the same name
        changed = float((decide(logits) != decide(torch_logits)).mean())
        raise ValueError(f"{path}: the FP32 export does not compute what the PyTorch model does (max |logit "
                         f"difference| {diff:.3g}, {100 * changed:.1f}% of {len(images)} validation faces change "
                         "label); a converter or runtime fault, do not deploy this file")
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    return {
        "file": str(path), "precision": precision, "size_mb": round(sum(f.stat().st_size for f in files) / 2**20, 3),
        "max_abs_diff": diff,
        "agreement_with_torch": float((decide(logits) == decide(torch_logits)).mean()),
        "accuracy": float((decide(logits) == labels).mean()),
        "latency_ms_batch1": round(lat, 4),
        "images": int(len(images)),
    }
