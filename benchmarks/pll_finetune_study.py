"""Which fine-tuning learning rate and layer decay should the pll recipe use for its ViT?
Short fine-tunings on the first N training faces (all of FERPlus valid to judge; never test), each
from the same pre-trained encoder, full PLL labels and the label-query decoder. It decides optim.lr
and pll.layer_decay in configs/pll_ferplus.yaml before the recipe's seeds are run.

Why: the first full fine-tuning (AdamW 5e-4, no layer decay) was stopped at the class prior; the
decoder's queries were fixed since, but the rate was never chosen. MAE fine-tunes a ViT at ~1e-4-ish
effective rates with layer decay 0.65-0.75, and our encoder is small (6 blocks) and weakly pre-trained.

Each setting is `fer-edge train pll --config configs/pll_ferplus.yaml pll.pretrain_epochs=0
pll.encoder=<encoder> data.limit=<N> optim.epochs=<E> optim.warmup_epochs=<W>` with its overrides, under
runs/pll_finetune_study/<name> (finished runs are reused, interrupted ones resume). Writes
benchmarks/results/pll/finetune-study.json: valid accuracy per epoch, last and best.

    python benchmarks/pll_finetune_study.py --encoder benchmarks/results/pll/mim_hog/encoder
    python benchmarks/pll_finetune_study.py --encoder none --only lr2.5e-4   # the same from scratch
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import ROOT  # noqa: E402

SETTINGS = {
    "lr5e-4": ["optim.lr=0.0005", "pll.layer_decay=1.0"],       # the config's rate before this study
    "lr2.5e-4": ["optim.lr=0.00025", "pll.layer_decay=1.0"],
    "lr1e-4": ["optim.lr=0.0001", "pll.layer_decay=1.0"],
    "lr5e-4_ld0.75": ["optim.lr=0.0005", "pll.layer_decay=0.75"],
    "lr2.5e-4_ld0.75": ["optim.lr=0.00025", "pll.layer_decay=0.75"],
}


def epochs_done(run: Path) -> list[dict]:
    f = run / "metrics.jsonl"
    rows = [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []
    return [r for r in rows if r.get("stage") == "finetune" and "val_acc" in r]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", required=True, help="a saved encoder (pll.encoder), or 'none' for from scratch")
    ap.add_argument("--limit", type=int, default=4000,
                    help="the first N training faces (data.limit also cuts the selection split: keep it >= 3,580, "
                         "FERPlus valid's size, to judge on all of valid)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=0.5, help="warm-up epochs")
    ap.add_argument("--only", nargs="*", choices=sorted(SETTINGS), help="a subset of the settings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", nargs="*", default=[], help="more config overrides for every setting (e.g. a smoke run)")
    ap.add_argument("--runs", default=str(ROOT / "runs/pll_finetune_study"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/pll/finetune-study.json"))
    args = ap.parse_args(argv)
    names = args.only or list(SETTINGS)
    tag = "scratch" if args.encoder == "none" else Path(args.encoder).parent.name or "encoder"
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc.update({"benchmark": "PLL fine-tuning lr / layer-decay study: short runs judged on FERPlus valid",
                "limit": args.limit, "epochs": args.epochs, "warmup_epochs": args.warmup, "seed": args.seed})
    rows = doc.setdefault("settings", {})
    for name in names:
        run = Path(args.runs) / f"{tag}_{name}"
        encoder = [] if args.encoder == "none" else [f"pll.encoder={args.encoder}"]
        t0, seconds = time.time(), None
        if len(epochs_done(run)) < args.epochs:
            cmd = [sys.executable, "-m", "fer_edge.cli", "train", "pll", "--config", str(ROOT / "configs/pll_ferplus.yaml"),
                   "--no-report", f"out_dir={run}", f"seed={args.seed}", "pll.pretrain_epochs=0", *encoder,
                   f"data.limit={args.limit}", f"optim.epochs={args.epochs}", f"optim.warmup_epochs={args.warmup}",
                   "eval_sets=[]", *SETTINGS[name], *args.extra]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT)
            seconds = round(time.time() - t0, 1)
        done = epochs_done(run)
        valid = [round(100 * r["val_acc"], 2) for r in done]
        rows[f"{tag}:{name}"] = {"encoder": args.encoder, "overrides": SETTINGS[name], "valid_by_epoch": valid,
                                 "valid_last": valid[-1], "valid_best": max(valid),
                                 "train_acc_last": round(100 * done[-1].get("train_acc", float("nan")), 2),
                                 "seconds": seconds}
        out.write_text(json.dumps(doc, indent=2))
        print(f"{tag}:{name}: valid by epoch {valid}", flush=True)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
