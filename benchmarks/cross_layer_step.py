"""One training step of the cross-layer contrastive method (methods.md §3), side by side in one run:

- the plain baseline step (CLBS, CLFM and MSR off) vs the full method, with the native k-means
  kernels vs their batched PyTorch twin (same k-means++ draws, same iterations);
- the share of the full step that the clustering (kmeans_cosine + assign_cosine) costs;
- optionally other stems / input sizes (--stems, --sizes) to price a wider deepest map.

Steps run on real FERPlus training faces (one batch, reused), alternating the configurations
step by step so machine noise hits them alike; each number is the median over --repeats steps.
Writes benchmarks/results/cross_layer/step-<machine>.json.

    python benchmarks/cross_layer_step.py                          # batch 64, s2 stem, 48 px
    python benchmarks/cross_layer_step.py --stems s2 s1 --sizes 48 64
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("FER_EDGE_PROGRESS", "0")
ROOT = Path(__file__).resolve().parent.parent

from fer_edge import ops  # noqa: E402
from fer_edge.train import Trainer, load_config  # noqa: E402
from fer_edge.train import cross_layer as losses  # noqa: E402
from fer_edge.train.data_roles import stage_loader  # noqa: E402

VARIANTS = {
    "baseline": ["cross_layer.clbs=false", "cross_layer.clfm=false", "cross_layer.msr=none"],
    "full_native": ["cross_layer.kmeans_impl=native"],
    "full_torch_kmeans": ["cross_layer.kmeans_impl=torch"],
}


class ClusterTimer:
    """Wraps the losses' k-means and assignment calls to add up their wall time."""

    def __init__(self):
        self.ms = 0.0
        self._km, self._as = losses._kmeans, losses._assign

    def __enter__(self):
        def timed(fn):
            def run(*a, **kw):
                t0 = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    self.ms += (time.perf_counter() - t0) * 1e3
            return run
        losses._kmeans, losses._assign = timed(self._km), timed(self._as)
        return self

    def __exit__(self, *exc):
        losses._kmeans, losses._assign = self._km, self._as


def build(overrides, tmp):
    cfg = load_config(ROOT / "configs/cross_layer_ferplus.yaml", [f"out_dir={tmp}", "eval_sets=[]", "data.limit=512",
                                                                  *overrides], method="cross_layer")
    trainer = Trainer(cfg)
    stage = trainer.stages[0]
    trainer._optimizer_for(stage)
    steps = trainer._steps(stage)
    ctx = trainer._context(stage, steps, {})
    batch = next(iter(stage_loader(stage, trainer.data, 0, steps, 0, 0, 1, 0)))
    trainer.net.train()
    return trainer, ctx, batch


def step(trainer, ctx, batch):
    terms = trainer.method.train_step(ctx, batch)
    loss = sum(terms.values())
    trainer.opt.zero_grad(set_to_none=True)
    loss.backward()
    trainer.opt.step()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--stems", nargs="+", default=["s2"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[48])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ops.set_num_threads(args.threads)
    import tempfile

    results = []
    for stem in args.stems:
        for size in args.sizes:
            common = [f"model.stem={stem}", f"data.image_size={size}", f"data.batch_size={args.batch}",
                      f"threads={args.threads}"]
            built = {}
            with tempfile.TemporaryDirectory() as tmp:
                for name, ov in VARIANTS.items():
                    built[name] = build([*common, *ov], Path(tmp) / name)
                for name, (tr, ctx, batch) in built.items():  # warm-up
                    for _ in range(2):
                        step(tr, ctx, batch)
                samples = {n: [] for n in built}
                cluster = {n: [] for n in built}
                for r in range(args.repeats):
                    for name, (tr, ctx, batch) in built.items():
                        ctx.step = r  # fresh k-means++ draws per step, as in training
                        with ClusterTimer() as ct:
                            t0 = time.perf_counter()
                            step(tr, ctx, batch)
                            samples[name].append((time.perf_counter() - t0) * 1e3)
                        cluster[name].append(ct.ms)
            maps = [tuple(m.shape[1:]) for m in built["baseline"][0].model(built["baseline"][2]["image"])["maps"]]
            row = {"stem": stem, "image_size": size, "batch": args.batch, "stage_maps": maps}
            for name in built:
                ms = statistics.median(samples[name])
                row[name] = {"step_ms": round(ms, 2), "images_per_s": round(args.batch / ms * 1e3, 1),
                             "clustering_ms": round(statistics.median(cluster[name]), 2)}
                row[name]["clustering_share"] = round(row[name]["clustering_ms"] / ms, 4)
            row["native_kmeans_speedup_in_step"] = round(row["full_torch_kmeans"]["clustering_ms"]
                                                         / max(row["full_native"]["clustering_ms"], 1e-9), 2)
            row["full_over_baseline_step"] = round(row["full_native"]["step_ms"] / row["baseline"]["step_ms"], 3)
            results.append(row)
            print(json.dumps(row))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    doc = {"benchmark": "cross_layer training step", "machine": platform.node(), "cpu": platform.processor(),
           "cores": os.cpu_count(), "threads": args.threads, "torch": torch.__version__, "commit": commit,
           "repeats": args.repeats, "results": results}
    out = Path(args.out) if args.out else ROOT / "benchmarks/results/cross_layer" / f"step-{args.threads}thread.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
