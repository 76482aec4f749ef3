"""One CAFE training step (methods.md §5) with its channel separation done two ways, side by side:

- "baseline": the mask generator trained as a plain classifier (no encoder, no separation);
- "full_native": frozen encoder + mask + separation + diverse loss, `ops.chanpool_max` as shipped;
- "full_torch": the same step with the PyTorch formulation of the channel max (drop channels by
  masked_fill to -inf, max over each group, autograd's own backward).

The encoder is the "random" one: the MIM-HOG ViT's shape (what a step costs does not depend on
its weights). Steps use real FERPlus faces (one batch, reused), alternating the modes step by step;
numbers are medians over --repeats steps. The channel max's own forward is timed inside the step;
its forward + backward, with a fresh drop mask, is also timed alone at the step's feature size
(both calls of a step: L_sep with the drop mask and L_div without). Writes
benchmarks/results/cafe/step-<threads>thread.json.

    python benchmarks/cafe_step.py
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import Timed, stage_fixture, step_parser, time_steps, use_threads, write  # noqa: E402

from fer_edge import ops  # noqa: E402
from fer_edge.ops import _reference  # noqa: E402
from fer_edge.train.methods.cafe import drop_mask  # noqa: E402

VARIANTS = {
    "baseline": ["cafe.encoder=none", "cafe.separation=false", "cafe.diverse=false"],
    "full_native": ["cafe.encoder=random"],
    "full_torch": ["cafe.encoder=random"],
}
IMPLS = {"full_torch": lambda x, sizes, drop=None: _reference.chanpool_max(x, sizes, drop)}


def separation_alone(batch: int, channels: int, classes: int, repeats: int) -> dict:
    """Forward + backward of a step's two channel maxes (with and without the drop mask) on a
    [batch, channels] feature, native vs torch; medians in ms."""
    sizes = ops.even_groups(channels, classes)
    out = {}
    impls = {"native": ops.chanpool_max, "torch": lambda x, s, d=None: _reference.chanpool_max(x, s, d)}
    samples = {k: [] for k in impls}
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, channels)
    for r in range(repeats + 5):
        drop = drop_mask(sizes, 0.137, g)
        for name, fn in impls.items():
            x = x0.clone().requires_grad_(True)
            t0 = time.perf_counter()
            (fn(x, sizes, drop).logsumexp(1).mean() + fn(x, sizes).mean()).backward()
            ms = (time.perf_counter() - t0) * 1e3
            if r >= 5:
                samples[name].append(ms)
    for name in impls:
        out[f"{name}_ms"] = round(statistics.median(samples[name]), 4)
    out["native_speedup"] = round(out["torch_ms"] / max(out["native_ms"], 1e-9), 2)
    out["group_sizes"] = sizes
    return out


def main(argv=None):
    ap = step_parser(__doc__, batch=64)
    args = ap.parse_args(argv)
    use_threads(args.threads)
    common = [f"data.batch_size={args.batch}", f"threads={args.threads}", "data.limit=512"]
    with tempfile.TemporaryDirectory() as tmp:
        built = {n: stage_fixture("configs/cafe_ferplus.yaml", "cafe", [*common, *ov], Path(tmp) / n)
                 for n, ov in VARIANTS.items()}
        samples, pool = time_steps(built, args.repeats, lambda n: [Timed(ops, "chanpool_max", IMPLS.get(n))])
        tr, _, batch = built["full_native"]
        with torch.no_grad():
            _, f = tr.model(batch["image"], with_features=True)
        channels, classes = f.shape[1], tr.model.fc.out_features
    row = {"batch": args.batch, "features": channels, "classes": classes}
    for name in built:
        ms = statistics.median(samples[name])
        row[name] = {"step_ms": round(ms, 2), "images_per_s": round(args.batch / ms * 1e3, 1),
                     "chanpool_forward_ms": round(statistics.median(pool[name]), 4)}
    row["full_over_baseline_step"] = round(row["full_native"]["step_ms"] / row["baseline"]["step_ms"], 3)
    row["separation_forward_backward"] = alone = separation_alone(args.batch, channels, classes, max(args.repeats, 50))
    row["separation_share_of_full_step"] = round(alone["native_ms"] / row["full_native"]["step_ms"], 5)
    print(json.dumps(row), flush=True)
    write({"benchmark": "cafe training step", "repeats": args.repeats, "results": [row]}, "cafe", args.threads, args.out)


if __name__ == "__main__":
    main()
