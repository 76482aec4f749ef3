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

import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import Timed, stage_fixture, step_parser, time_steps, use_threads, write  # noqa: E402

from fer_edge import ops  # noqa: E402
from fer_edge.ops import _reference  # noqa: E402

CONFIGS = {  # name -> (overrides, stage, HOG implementation: None = the native op)
    "pretrain_hog_native": ([], "pretrain", None),
    "pretrain_hog_torch_layer": ([], "pretrain", _reference.hog),
    "pretrain_pixel": (["pll.target=pixel"], "pretrain", None),
    "finetune_decoder": ([], "finetune", None),
    "finetune_linear_head": (["pll.decoder=false"], "finetune", None),
}


def main(argv=None):
    ap = step_parser(__doc__, batch=64, repeats=10)
    ap.add_argument("--depths", nargs="+", type=int, default=[6])
    ap.add_argument("--patches", nargs="+", type=int, default=[8])
    args = ap.parse_args(argv)
    use_threads(args.threads)
    results = []
    for depth in args.depths:
        for patch in args.patches:
            common = [f"pll.depth={depth}", f"pll.patch={patch}", f"pll.hog_cell={patch // 2}", "pll.pretrain_epochs=1",
                      f"data.batch_size={args.batch}", f"threads={args.threads}", "data.limit=512"]
            with tempfile.TemporaryDirectory() as tmp:
                built = {n: stage_fixture("configs/pll_ferplus.yaml", "pll", [*common, *ov], Path(tmp) / n, st)
                         for n, (ov, st, _) in CONFIGS.items()}
                samples, target = time_steps(built, args.repeats, lambda n: [Timed(ops, "hog", CONFIGS[n][2])])
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
    write({"benchmark": "pll training steps", "repeats": args.repeats, "results": results}, "pll", args.threads, args.out)


if __name__ == "__main__":
    main()
