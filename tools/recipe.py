#!/usr/bin/env python3
"""A method's experiments and shipped model from its recipe (fer_edge/recipe.py):

    python tools/recipe.py train recipes/aglrls.yaml [--variants full source_only] [--seeds 0 1] [key=value ...]
    python tools/recipe.py table recipes/aglrls.yaml [--out DIR]
    python tools/recipe.py ship  recipes/aglrls.yaml [--seed 0] [--assets DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fer_edge import recipe as rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("train", "table", "ship"))
    ap.add_argument("recipe")
    ap.add_argument("--variants", nargs="*")
    ap.add_argument("--seeds", nargs="*", type=int)
    ap.add_argument("--seed", type=int, help="ship: the seed whose run ships (default: the first)")
    ap.add_argument("--out", help="table: output folder (default: the recipe's results)")
    ap.add_argument("--assets", help="ship: where the shipped files and model card go (default: the package's "
                                     "assets, which the wheel carries; another folder exports and checks without "
                                     "putting the model in the package)")
    ap.add_argument("overrides", nargs="*", help="train: key=value overrides for every run")
    args = ap.parse_args()
    os.environ.setdefault("FER_EDGE_PROGRESS", "0")
    recipe = rc.load_recipe(args.recipe)
    if args.step == "train":
        rc.train(recipe, args.variants, args.seeds, args.overrides)
    elif args.step == "table":
        print(rc.table(recipe, args.out))
    else:
        rc.ship(recipe, args.seed, **({"assets": Path(args.assets)} if args.assets else {}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
