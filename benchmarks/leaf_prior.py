"""How much of a semi-supervised gain is the unlabelled pool's class mix? (LEAF results, README)

Every LEAF-recipe variant trains on a balanced labelled draw (100 faces a class) and is tested on
FERPlus test, which is not balanced (neutral 34.5%, happiness 28.4%, disgust 0.5%). Ada-CM beat
supervised-only by 3.8 points while mean class accuracy stayed flat, which suggests the semi-
supervised models learn the pool's prior rather than better features. This asks it directly:
each checkpoint's posteriors on the unlabelled pool (no labels read) give an EM estimate of the
pool's prior (Saerens et al. 2002, `fer_edge.train.metrics.label_shift_prior`, source prior =
the labelled draw's), and the test posteriors are reweighted by it. If a supervised model with
this correction matches the semi-supervised ones, their gain was the prior.

The pool's hidden labels are read only to print its true prior beside the estimate. Writes
<out> (JSON) and prints a table.

    python benchmarks/leaf_prior.py runs/leaf/adacm_ambiguous/seed1 runs/prior/supervised_seed1 \\
        --out benchmarks/results/leaf/prior_shift.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fer_edge import decisions
from fer_edge.train.metrics import confusion_matrix, label_shift_prior, summarize
from fer_edge.train.trainer import trainer_from_checkpoint


def scores(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    s = summarize(confusion_matrix(labels, probs.argmax(1), len(classes)), classes)
    share = np.bincount(probs.argmax(1), minlength=len(classes)) / len(labels)
    return {"accuracy": s["accuracy"], "mean_class_accuracy": s["mean_class_accuracy"],
            "per_class_accuracy": s["per_class_accuracy"], "prediction_share": share.round(4).tolist()}


def study(run: Path) -> dict:
    ckpt = run / "best.pt" if (run / "best.pt").is_file() else run / "last.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{run}: no best.pt or last.pt (runs/ is scratch: train the run first)")
    tr = trainer_from_checkpoint(ckpt)
    state = tr.load_checkpoint(ckpt)
    classes = tr.classes
    labelled = np.asarray(tr.data.role("labelled").labels)
    source = np.bincount(labelled, minlength=len(classes)) / len(labelled)
    pool_faces = tr.data.role("unlabelled")
    pool = decisions.softmax(tr.predict(pool_faces))
    prior, _ = label_shift_prior(pool, source)
    pool_truth = np.bincount(np.asarray(pool_faces.labels), minlength=len(classes)) / len(pool_faces)
    out = {"run": str(run), "checkpoint": ckpt.name, "epoch": state.get("best_epoch"), "seed": tr.cfg.seed,
           "labelled_faces": int(len(labelled)), "pool_faces": int(len(pool_faces)),
           "source_prior": source.round(4).tolist(), "pool_prior_em": prior.round(4).tolist(),
           "pool_prior_true": pool_truth.round(4).tolist(),
           "pool_prediction_share": (np.bincount(pool.argmax(1), minlength=len(classes)) / len(pool)).round(4).tolist(),
           "sets": {}}
    weights = prior / source
    for name, faces in (("valid", tr.data.selection()), ("ferplus:test", tr.data.eval_set("ferplus:test"))):
        p = decisions.softmax(tr.predict(faces))
        labels = np.asarray(faces.labels)
        q = p * weights
        q /= q.sum(1, keepdims=True)
        out["sets"][name] = {"plain": scores(p, labels, classes), "prior_corrected": scores(q, labels, classes),
                             "count": int(len(labels))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders holding best.pt (LEAF recipe runs)")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args(argv)
    rows = []
    for run in args.runs:
        rows.append(study(run))
        t = rows[-1]["sets"]["ferplus:test"]
        print(f"{run}: test {100 * t['plain']['accuracy']:.2f} -> {100 * t['prior_corrected']['accuracy']:.2f} "
              f"(mean class {100 * t['plain']['mean_class_accuracy']:.2f} -> {100 * t['prior_corrected']['mean_class_accuracy']:.2f}); "
              f"pool prior EM {rows[-1]['pool_prior_em']} true {rows[-1]['pool_prior_true']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"method": "Saerens-Latinne-Decaestecker EM on the unlabelled pool; "
                                    "test posteriors reweighted by pool prior / labelled prior", "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
