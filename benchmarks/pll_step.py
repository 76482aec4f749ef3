"""Training steps of the PLL method (methods.md §2), side by side in one run:

- a MIM pre-training step with HOG targets from the native `hog` kernel vs the MaskFeat-style
  PyTorch layer (fer_edge.ops._reference.hog, what the anchors benchmark times), and the share
  of the step the target costs; a pixel-target step for comparison;
- a fine-tuning step (label-query decoder + partial labels), and with a linear head.
Images/s of each (batch --batch at 48 px gray) is what sizes the epochs a 2-core run affords.
Steps run on real FERPlus training faces (one batch, reused), alternating the configurations;
each number is the median over --repeats. Writes benchmarks/results/pll/step-<threads>thread.json.

    python benchmarks/pll_step.py
    python benchmarks/pll_step.py --depths 6 12 --patches 8 6
"""
from __future__ import annotations

import argparse
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


class HogTimer:
    """Times every ops.hog call; with torch_layer=True, swaps in the MaskFeat-style torch layer."""

    def __init__(self, torch_layer: bool):
        self.ms, self.torch_layer, self._real = 0.0, torch_layer, ops.hog

    def __enter__(self):
        impl = _reference.hog if self.torch_layer else self._real

        def run(*a, **kw):
            t0 = time.perf_counter()
            try:
                return impl(*a, **kw)
            finally:
                self.ms += (time.perf_counter() - t0) * 1e3
        ops.hog = run
        return self

    def __exit__(self, *exc):
        ops.hog = self._real


def build(overrides, tmp, stage_name):
    cfg = load_config(ROOT / "configs/pll_ferplus.yaml", [f"out_dir={tmp}", "eval_sets=[]", "data.limit=512",
                                                          "pll.pretrain_epochs=1", *overrides], method="pll")
    trainer = Trainer(cfg)
    stage = next(s for s in trainer.stages if s.name == stage_name)
    trainer.epoch = 0 if stage_name == "pretrain" else 1
    trainer._optimizer_for(stage)
    steps = trainer._steps(stage)
    ctx = trainer._context(stage, steps, {})
    trainer.method.setup(ctx)
    batch = next(iter(stage_loader(stage, trainer.data, trainer.epoch, steps, 0, 0, 1, 0)))
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
    ap.add_argument("--depths", nargs="+", type=int, default=[6])
    ap.add_argument("--patches", nargs="+", type=int, default=[8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ops.set_num_threads(args.threads)
    results = []
    for depth in args.depths:
        for patch in args.patches:
            common = [f"pll.depth={depth}", f"pll.patch={patch}", f"pll.hog_cell={patch // 2}",
                      f"data.batch_size={args.batch}", f"threads={args.threads}"]
            configs = {  # name -> (overrides, stage, torch HOG layer)
                "pretrain_hog_native": ([], "pretrain", False),
                "pretrain_hog_torch_layer": ([], "pretrain", True),
                "pretrain_pixel": (["pll.target=pixel"], "pretrain", False),
                "finetune_decoder": ([], "finetune", False),
                "finetune_linear_head": (["pll.decoder=false"], "finetune", False),
            }
            with tempfile.TemporaryDirectory() as tmp:
                built = {n: build([*common, *ov], Path(tmp) / n, st) for n, (ov, st, _) in configs.items()}
                samples = {n: [] for n in built}
                target = {n: [] for n in built}
                for r in range(args.repeats + 2):
                    for name, (tr, ctx, batch) in built.items():
                        ctx.step = r
                        with HogTimer(configs[name][2]) as ht:
                            t0 = time.perf_counter()
                            step(tr, ctx, batch)
                            ms = (time.perf_counter() - t0) * 1e3
                        if r >= 2:  # warm-up
                            samples[name].append(ms)
                            target[name].append(ht.ms)
            row = {"depth": depth, "patch": patch, "tokens": (48 // patch) ** 2, "batch": args.batch}
            for name in built:
                ms = statistics.median(samples[name])
                row[name] = {"step_ms": round(ms, 1), "images_per_s": round(args.batch / ms * 1e3, 1),
                             "hog_target_ms": round(statistics.median(target[name]), 2),
                             "hog_target_share": round(statistics.median(target[name]) / ms, 4)}
            row["hog_native_speedup_in_step"] = round(row["pretrain_hog_torch_layer"]["hog_target_ms"]
                                                      / max(row["pretrain_hog_native"]["hog_target_ms"], 1e-9), 1)
            results.append(row)
            print(json.dumps(row), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    doc = {"benchmark": "pll training steps", "machine": platform.node(), "cores": os.cpu_count(),
           "threads": args.threads, "torch": torch.__version__, "commit": commit, "repeats": args.repeats,
           "results": results}
    out = Path(args.out) if args.out else ROOT / "benchmarks/results/pll" / f"step-{args.threads}thread.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
