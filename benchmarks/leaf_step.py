"""One LEAF training step (methods.md §4) with its top-k gating done four ways, side by side:

- "native": ops.topk_gating as shipped (the kernel through an autograd.Function);
- "registered_op": the kernel through torch.library's registered op (what torch.compile uses);
- "torch_stable_sort": plain torch with the op's exact semantics (stable sort + softmax);
- "torch_topk": the fastest plain torch (softmax -> topk -> renormalise), ties in any order.
Then the gating call alone (forward + backward, 1 thread) over token counts from LEAF's 128 up.
Reports the step time, images/s and the gating calls' own time (forward; their backward runs
inside the step's backward). Steps use real FERPlus faces (one batch, reused), alternating.
Writes benchmarks/results/leaf/step-<threads>thread.json.

    python benchmarks/leaf_step.py
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import Timed, stage_fixture, step_parser, time_steps, use_threads, write  # noqa: E402

from fer_edge import ops  # noqa: E402
from fer_edge.ops import _reference  # noqa: E402

def registered(z, k, return_probs=False):
    w, i, p = torch.ops.fer_edge.topk_gating(z.float().contiguous(), k, return_probs)
    return w, i, (p if return_probs else None)


def torch_topk(z, k, return_probs=False):
    probs = torch.softmax(z, -1)
    v, i = probs.topk(k, -1)
    return v / v.sum(-1, keepdim=True), i, (probs if return_probs else None)


MODES = {"native": None, "registered_op": registered,
         "torch_stable_sort": lambda z, k, return_probs=False: _reference.topk_gating(z, k, return_probs),
         "torch_topk": torch_topk}


def gating_sweep(tokens=(64, 128, 256, 512, 1024, 2048, 4096), experts=8, k=2, calls=400):
    """us per gating call, forward + backward (weights and probs in the loss, as LEAF's
    load-balancing loss uses them), 1 thread, best of 5 rounds, modes interleaved."""
    use_threads(1)
    rows = []
    for T in tokens:
        z = torch.randn(T, experts, generator=torch.Generator().manual_seed(T)).requires_grad_()
        impls = {m: (impl or ops.topk_gating) for m, impl in MODES.items()}

        def run(f):
            z.grad = None
            w, _, p = f(z, k, True)
            (w.square().sum() + p.square().sum()).backward()

        best = {m: float("inf") for m in impls}
        for _ in range(5):
            for m, f in impls.items():
                run(f)
                t0 = time.perf_counter()
                for _ in range(calls // 5):
                    run(f)
                best[m] = min(best[m], (time.perf_counter() - t0) / (calls // 5) * 1e6)
        rows.append({"tokens": T, "experts": experts, "k": k, "logits": T * experts,
                     "us_fwd_bwd": {m: round(v, 1) for m, v in best.items()}})
        print(json.dumps(rows[-1]))
    return rows


def main(argv=None):
    ap = step_parser(__doc__, batch=32)
    args = ap.parse_args(argv)
    use_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, ctx, batch = stage_fixture("configs/leaf_ferplus.yaml", "leaf", [
            "data.limit=2000", "data.labels_per_class=50", f"data.batch_size={args.batch}"], tmp)
        fixture = (trainer, ctx, batch)
        samples, gate_ms = time_steps({m: fixture for m in MODES}, args.repeats,
                                      lambda m: [Timed(ops, "topk_gating", MODES[m])], set_step=False)
    images = args.batch * 4  # labelled + two weak + one strong view per unlabelled face: one token each per MoE
    row = {"batch": args.batch, "tokens_per_moe_call": images, "experts": trainer.method.config.experts,
           "k": trainer.method.config.k}
    for m in MODES:
        ms = statistics.median(samples[m])
        row[m] = {"step_ms": round(ms, 1), "images_per_s": round(images / ms * 1e3, 1),
                  "gating_forward_ms": round(statistics.median(gate_ms[m]), 3)}
    print(json.dumps(row))
    sweep = gating_sweep()
    write({"benchmark": "leaf training step, gating implementations", "repeats": args.repeats,
           "results": [row],
           "gating_call_sweep_1thread": sweep}, "leaf", args.threads, args.out)


if __name__ == "__main__":
    main()
