#!/usr/bin/env python3
"""The AGLRLS ablation table from the runs of benchmarks/aglrls_ablation.sh.

    python benchmarks/aglrls_table.py runs/aglrls [--out benchmarks/results/aglrls]

Writes table.md, results.json, each run's config and metrics, and the CK+ / FERPlus-test
confusion matrices into --out. Every number comes from the runs' final.json (last checkpoint,
no selection); CK+ labels are read only there.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

VARIANTS = [  # folder, what it is
    ("stage1", "stage 1 only (source, no stage 2)"),
    ("source_only", "source-only, same budget (stage 2 without target)"),
    ("global", "+ global alignment (CDAN-E on the global feature)"),
    ("global_local", "+ local alignment (CDAN-E on all 7 features)"),
    ("full", "+ dynamic pseudo labels = full AGLRLS"),
]
CK, FP = "ckplus", "ferplus:test"


def load(run: Path) -> dict | None:
    f = run / "final.json"
    return json.loads(f.read_text()) if f.is_file() else None


def rule(res: dict, name: str) -> float | None:
    return res.get("rules", {}).get(name)


def pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/aglrls"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, results = [], {}
    for folder, what in VARIANTS:
        final = load(args.runs / folder)
        if final is None:
            rows.append(f"| {what} | not run | | | | | |")
            continue
        ck, fp = final["sets"][CK], final["sets"][FP]
        results[folder] = {"description": what, "final": final}
        rows.append(f"| {what} | {pct(rule(ck, 'glpc'))} | {pct(rule(ck, 'average_7'))} | {pct(rule(ck, 'concat'))} | "
                    f"{pct(ck['mean_class_accuracy'])} | {pct(rule(fp, 'glpc'))} | {pct(rule(fp, 'average_7'))} |")
        dst = args.out / folder
        dst.mkdir(exist_ok=True)
        for name in ("config.json", "metrics.jsonl", "final.json", "confusion_ckplus.png", "confusion_ferplus_test.png"):
            if (args.runs / folder / name).is_file():
                shutil.copy(args.runs / folder / name, dst / name)
    lines = ["| variant | CK+ GLPC | CK+ avg of 7 | CK+ concat head | CK+ mean class (GLPC) | FERPlus test GLPC | FERPlus test avg of 7 |",
             "|---|---|---|---|---|---|---|", *rows]
    if "full" in results and "source_only" in results:
        full, so = results["full"]["final"]["sets"][CK], results["source_only"]["final"]["sets"][CK]
        best_so = max(v for v in so["rules"].values() if v is not None)
        gain = rule(full, "glpc") - best_so
        lines += ["", f"Full AGLRLS (GLPC) vs the best decision rule of the source-only run on CK+: {100 * gain:+.2f} points "
                      f"(goal >= +8). GLPC vs plain averaging in the full run: "
                      f"{100 * (rule(full, 'glpc') - rule(full, 'average_7')):+.2f} points (goal >= 0)."]
        results["summary"] = {"gain_over_source_only": gain, "glpc_minus_average": rule(full, "glpc") - rule(full, "average_7")}
    lines += ["", "Accuracy in % over 7 classes (neutral included: the model does not know CK+ has none). CK+48: 927 faces "
                  "of the 6 shared classes; its 54 contempt faces are in the unlabelled pool only. Last checkpoint of every run, "
                  "no selection; seed 0."]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
