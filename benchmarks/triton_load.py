#!/usr/bin/env python3
"""Load test: N camera clients against one Triton server vs the same clients in-process.

Each camera has its own real frame (the group photo, shifted: six faces), detected and aligned
once; it then sends its crops for `--seconds` as fast as answers come back (closed loop), over
gRPC to a local `tritonserver` (fer_edge's Python-backend model, dynamic batching), or to one
in-process backend shared by all cameras (what a single process serving N cameras does). Every
answer is compared with the camera's reference logits: nothing may be lost or differ. Traffic
goes to localhost only. Writes JSON (throughput, p50/p99 latency, errors, mismatches).

    python benchmarks/triton_load.py --clients 1 4 8 --seconds 10
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "fer_edge" / "assets"


def run_clients(make_backend, crops: list[np.ndarray], refs: list[np.ndarray], n: int, seconds: float) -> dict:
    latencies, counts, errors, mismatches = [[] for _ in range(n)], [0] * n, [0] * n, [0] * n
    start = threading.Barrier(n + 1)

    def camera(k):
        backend = make_backend()
        x, ref = crops[k % len(crops)], refs[k % len(refs)]
        backend.infer(x)  # warm-up
        start.wait()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                out = backend.infer(x)
            except Exception:  # noqa: BLE001 (counted)
                errors[k] += 1
                continue
            latencies[k].append((time.perf_counter() - t) * 1e3)
            counts[k] += 1
            if not np.allclose(out, ref, atol=1e-4):
                mismatches[k] += 1

    threads = [threading.Thread(target=camera, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.concatenate([np.asarray(v) for v in latencies if v]) if any(latencies) else np.zeros(1)
    faces = sum(c * len(crops[k % len(crops)]) for k, c in enumerate(counts))
    return {"clients": n, "seconds": round(wall, 2), "requests": int(sum(counts)), "faces": int(faces),
            "faces_per_s": round(faces / wall, 1), "requests_per_s": round(sum(counts) / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "errors": int(sum(errors)), "mismatches": int(sum(mismatches))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ASSETS / "default.onnx"))
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--instances", type=int, default=1, help="server model instances")
    p.add_argument("--queue-delay-us", type=int, default=2000)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--tag", default=platform.node() or "machine")
    args = p.parse_args(argv)

    import tempfile

    from fer_edge.paths import data_root
    from fer_edge.runtime import Recognizer
    from fer_edge.runtime.backends import open_backend
    from fer_edge.serving.triton_repository import write_repository
    from fer_edge.serving.triton_server import TritonServer

    group = cv2.imread(str(data_root() / "faces" / "multiface.jpg"))
    rec = Recognizer(args.model)
    frames = [np.roll(group, 9 * k, axis=1) for k in range(max(args.clients))]
    crops = []
    for f in frames:
        x, _, faces = rec.crops_for(f, rec.detect(f))
        crops.append(x)
    local = open_backend(args.model)
    refs = [local.infer(x) for x in crops]
    report = {"machine": {"platform": platform.platform(), "cores": os.cpu_count()}, "model": Path(args.model).name,
              "faces_per_request": [len(x) for x in crops[:1]], "seconds": args.seconds, "instances": args.instances,
              "queue_delay_us": args.queue_delay_us, "in_process": [], "triton_grpc": []}
    for n in args.clients:  # in-process: one backend shared by the cameras (calls serialised, as in one process)
        r = run_clients(lambda: local, crops, refs, n, args.seconds)
        report["in_process"].append(r)
        print(f"in-process  {n:2d} cameras: {r['faces_per_s']:8.1f} faces/s  p50 {r['p50_ms']:.2f} ms  "
              f"p99 {r['p99_ms']:.2f} ms  errors {r['errors']}  mismatches {r['mismatches']}", flush=True)
    with tempfile.TemporaryDirectory() as repo:
        write_repository(args.model, repo, name="fer", instances=args.instances, queue_delay_us=args.queue_delay_us)
        with TritonServer(repo) as server:
            url = f"triton+grpc://{server.grpc_url}/fer"
            for n in args.clients:
                r = run_clients(lambda: open_backend(url), crops, refs, n, args.seconds)
                report["triton_grpc"].append(r)
                print(f"triton gRPC {n:2d} cameras: {r['faces_per_s']:8.1f} faces/s  p50 {r['p50_ms']:.2f} ms  "
                      f"p99 {r['p99_ms']:.2f} ms  errors {r['errors']}  mismatches {r['mismatches']}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"triton-load-{args.tag}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    lost = sum(r["errors"] + r["mismatches"] for r in report["in_process"] + report["triton_grpc"])
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
