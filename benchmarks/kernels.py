"""Kernel benchmarks: each fer_edge kernel against its anchors, side by side in one process.

Runs alternate (ours, anchor, ours, anchor, ...) so that machine noise hits both alike; each
number is the median of the repeats. Every workload runs with one thread and with all threads.
Results go to benchmarks/results/kernels-<machine>-<device>.json with the machine, versions,
commit and thread counts; the table printed shows anchor_ms / ours_ms (higher is better).

    python benchmarks/kernels.py                 # CPU, the workloads of docs/performance.md
    python benchmarks/kernels.py --device cuda   # on a CUDA GPU (one launch per call)
    python benchmarks/kernels.py --smoke         # tiny sizes, one repeat (CI keeps it running)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anchors  # noqa: E402

import fer_edge  # noqa: E402
from fer_edge import ops  # noqa: E402


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_alternating(fns: dict, repeats: int, warmup: int, device: str) -> dict:
    """Median wall time in ms of each callable, interleaved run by run."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}


def set_threads(n: int):
    torch.set_num_threads(n)
    ops.set_num_threads(n)
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass


def _optional(name, make):
    try:
        return make()
    except (ImportError, RuntimeError) as exc:
        print(f"  anchor {name} unavailable: {exc}")
        return None


def workloads(device: str, smoke: bool):
    """(name, workload description, {impl: callable}, goal) with ours first."""
    g = torch.Generator().manual_seed(0)
    n_img, size = (4, 64) if smoke else (64, 224)
    imgs_u8 = torch.randint(0, 256, (n_img, 1, size, size), generator=g, dtype=torch.uint8)
    imgs_np = [im[0].numpy() for im in imgs_u8]
    imgs_f32 = (imgs_u8.float() / 255).to(device)
    imgs_u8 = imgs_u8.to(device)
    hog_impls = {
        "ours_u8": lambda: ops.hog(imgs_u8),
        "ours_f32": lambda: ops.hog(imgs_f32),
        "maskfeat_torch": lambda: anchors.maskfeat_torch_hog(imgs_f32),
    }
    if device == "cpu":
        cv = _optional("opencv", lambda: anchors.opencv_hog(size=size))
        if cv:
            hog_impls["opencv_hogdescriptor"] = lambda: cv(imgs_np)
    yield ("hog", f"{n_img} gray {size}x{size}, 8px cells, 9 bins, 16px patches", hog_impls,
           ("opencv_hogdescriptor", "ours_u8", 3.0))

    P, N, D, K, iters = (16, 128, 16, 4, 10) if smoke else (256, 512, 16, 4, 10)
    x = torch.randn(P, N, D, generator=g).to(device)
    km_impls = {
        "ours_kmeans++": lambda: ops.kmeans_cosine(x, K, iters, "kmeans++", seed=0),
        "ours_first": lambda: ops.kmeans_cosine(x, K, iters, "first"),
        "torch_batched_first": lambda: anchors.torch_batched_kmeans(x, K, iters),
    }
    if device == "cpu":
        fk = _optional("faiss", lambda: anchors.faiss_kmeans_loop(K, iters))
        if fk:
            x_np = x.numpy()
            km_impls["faiss_loop"] = lambda: fk(x_np)
    yield ("kmeans_cosine", f"{P} problems x {N} vectors x {D}-d, K={K}, {iters} iters", km_impls,
           ("faiss_loop", "ours_kmeans++", 5.0))

    cent = torch.randn(P, K, D, generator=g).to(device)
    yield ("assign_cosine", f"{P} x {N} vectors to {K} centroids",
           {"ours": lambda: ops.assign_cosine(x, cent), "torch_bmm_argmax": lambda: anchors.torch_assign(x, cent)},
           ("torch_bmm_argmax", "ours", 2.0))

    T, E, k = (4096, 8, 2) if smoke else (65536, 8, 2)
    z = torch.randn(T, E, generator=g).to(device)
    yield ("topk_gating_forward", f"{T} tokens x {E} experts, k={k}",
           {"ours": lambda: ops.topk_gating(z, k), "torch_two_max": lambda: anchors.torch_two_max(z),
            "torch_softmax_topk": lambda: anchors.torch_softmax_topk(z, k)},
           ("torch_two_max", "ours", 3.0))

    zg = z.clone().requires_grad_()
    gw = torch.randn(T, k, generator=g).to(device)

    def gating_bwd(fn):
        def run():
            zg.grad = None
            w = fn(zg)[0]
            w.backward(gw)
        return run

    yield ("topk_gating_fwd_bwd", f"{T} tokens x {E} experts, k={k}, forward + backward",
           {"ours": gating_bwd(lambda t: ops.topk_gating(t, k)), "torch_two_max": gating_bwd(anchors.torch_two_max),
            "torch_softmax_topk": gating_bwd(lambda t: anchors.torch_softmax_topk(t, k))},
           ("torch_two_max", "ours", 1.0))

    shape = (16, 512, 7, 7) if smoke else (256, 512, 7, 7)
    sizes = ops.even_groups(512, 7)
    xc = torch.randn(*shape, generator=g).to(device).requires_grad_()
    go = torch.randn(shape[0], 7, 7, 7, generator=g).to(device)

    def pool_fwd_bwd(fn):
        def run():
            xc.grad = None
            fn(xc).backward(go)
        return run

    yield ("chanpool_max_fwd_bwd", f"{shape} -> 7 groups, forward + backward",
           {"ours": pool_fwd_bwd(lambda t: ops.chanpool_max(t, sizes)),
            "torch_argmax_scatter": pool_fwd_bwd(lambda t: anchors.ArgmaxScatterPool.apply(t, sizes)),
            "torch_split_amax": pool_fwd_bwd(lambda t: anchors.torch_split_amax(t, sizes))},
           ("torch_argmax_scatter", "ours", 2.0))


def machine_info(device: str) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    versions = {"torch": torch.__version__, "numpy": np.__version__}
    for mod in ("cv2", "faiss"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    info["versions"] = versions
    info["fer_edge_build"] = fer_edge.build_info()
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                            cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        pass
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", default="1,all", help="comma list of thread counts; 'all' = every core")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repeat: checks the script runs")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--tag", default=platform.node() or "machine", help="machine name in the output file name")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible to torch")
    repeats, warmup = (1, 1) if args.smoke else (args.repeats, 2)
    threads = [os.cpu_count() if t == "all" else int(t) for t in args.threads.split(",")]
    if args.device == "cuda":
        threads = threads[:1]

    results = []
    for n in threads:
        set_threads(n)
        print(f"\n== {args.device}, {n} thread(s) ==")
        for name, desc, impls, (anchor, ours, goal) in workloads(args.device, args.smoke):
            ms = time_alternating(impls, repeats, warmup, args.device)
            row = {"kernel": name, "workload": desc, "threads": n, "ms": ms}
            if anchor in ms:
                row["speedup_vs_" + anchor] = ms[anchor] / ms[ours]
                row["goal"] = f"{ours} >= {goal}x {anchor}"
            results.append(row)
            cells = "  ".join(f"{k}={v:.3f}ms" for k, v in ms.items())
            ratio = "  ".join(f"{k.split('_vs_')[1]}/{ours}={v:.2f}x" for k, v in row.items() if k.startswith("speedup"))
            print(f"{name:22s} {cells}\n{'':22s} {ratio}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "-smoke" if args.smoke else ""
    path = out_dir / f"kernels-{args.tag}-{args.device}{suffix}.json"
    path.write_text(json.dumps({"machine": machine_info(args.device), "repeats": repeats, "results": results}, indent=2))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
