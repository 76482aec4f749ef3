"""Which MIM target and pre-training learning rate give the encoder expression information?
Short pre-trainings at the same budget, each judged by the linear probe of benchmarks/encoder_probe.py
(FERPlus valid; never test). It decides pll.hog_norm / pll.hog_floor / pll.pretrain_lr before the
full 10-epoch pre-training is redone.

Why: the first MIM-HOG encoder (MaskFeat's per-cell L2 normalisation at 4 px cells, lr 1e-3)
barely beat predicting each patch's mean HOG, and its pooled probe (46.5%) was below the 12 px
pixels (51.0%). Suspects: per-cell normalisation turns flat cells of blurry 48 px faces into
unit-norm noise (hog_norm=block floors it), and lr 1e-3 at batch 64 is ~25x MAE's scaled rate.

Each setting is `fer-edge train pll --config configs/pll_ferplus.yaml optim.epochs=0` with its
overrides, written under runs/mim_target_study/<name> (a finished one is reused and an interrupted
one resumes from its last.pt), then one probe over every encoder. Writes
benchmarks/results/pll/mim-target-study.json.

    python benchmarks/mim_target_study.py --epochs 2
    python benchmarks/mim_target_study.py --epochs 2 --only cell_lr1e-3 block0.1_lr2.5e-4
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
    "cell_lr1e-3": ["pll.hog_norm=cell", "pll.pretrain_lr=0.001"],       # the first encoder's recipe
    "cell_lr2.5e-4": ["pll.hog_norm=cell", "pll.pretrain_lr=0.00025"],
    "block0.1_lr1e-3": ["pll.hog_norm=block", "pll.hog_floor=0.1", "pll.pretrain_lr=0.001"],
    "block0.1_lr2.5e-4": ["pll.hog_norm=block", "pll.hog_floor=0.1", "pll.pretrain_lr=0.00025"],
    "pixel_lr2.5e-4": ["pll.target=pixel", "pll.pretrain_lr=0.00025"],
}


def finished(run: Path, epochs: int) -> bool:
    meta = run / "encoder.json"
    return meta.exists() and json.loads(meta.read_text()).get("epochs") == epochs


def final_loss(run: Path) -> float | None:
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
    rows = [json.loads(x) for x in lines if x.strip()]
    losses = [r["mim_loss"] for r in rows if r.get("stage") == "pretrain" and "mim_loss" in r]
    return round(losses[-1], 5) if losses else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2, help="pre-training epochs per setting")
    ap.add_argument("--warmup", type=float, default=0.3, help="warm-up epochs per setting")
    ap.add_argument("--only", nargs="*", choices=sorted(SETTINGS), help="a subset of the settings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", nargs="*", default=[], help="more config overrides for every setting (e.g. a smoke run)")
    ap.add_argument("--probe-step", type=int, default=5, help="encoder_probe.py --step (every n-th training face)")
    ap.add_argument("--runs", default=str(ROOT / "runs/mim_target_study"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/pll/mim-target-study.json"))
    args = ap.parse_args(argv)
    names = args.only or list(SETTINGS)
    seconds = {}
    for name in names:
        run = Path(args.runs) / name
        if finished(run, args.epochs):
            print(f"{name}: reusing {run}")
            continue
        cmd = [sys.executable, "-m", "fer_edge.cli", "train", "pll", "--config", str(ROOT / "configs/pll_ferplus.yaml"),
               "--no-report", f"out_dir={run}", f"seed={args.seed}", "optim.epochs=0",
               f"pll.pretrain_epochs={args.epochs}", f"pll.pretrain_warmup_epochs={args.warmup}", *SETTINGS[name], *args.extra]
        print(" ".join(cmd), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT)
        seconds[name] = round(time.time() - t0, 1)
    probe_out = Path(args.out).with_name("mim-target-study-probe.json")
    encoders = [str(Path(args.runs) / n / "encoder") for n in names]
    subprocess.run([sys.executable, str(ROOT / "benchmarks/encoder_probe.py"), "--encoder", *encoders,
                    "--seed", str(args.seed), "--step", str(args.probe_step), "--out", str(probe_out)], check=True, cwd=ROOT)
    probes = json.loads(probe_out.read_text())
    rows = {}
    for name, enc in zip(names, encoders):
        rows[name] = {"overrides": SETTINGS[name], "final_mim_loss": final_loss(Path(args.runs) / name),
                      "pretrain_seconds": seconds.get(name),
                      **{kind: probes["probes"][f"{enc}:{kind}"]["valid_accuracy"] for kind in ("pooled", "tokens")}}
    doc = {"benchmark": "MIM target / pre-training lr study: short pre-trainings judged by linear probes (FERPlus valid)",
           "epochs": args.epochs, "warmup_epochs": args.warmup, "seed": args.seed,
           "command": "python benchmarks/mim_target_study.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "settings": rows,
           "controls": {k: v["valid_accuracy"] for k, v in probes["probes"].items() if not k.startswith(args.runs)},
           "prior_accuracy": probes["prior_accuracy"]}
    Path(args.out).write_text(json.dumps(doc, indent=2))
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
