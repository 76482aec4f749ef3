"""What the training-step benchmarks share: a trainer set up at one stage with one real batch,
one optimiser step, a timer that swaps a function for a timed (or other) implementation, the
interleaved timing loop, and the JSON file with the machine's facts."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import torch

os.environ.setdefault("FER_EDGE_PROGRESS", "0")
ROOT = Path(__file__).resolve().parent.parent


def step_parser(doc: str, batch: int, repeats: int = 15) -> argparse.ArgumentParser:
    """The options every step benchmark takes (--batch --threads --repeats --out); each adds its own."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--threads", type=int, default=2, help="torch's and the native kernels' threads")
    ap.add_argument("--repeats", type=int, default=repeats, help="timed steps per variant (after warm-up)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<method>/step-<threads>thread.json)")
    return ap


def use_threads(n: int) -> None:
    """torch and fer_edge's native kernels on the same thread count, as in training."""
    from fer_edge import ops

    torch.set_num_threads(n)
    ops.set_num_threads(n)


def stage_fixture(config: str, method: str, overrides: list[str], out_dir, stage: str | None = None):
    """(trainer, ctx, batch): the method's trainer at `stage` (default the first) with its
    optimiser, the method set up, and the stage's first batch of real faces."""
    from fer_edge.train import Trainer, load_config
    from fer_edge.train.data_roles import stage_loader

    cfg = load_config(ROOT / config, [f"out_dir={out_dir}", "eval_sets=[]", *overrides], method=method)
    trainer = Trainer(cfg)
    starts, epoch = {}, 0
    for s in trainer.stages:
        starts[s.name] = epoch
        epoch += s.epochs
    st = next(s for s in trainer.stages if stage in (None, s.name))
    trainer.epoch = starts[st.name]
    trainer._optimizer_for(st)
    steps = trainer._steps(st)
    ctx = trainer._context(st, steps, {})
    trainer.method.setup(ctx)
    trainer.method.on_epoch_start(ctx)
    batch = next(iter(stage_loader(st, trainer.data, trainer.epoch, steps, 0, 0, 1, 0)))
    trainer.net.train()
    return trainer, ctx, batch


def step(trainer, ctx, batch) -> None:
    loss = sum(trainer.method.train_step(ctx, batch).values())
    trainer.opt.zero_grad(set_to_none=True)
    loss.backward()
    trainer.opt.step()


class Timed:
    """Within the block, `owner.name` is `impl` (default: what it was), timed: `.ms` adds up."""

    def __init__(self, owner, name: str, impl=None):
        self.owner, self.name, self.ms = owner, name, 0.0
        self._orig = getattr(owner, name)
        self._impl = impl or self._orig

    def __enter__(self):
        impl = self._impl

        def run(*a, **kw):
            t0 = time.perf_counter()
            try:
                return impl(*a, **kw)
            finally:
                self.ms += (time.perf_counter() - t0) * 1e3
        setattr(self.owner, self.name, run)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self._orig)


def time_steps(built: dict, repeats: int, timers, warmup: int = 2, set_step: bool = True):
    """Times one optimiser step of every variant in `built` ({name: (trainer, ctx, batch)}), round
    after round with the variants interleaved, so that the machine's drift hits them alike.
    timers(name) -> the Timed blocks to open around that variant's step (its timed parts).
    With set_step, ctx.step is the round: fresh random draws per step (drop masks, k-means++), as in
    training. Returns ({name: [step ms]}, {name: [ms inside the timed parts]}), warm-up rounds left out."""
    samples = {n: [] for n in built}
    parts = {n: [] for n in built}
    for r in range(repeats + warmup):
        for name, (trainer, ctx, batch) in built.items():
            if set_step:
                ctx.step = r
            with ExitStack() as stack:
                blocks = [stack.enter_context(t) for t in timers(name)]
                t0 = time.perf_counter()
                step(trainer, ctx, batch)
                ms = (time.perf_counter() - t0) * 1e3
            if r >= warmup:
                samples[name].append(ms)
                parts[name].append(sum(b.ms for b in blocks))
    return samples, parts


def write(doc: dict, method: str, threads: int, out: str | None) -> Path:
    """Adds the machine's facts and writes benchmarks/results/<method>/step-<threads>thread.json."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    doc = {**doc, "machine": platform.node(), "cpu": platform.processor(), "cores": os.cpu_count(), "threads": threads,
           "torch": torch.__version__, "commit": commit}
    path = Path(out) if out else ROOT / "benchmarks/results" / method / f"step-{threads}thread.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")
    return path
