"""Paired comparisons between two PLL recipe variants on the same FERPlus test faces: McNemar on
all faces, on the faces whose votes leave two or more candidate classes (where partial labels
should matter) and on the others; CK+ by sequence. Reads the final.json copies under
benchmarks/results/pll/ (`python tools/recipe.py table recipes/pll.yaml` writes them).

    python benchmarks/pll_pairs.py mim_hog majority --seeds 0
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import ROOT  # noqa: E402

from fer_edge.recipe import mcnemar, mcnemar_counts, paired_gain  # noqa: E402
from fer_edge.train.data_roles import open_split  # noqa: E402
from fer_edge.train.metrics import paired_test_by_sequence  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--results", default=str(ROOT / "benchmarks/results/pll"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    several = np.asarray(open_split("ferplus:test", 8, "gray").candidates, bool).sum(1) >= 2
    rows = []
    for seed in args.seeds:
        a, b = (json.loads((Path(args.results) / f"{v}_seed{seed}" / "final.json").read_text())["sets"]
                for v in (args.first, args.second))
        row = {"seed": seed}
        t_a, t_b = a["ferplus:test"], b["ferplus:test"]
        y = np.asarray(t_a["labels"])
        if not np.array_equal(y, t_b["labels"]) or len(y) != len(several):
            raise SystemExit("the two runs were not scored on the same FERPlus test faces")
        pa, pb = np.asarray(t_a["predictions"]), np.asarray(t_b["predictions"])
        for name, m in (("all", np.ones_like(several)), ("two_or_more_candidates", several), ("one_candidate", ~several)):
            row[name] = {"faces": int(m.sum()), args.first: round(float((pa[m] == y[m]).mean() * 100), 2),
                         args.second: round(float((pb[m] == y[m]).mean() * 100), 2), **mcnemar(pa[m], pb[m], y[m])}
        if "ckplus" in a and "ckplus" in b:
            c_a, c_b = a["ckplus"], b["ckplus"]
            yc = np.asarray(c_a["labels"])
            row["ckplus"] = {args.first: round(float((np.asarray(c_a["predictions"]) == yc).mean() * 100), 2),
                             args.second: round(float((np.asarray(c_b["predictions"]) == yc).mean() * 100), 2),
                             "by_sequence": paired_test_by_sequence(c_a["predictions"], c_b["predictions"], yc, c_a["groups"])}
        rows.append(row)
        print(json.dumps(row))
    over = {}  # the seeds together: paired t over per-seed differences, McNemar on the pooled faces
    if len(rows) > 1:
        for name in ("all", "two_or_more_candidates", "one_candidate"):
            diffs = [round(r[name][args.first] - r[name][args.second], 2) for r in rows]
            b, c = sum(r[name]["only_first_right"] for r in rows), sum(r[name]["only_second_right"] for r in rows)
            over[name] = {**paired_gain(diffs), "pooled_only_first_right": b, "pooled_only_second_right": c,
                          "pooled_p_value": mcnemar_counts(b, c)["p_value"]}
        print(json.dumps({"over_seeds": over}))
    out = Path(args.out) if args.out else Path(args.results) / f"pairs-{args.first}-vs-{args.second}.json"
    out.write_text(json.dumps({"first": args.first, "second": args.second, "seeds": rows, "over_seeds": over}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
