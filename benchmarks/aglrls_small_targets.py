#!/usr/bin/env python3
"""AGLRLS on small unlabelled targets (issue 20): adaptation to ~10 people, per CK+ subject draw.

Every run starts its transfer stage from one shared stage-1 model (recipes/aglrls.yaml's config
with --stage1-epochs FERPlus epochs, trained first when missing) and adapts to the faces of one subject draw
(`ckplus@draw<k>`, or `ckplus@fresh<k>` of the second cut; fer_edge/data/subject_draws.py), which are
also what it is scored on, 7-way,
as in the transductive CK+ protocol. The target labels are read only by the report (final.json)
and the report-only columns of metrics.jsonl. Variants (same stage 1, same budget):

    source_only  stage 2 without the target (the control)
    paper        full AGLRLS as published: dynamic thresholds only, no alignment, GLPC
    floor        + a 0.8 floor under the pseudo-label thresholds
    safe         + distribution alignment to the stage-1 model's target prediction (the defaults:
                 floor and alignment, and the heads' mean shipped, on a target under 300 faces only;
                 the paper's method, GLPC shipped, from 300 faces up)
    safe_always  floor and alignment whatever the target's size (what `safe` was before
                 aglrls.safety=auto; the same runs as `safe` on the draws, which are all small)
    safe_glpc    floor and alignment, shipping GLPC whatever the target's size

Draws 0-2 are the tuning draws (what the defaults were chosen on), draws 3-10 the report draws
(spent finding the `auto` decision rule), fresh0-7 the second cut that judges it. wide0-2 (25 people,
171-228 faces: the issue's "a few hundred faces") and half0-1 (44 people, 324-363 faces: above the 300
faces from which the defaults train as the paper does) regroup the same non-tuning people into larger
targets. Every gain is measured with the rule the run ships against source-only under the same rule.

    python benchmarks/aglrls_small_targets.py train --draws 0 1 2 --variants source_only paper floor safe
    python benchmarks/aglrls_small_targets.py table
    python benchmarks/aglrls_small_targets.py train --stage1-epochs 12 --draws all   # the recipe's stage 1
    python benchmarks/aglrls_small_targets.py train --stage1-epochs 12 --draws fresh0 fresh1 --variants source_only paper safe
    python benchmarks/aglrls_small_targets.py train --stage1-epochs 12 --draws wide0 wide1 wide2 half0 half1 --variants source_only safe

Each stage 1 is its own study (runs/aglrls_small_targets/stage1_<E>ep/, results likewise).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from fer_edge import recipe as rc
from fer_edge.data.labels import view
from fer_edge.data.subject_draws import TUNING_DRAWS
from fer_edge.train import adaptation_health as health

RECIPE = "recipes/aglrls.yaml"
RUNS = Path("runs/aglrls_small_targets")
RESULTS = Path("benchmarks/results/aglrls_small_targets")
PAPER = ["aglrls.align=global_local", "aglrls.pseudo_labels=true"]
VARIANTS = {
    "source_only": ["aglrls.align=none", "aglrls.pseudo_labels=false"],
    "paper": [*PAPER, "aglrls.threshold_floor=0", "aglrls.align_prior=false", "aglrls.decision=glpc", "aglrls.safety=off"],
    "floor": [*PAPER, "aglrls.threshold_floor=0.8", "aglrls.align_prior=false", "aglrls.decision=glpc", "aglrls.safety=on"],
    "safe": [*PAPER, "aglrls.threshold_floor=0.8", "aglrls.align_prior=true", "aglrls.decision=auto", "aglrls.safety=auto"],
    "safe_always": [*PAPER, "aglrls.threshold_floor=0.8", "aglrls.align_prior=true", "aglrls.decision=auto",
                    "aglrls.safety=on"],
    "safe_glpc": [*PAPER, "aglrls.threshold_floor=0.8", "aglrls.align_prior=true", "aglrls.decision=glpc", "aglrls.safety=on"],
}
# final.json's name of each shipped decision among its per-rule accuracies ("rules")
RULE_NAMES = {"glpc": "glpc", "mean_softmax": "average_7"}
CONTROL = "source_only"
HURT = 0.02  # adaptation "hurt" when it lands this far below source-only (issue 20's 2 points)


# the cuts named by their kind (fresh3, wide0, half1); the first cut's draws are plain numbers
NAMED_CUTS = ("fresh", "wide", "half")
GROUPS = ("tuning", "report", *NAMED_CUTS, "full CK+")


def _cut(draw: str) -> str | None:
    return next((c for c in NAMED_CUTS if draw.startswith(c)), None)


def target_spec(draw: str) -> str:
    """'all' -> the whole of CK+, '3' -> draw 3 of the first cut, 'fresh3' -> draw 3 of the fresh one
    (likewise wide<k>, half<k>: the larger cuts)."""
    if draw == "all":
        return "ckplus"
    return f"ckplus@{draw}" if _cut(draw) else f"ckplus@draw{draw}"


def draw_dir(draw: str) -> str:
    return draw if _cut(draw) else f"draw{draw}"


def role(draw: str) -> str:
    if draw == "all":
        return "full CK+"
    if _cut(draw):
        return _cut(draw)
    return "tuning" if int(draw) in TUNING_DRAWS else "report"


def _draw_order(draw: str) -> tuple:
    """full CK+ first, then the first cut, then each named cut, by number."""
    cut = _cut(draw)
    return (draw != "all", GROUPS.index(cut) if cut else 0, draw[len(cut or ""):].zfill(3))


def study_dir(root: Path, stage1_epochs: int) -> Path:
    """Every stage 1 has its own study: runs from different stage-1 models are never compared."""
    return root / f"stage1_{stage1_epochs}ep"


def run_dir(stage1_epochs: int, draw: str, variant: str, seed: int) -> Path:
    return study_dir(RUNS, stage1_epochs) / draw_dir(draw) / variant / f"seed{seed}"


# Stage 1 here is 4 FERPlus epochs by default, not the reported recipe's 12: on the 2-core VMs one epoch
# of MobileNet-v2 x0.5 at 112 px takes 4-16 min (it varies by machine), and the draws' study must fit a
# session; every variant of a draw starts from the same stage 1, so the comparisons are fair.
# --stage1-epochs 12 is the recipe's stage 1, where AGLRLS gains ~+10 on the whole of CK+.
STAGE1_EPOCHS = 4


def train(draws, variants, seeds, stage1_epochs: int, extra) -> None:
    recipe = rc.load_recipe(RECIPE)
    stage1 = study_dir(RUNS, stage1_epochs) / "stage1"
    if not (stage1 / "final.json").is_file():
        print(f"stage 1 ({stage1_epochs} FERPlus epochs) -> {stage1}", flush=True)
        rc._train_one(recipe, [*recipe.shared["overrides"], f"aglrls.source_epochs={stage1_epochs}", "seed=0", *extra],
                      stage1)
    restore_committed(stage1_epochs)  # runs already committed for this stage 1 are not trained again
    for seed in seeds:
        for draw in draws:
            for v in variants:
                out = run_dir(stage1_epochs, draw, v, seed)
                if (out / "final.json").is_file():
                    continue
                spec = target_spec(draw)
                print(f"draw {draw} {v} seed {seed} -> {out}", flush=True)
                rc._train_one(recipe, [f"aglrls.init_from={stage1}/last.pt", *VARIANTS[v], f"data.target={spec}",
                                       f"eval_sets={spec},ferplus:test", f"seed={seed}", *extra], out)


def _last(metrics: Path, key: str):
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    vals = [r[key] for r in rows if r.get(key) is not None]
    return (vals[0], vals[-1]) if vals else (None, None)


def current_warnings(summary: dict) -> list[str]:
    """The warnings today's rules (train/adaptation_health.py) raise on a run's stored signals, so that
    runs made before a revision of the thresholds are judged by the same rules as later ones."""
    sig = summary.get("signals")
    if not sig:
        return summary.get("warnings", [])
    return health.assess(sig["before"], sig["after"], list(view(7)), tuple(sig.get("source_val", (None, None))),
                         tuple(sig.get("check", (None, None))))["warnings"]


def same_stage1(a: Path, b: Path) -> bool:
    """Two stage-1 runs are the same model when they predict every FERPlus test and CK+ face alike
    (a rerun of the same seed on the same kind of machine usually is; a 32 MB model is not committed)."""
    ra, rb = (json.loads((d / "final.json").read_text())["sets"] for d in (a, b))
    return all(ra[k]["predictions"] == rb[k]["predictions"] for k in ("ferplus:test", "ckplus") if k in ra and k in rb)


def restore_committed(stage1_epochs: int) -> int:
    """Put the committed results of finished runs back under runs/ (which does not survive a session),
    so that the table holds them beside new runs: only when runs/ holds a stage 1 that predicts
    exactly as the committed one did, since runs from different stage-1 models are never compared."""
    runs, out_dir = study_dir(RUNS, stage1_epochs), study_dir(RESULTS, stage1_epochs)
    if not (runs / "stage1" / "final.json").is_file() or not (out_dir / "stage1" / "final.json").is_file():
        return 0
    if not same_stage1(runs / "stage1", out_dir / "stage1"):
        print(f"runs/ holds a different stage 1 than {out_dir}: its committed runs are left out", flush=True)
        return 0
    restored = 0
    for f in out_dir.glob("*/*_seed*/final.json"):
        variant, _, seed = f.parent.name.rpartition("_seed")
        dst = runs / f.parent.parent.name / variant / f"seed{seed}"
        if (dst / "final.json").is_file():
            continue
        dst.mkdir(parents=True, exist_ok=True)
        for p in f.parent.glob("*"):
            shutil.copy(p, dst / p.name)
        restored += 1
    return restored


def table(stage1_epochs: int) -> str:
    rows, results = [], {}
    runs, out_dir = study_dir(RUNS, stage1_epochs), study_dir(RESULTS, stage1_epochs)
    restore_committed(stage1_epochs)
    stage1 = runs / "stage1"
    if (stage1 / "final.json").is_file():
        (out_dir / "stage1").mkdir(parents=True, exist_ok=True)
        for p in stage1.glob("*"):
            if p.suffix in (".json", ".jsonl", ".png"):
                shutil.copy(p, out_dir / "stage1" / p.name)
    dirs = [d for prefix in ("draw", *NAMED_CUTS) for d in runs.glob(f"{prefix}*")]
    for d in sorted(dirs, key=lambda p: _draw_order(p.name if _cut(p.name) else p.name[4:])):
        draw = d.name if _cut(d.name) else d.name[4:]
        for seed_dir in sorted(d.glob(f"{CONTROL}/seed*")):
            if not (seed_dir / "final.json").is_file():  # still training
                continue
            seed = int(seed_dir.name[4:])
            ctrl = json.loads((seed_dir / "final.json").read_text())
            spec = target_spec(draw)
            for v in VARIANTS:
                f = run_dir(stage1_epochs, draw, v, seed) / "final.json"
                if not f.is_file():
                    continue
                r = json.loads(f.read_text())
                acc = r["sets"][spec]["accuracy"]
                # the control scored with the rule this run ships (runs before aglrls.decision: GLPC both)
                rule = RULE_NAMES.get(r["sets"][spec].get("decision", r.get("decision")), "glpc")
                c_acc = ctrl["sets"][spec].get("rules", {}).get(rule, ctrl["sets"][spec]["accuracy"])
                same_rule = r.get("decision") == ctrl.get("decision")
                summary = r.get("method_summary", {})
                first_prec, last_prec = _last(f.parent / "metrics.jsonl", "report_pseudo_precision")
                first_rate, last_rate = _last(f.parent / "metrics.jsonl", "report_pseudo_rate")
                entry = {"draw": draw, "variant": v, "seed": seed, "faces": len(r["sets"][spec]["labels"]),
                         "accuracy": acc, "rule": rule, "source_only_same_rule": c_acc, "gain_vs_source_only": acc - c_acc,
                         "rules": r["sets"][spec].get("rules", {}),
                         "source_only_rules": ctrl["sets"][spec].get("rules", {}),
                         "ferplus_test": r["sets"].get("ferplus:test", {}).get("accuracy"),
                         # per-face predictions are stored for the shipped rule only: paired only when both ship the same
                         "mcnemar_vs_source_only": rc.mcnemar(r["sets"][spec]["predictions"],
                                                              ctrl["sets"][spec]["predictions"], r["sets"][spec]["labels"])
                         if same_rule else None,
                         "warnings_at_run": summary.get("warnings", []),
                         "warnings": current_warnings(summary),
                         "pseudo_precision_first_last": [first_prec, last_prec],
                         "pseudo_rate_first_last": [first_rate, last_rate],
                         "signals": summary.get("signals", {})}
                results[f"{draw_dir(draw)}/{v}/seed{seed}"] = entry
                rows.append(entry)
                dst = out_dir / draw_dir(draw) / f"{v}_seed{seed}"
                dst.mkdir(parents=True, exist_ok=True)
                for p in f.parent.glob("*"):
                    if p.suffix in (".json", ".jsonl", ".png"):
                        shutil.copy(p, dst / p.name)
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = ["| draw | role | faces | variant | seed | shipped rule | draw acc | vs source-only (same rule) | McNemar p | "
             "GLPC | heads' mean | FERPlus test | pseudo-label precision first -> last epoch | pseudo-label rate | "
             "warnings (today's rules) |",
             "|" + "---|" * 15]
    for e in rows:
        gain = "" if e["variant"] == CONTROL else f"{100 * e['gain_vs_source_only']:+.1f}"
        p = "" if e["variant"] == CONTROL or e["mcnemar_vs_source_only"] is None else \
            f"{e['mcnemar_vs_source_only']['p_value']:.2f}"
        # source-only trains on no pseudo label: its columns would describe labels nobody used
        prec = "" if e["variant"] == CONTROL else " -> ".join(pct(v) for v in e["pseudo_precision_first_last"])
        rate = "" if e["variant"] == CONTROL else " -> ".join(pct(v) for v in e["pseudo_rate_first_last"])
        lines.append(f"| {e['draw']} | {role(e['draw'])} | {e['faces']} | {e['variant']} | {e['seed']} | {e['rule']} | "
                     f"{pct(e['accuracy'])} | {gain} | {p} | {pct(e['rules'].get('glpc'))} | {pct(e['rules'].get('average_7'))} | "
                     f"{pct(e['ferplus_test'])} | {prec} | {rate} | {len(e['warnings'])} |")
    lines += ["", "Summary per variant (gain over source-only in points; 'hurt' = more than 2 points below it; "
              "'warned' = the run raised at least one warning):", ""]
    summary = {}
    for group in GROUPS:
        for v in VARIANTS:
            if v == CONTROL:
                continue
            sel = [e for e in rows if e["variant"] == v and role(e["draw"]) == group]
            if not sel:
                continue
            gains = np.array([e["gain_vs_source_only"] for e in sel])
            hurt = [e for e in sel if e["gain_vs_source_only"] < -HURT]
            warned_hurt = [e for e in hurt if e["warnings"]]
            false_alarms = [e for e in sel if e["warnings"] and e["gain_vs_source_only"] >= -HURT]
            summary[f"{group}/{v}"] = s = {"runs": len(sel), "mean_gain": float(gains.mean()), "min_gain": float(gains.min()),
                                           "hurt": len(hurt), "hurt_and_warned": len(warned_hurt),
                                           "warned_without_hurt": len(false_alarms)}
            lines.append(f"- {group} draws, {v}: {s['runs']} runs, mean {100 * s['mean_gain']:+.2f}, worst "
                         f"{100 * s['min_gain']:+.2f}; hurt > 2 points on {s['hurt']} (warned on {s['hurt_and_warned']}); "
                         f"warnings without hurt: {s['warned_without_hurt']}")
    # The decision rule does not change training (pseudo labels use the thresholds, not the shipped
    # rule), so every run also says what it would have scored shipping the other rule: gains by rule,
    # each against source-only under the same rule.
    by_rule = [(g, v, rule) for g in GROUPS for v in VARIANTS if v != CONTROL
               for rule in ("glpc", "average_7")]
    rule_lines = []
    for group, v, rule in by_rule:
        gains = [e["rules"][rule] - e["source_only_rules"][rule] for e in rows
                 if e["variant"] == v and role(e["draw"]) == group and rule in e["rules"] and rule in e["source_only_rules"]]
        if gains:
            g = np.array(gains)
            summary[f"{group}/{v}/by_rule/{rule}"] = {"runs": len(g), "mean_gain": float(g.mean()),
                                                      "min_gain": float(g.min()), "hurt": int((g < -HURT).sum())}
            rule_lines.append(f"- {group} draws, {v}, both scored by {rule}: {len(g)} runs, mean {100 * g.mean():+.2f}, "
                              f"worst {100 * g.min():+.2f}, more than 2 points below source-only on {int((g < -HURT).sum())}")
    if rule_lines:
        lines += ["", "Gains by decision rule (the run and source-only scored with the same rule, whatever ships):", "",
                  *rule_lines]
    # Per draw, over the stage-2 seeds run (paired by seed): on ~80 faces one face is 1.2 points and
    # source-only itself moves by several points from seed to seed, so a one-seed verdict is weak.
    per_draw = {}
    for e in rows:
        if e["variant"] != CONTROL:
            per_draw.setdefault((e["draw"], e["variant"]), []).append(e)
    multi = {k: v for k, v in per_draw.items() if len(v) > 1}
    if multi:
        lines += ["", "Per draw over its stage-2 seeds (gain over source-only of the same seed):", ""]
        for (draw, v), sel in sorted(multi.items(), key=lambda kv: (_draw_order(kv[0][0]), kv[0][1])):
            gains = [100 * e["gain_vs_source_only"] for e in sorted(sel, key=lambda e: e["seed"])]
            ctrl = [100 * (e["accuracy"] - e["gain_vs_source_only"]) for e in sorted(sel, key=lambda e: e["seed"])]
            accs = [100 * e["accuracy"] for e in sorted(sel, key=lambda e: e["seed"])]
            summary[f"{draw_dir(draw)}/{v}/seeds"] = {"seeds": sorted(e["seed"] for e in sel), "gains": gains,
                                               "mean_gain": float(np.mean(gains)), "accuracy": accs,
                                               "source_only": ctrl}
            lines.append(f"- draw {draw}, {v}: seeds {sorted(e['seed'] for e in sel)}, gains "
                         f"{', '.join(f'{g:+.1f}' for g in gains)} (mean {np.mean(gains):+.2f}); {v} "
                         f"{', '.join(f'{a:.1f}' for a in accs)}, source-only {', '.join(f'{c:.1f}' for c in ctrl)}")
    # the per-variant verdict with every draw's seeds averaged (paired by seed), one value per draw
    lines += ["", "Per variant with each draw's seeds averaged (one gain per draw):", ""]
    for group in GROUPS[:-1]:
        for v in VARIANTS:
            means = {d: float(np.mean([e["gain_vs_source_only"] for e in sel])) for (d, vv), sel in per_draw.items()
                     if vv == v and role(d) == group}
            if not means:
                continue
            vals = np.array(list(means.values()))
            summary[f"{group}/{v}/seed_means"] = {"draws": means, "mean_gain": float(vals.mean()),
                                                  "min_gain": float(vals.min()), "hurt": int((vals < -HURT).sum())}
            lines.append(f"- {group} draws, {v}: {len(vals)} draws, mean {100 * vals.mean():+.2f}, worst "
                         f"{100 * vals.min():+.2f}; more than 2 points below source-only on {int((vals < -HURT).sum())}")
    lines += ["", "Accuracy in % on the draw's own faces over the 7 classes (neutral included; contempt faces are in the "
              "unlabelled pool only), last epoch of every run (no selection). Generated by "
              f"`python benchmarks/aglrls_small_targets.py table --stage1-epochs {stage1_epochs}`."]
    out_dir.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    (out_dir / "table.md").write_text(text)
    (out_dir / "results.json").write_text(json.dumps({"stage1_epochs": stage1_epochs, "runs": results,
                                                     "summary": summary}, indent=2))
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("train", "table"))
    ap.add_argument("--draws", nargs="*", default=[str(k) for k in TUNING_DRAWS],
                    help="draw numbers of the first cut, fresh<k> of the second, wide<k>/half<k> of the larger cuts, "
                         "or 'all' for the whole of CK+")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--stage1-epochs", type=int, default=STAGE1_EPOCHS)
    ap.add_argument("overrides", nargs="*", help="key=value for every run (e.g. data.landmarks_dir=runs/landmarks)")
    args = ap.parse_args()
    os.environ.setdefault("FER_EDGE_PROGRESS", "0")
    if args.step == "train":
        train(args.draws, args.variants, args.seeds, args.stage1_epochs, args.overrides)
    print(table(args.stage1_epochs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
