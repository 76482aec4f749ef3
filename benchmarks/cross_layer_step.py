"""One training step of the cross-layer contrastive method (methods.md §3), side by side in one run:

- the plain baseline step (CLBS, CLFM and MSR off) vs the full method, with the native k-means
  kernels vs their batched PyTorch twin (same k-means++ draws, same iterations);
- the share of the full step that the clustering (kmeans_cosine + assign_cosine) costs;
- optionally other stems / input sizes (--stems, --sizes) to price a wider deepest map.

Steps run on real FERPlus training faces (one batch, reused), alternating the configurations
step by step so machine noise hits them alike; each number is the median over --repeats steps.
Writes benchmarks/results/cross_layer/step-<threads>thread.json.

    python benchmarks/cross_layer_step.py                          # batch 64, s2 stem, 48 px
    python benchmarks/cross_layer_step.py --stems s2 s1 --sizes 48 64
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import Timed, stage_fixture, step_parser, time_steps, use_threads, write  # noqa: E402

from fer_edge.train import cross_layer as losses  # noqa: E402

VARIANTS = {
    "baseline": ["cross_layer.clbs=false", "cross_layer.clfm=false", "cross_layer.msr=none"],
    "full_native": ["cross_layer.kmeans_impl=native"],
    "full_torch_kmeans": ["cross_layer.kmeans_impl=torch"],
}


def main(argv=None):
    ap = step_parser(__doc__, batch=64)
    ap.add_argument("--stems", nargs="+", default=["s2"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[48])
    args = ap.parse_args(argv)
    use_threads(args.threads)
    results = []
    for stem in args.stems:
        for size in args.sizes:
            common = [f"model.stem={stem}", f"data.image_size={size}", f"data.batch_size={args.batch}",
                      f"threads={args.threads}", "data.limit=512"]
            with tempfile.TemporaryDirectory() as tmp:
                built = {n: stage_fixture("configs/cross_layer_ferplus.yaml", "cross_layer", [*common, *ov], Path(tmp) / n)
                         for n, ov in VARIANTS.items()}
                samples, cluster = time_steps(built, args.repeats,
                                              lambda n: [Timed(losses, "_kmeans"), Timed(losses, "_assign")])
                base = built["baseline"]
                maps = [tuple(m.shape[1:]) for m in base[0].model(base[2]["image"])["maps"]]
            row = {"stem": stem, "image_size": size, "batch": args.batch, "stage_maps": maps}
            for name in built:
                ms = statistics.median(samples[name])
                row[name] = {"step_ms": round(ms, 2), "images_per_s": round(args.batch / ms * 1e3, 1),
                             "clustering_ms": round(statistics.median(cluster[name]), 2)}
                row[name]["clustering_share"] = round(row[name]["clustering_ms"] / ms, 4)
            row["native_kmeans_speedup_in_step"] = round(row["full_torch_kmeans"]["clustering_ms"]
                                                         / max(row["full_native"]["clustering_ms"], 1e-9), 2)
            row["full_over_baseline_step"] = round(row["full_native"]["step_ms"] / row["baseline"]["step_ms"], 3)
            results.append(row)
            print(json.dumps(row), flush=True)
    write({"benchmark": "cross_layer training step", "repeats": args.repeats, "results": results}, "cross_layer",
          args.threads, args.out)


if __name__ == "__main__":
    main()
