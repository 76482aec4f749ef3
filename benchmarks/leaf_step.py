"""One LEAF training step (methods.md §4) with its top-k gating done three ways, side by side:

- "default": ops.topk_gating as shipped (below SMALL_CPU_LOGITS logits on CPU it runs torch ops);
- "native": the kernel forced at every size (SMALL_CPU_LOGITS = 0);
- "torch": the fastest plain-torch formulation with the same semantics (stable sort + softmax).
Reports the step time, images/s and the gating calls' own time (forward; their backward runs
inside the step's backward). Steps use real FERPlus faces (one batch, reused), alternating.
Writes benchmarks/results/leaf/step-<threads>thread.json.

    python benchmarks/leaf_step.py
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("FER_EDGE_PROGRESS", "0")
ROOT = Path(__file__).resolve().parent.parent

from fer_edge import ops  # noqa: E402
from fer_edge.ops import _reference  # noqa: E402
from fer_edge.train import Trainer, load_config  # noqa: E402
from fer_edge.train.data_roles import stage_loader  # noqa: E402

gating = importlib.import_module("fer_edge.ops.topk_gating")


class Gating:
    """Selects the gating implementation and times its calls."""

    def __init__(self, mode: str):
        self.mode, self.ms, self._op, self._small = mode, 0.0, ops.topk_gating, gating.SMALL_CPU_LOGITS

    def __enter__(self):
        impl = {"torch": lambda z, k, return_probs=False: _reference.topk_gating(z, k, return_probs)}.get(self.mode, self._op)
        if self.mode == "native":
            gating.SMALL_CPU_LOGITS = 0

        def run(*a, **kw):
            t0 = time.perf_counter()
            try:
                return impl(*a, **kw)
            finally:
                self.ms += (time.perf_counter() - t0) * 1e3
        ops.topk_gating = run
        return self

    def __exit__(self, *exc):
        ops.topk_gating, gating.SMALL_CPU_LOGITS = self._op, self._small


def build(tmp, batch):
    cfg = load_config(ROOT / "configs/leaf_ferplus.yaml", [f"out_dir={tmp}", "eval_sets=[]", "data.limit=2000",
                                                           "data.labels_per_class=50", f"data.batch_size={batch}"],
                      method="leaf")
    trainer = Trainer(cfg)
    stage = trainer.stages[0]
    trainer._optimizer_for(stage)
    ctx = trainer._context(stage, 1, {})
    trainer.method.on_epoch_start(ctx)
    data = next(iter(stage_loader(stage, trainer.data, 0, 1, 0, 0, 1, 0)))
    trainer.net.train()
    return trainer, ctx, data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ops.set_num_threads(args.threads)
    modes = ("default", "native", "torch")
    with tempfile.TemporaryDirectory() as tmp:
        trainer, ctx, batch = build(tmp, args.batch)
        samples = {m: [] for m in modes}
        gate_ms = {m: [] for m in modes}
        for r in range(args.repeats + 2):
            for m in modes:
                with Gating(m) as g:
                    t0 = time.perf_counter()
                    loss = sum(trainer.method.train_step(ctx, batch).values())
                    trainer.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    trainer.opt.step()
                    ms = (time.perf_counter() - t0) * 1e3
                if r >= 2:
                    samples[m].append(ms)
                    gate_ms[m].append(g.ms)
    images = args.batch * 4  # labelled + two weak + one strong view per unlabelled face
    tokens = images  # one routing token per image and MoE
    row = {"batch": args.batch, "tokens_per_moe_call": tokens, "experts": trainer.method.config.experts,
           "k": trainer.method.config.k}
    for m in modes:
        ms = statistics.median(samples[m])
        row[m] = {"step_ms": round(ms, 1), "images_per_s": round(images / ms * 1e3, 1),
                  "gating_forward_ms": round(statistics.median(gate_ms[m]), 3)}
    print(json.dumps(row))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    doc = {"benchmark": "leaf training step, gating implementations", "machine": platform.node(),
           "cores": os.cpu_count(), "threads": args.threads, "torch": torch.__version__, "commit": commit,
           "repeats": args.repeats, "small_cpu_logits": gating.SMALL_CPU_LOGITS, "results": [row]}
    out = Path(args.out) if args.out else ROOT / "benchmarks/results/leaf" / f"step-{args.threads}thread.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
