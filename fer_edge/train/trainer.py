"""The training loop every method shares (the method contract: fer_edge/train/methods/base.py).

The trainer runs the method's stages in order. Per epoch: train (seeded shuffling and
augmentation; the stage's optimiser and learning-rate schedule), the method's epoch hooks,
evaluation on the selection split of the training dataset (never a test split) when the stage
is evaluated, `last.pt` and, when the selection accuracy improved, `best.pt`, and a line in
`metrics.jsonl` with every loss term and logged scalar. A run resumes from `last.pt` in any
stage and then follows exactly the same path as an uninterrupted one: all randomness is keyed on
(seed, epoch). `report()` evaluates the reported checkpoint (best.pt, or last.pt for methods that
do not select) on the eval sets with the method's decision rule, and writes `final.json` and
confusion PNGs. Under `torchrun` (WORLD_SIZE > 1) it trains with DistributedDataParallel (gloo
on CPU, nccl on GPU), every loader sharded by rank.
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from fer_edge import decisions
from fer_edge.train import checkpoint
from fer_edge.train.config import TrainConfig, config_from_dict
from fer_edge.train.data_roles import RunData, check_roles, eval_loader, stage_loader, stage_steps
from fer_edge.train.ema import EMA
from fer_edge.train.methods import Stage, TrainContext, get_method
from fer_edge.train.metrics import (ambiguous_split, basic_six_accuracy, confusion_matrix, plot_confusion, plot_curves, sequence_vote,
                                    summarize)
from fer_edge.train.torch_data import normalisation


def lr_factor(stage: Stage, stage_step: int, stage_epoch: int, total_steps: int, steps_per_epoch: int) -> float:
    """The stage's learning rate at a step (before each group's lr_mult)."""
    if stage.schedule == "constant":
        return stage.lr
    if stage.schedule == "exponential":
        return stage.lr * stage.gamma ** stage_epoch
    if stage.schedule == "dann":
        return stage.lr / (1 + 10 * stage_step / max(1, total_steps)) ** 0.75
    warm = int(stage.warmup_epochs * steps_per_epoch)
    if stage_step < warm:
        return stage.lr * (stage_step + 1) / warm
    t = (stage_step - warm) / max(1, total_steps - warm)
    return 0.5 * stage.lr * (1 + math.cos(math.pi * min(t, 1.0)))


def build_optimizer(stage: Stage, groups: list[dict]) -> torch.optim.Optimizer:
    if stage.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=stage.lr, momentum=stage.momentum, weight_decay=stage.weight_decay,
                               nesterov=stage.nesterov and stage.momentum > 0)
    cls = torch.optim.AdamW if stage.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=stage.lr, betas=stage.betas, weight_decay=stage.weight_decay)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.method = get_method(cfg.method, cfg)
        self.stages = [s for s in self.method.stages() if s.epochs > 0]
        if not self.stages:
            raise ValueError(f"nothing to train: every stage of method {cfg.method} has 0 epochs (optim.epochs, ...)")
        if len({s.name for s in self.stages}) != len(self.stages):
            raise ValueError(f"method {cfg.method}: stage names must be unique")
        check_roles(cfg, self.stages)
        self.data = RunData(cfg, self.method.fields, self.rank)
        self.classes = self.data.classes
        if self.world > 1 and self.rank != 0:
            dist.barrier()  # rank 0 fills the landmark caches first; the others then read them
        for stage in self.stages:  # open every role now: a missing or empty dataset fails before training
            for role in stage.data:
                self.data.role(role)
        self.val_data = self.data.selection() if any(s.evaluate for s in self.stages) else None
        if self.world > 1 and self.rank == 0:
            dist.barrier()
        torch.manual_seed(cfg.seed)  # the initial weights are part of the run's seeded path
        d = cfg.data
        self.model = self.method.build_model(len(self.classes), 1 if d.color == "gray" else 3).to(self.device)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.method.has_unused_parameters)
        self.ema = EMA(self.model, self.method.ema_decay) if self.method.ema_decay > 0 else None
        self.opt, self.opt_stage = None, None
        self.epoch, self.best, self.best_epoch, self.history = 0, -1.0, -1, []
        self._eval_faces: dict = {}
        self.method.setup(self._context(None))

    # -- stages --------------------------------------------------------------------------------
    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    def stage_at(self, epoch: int) -> tuple[Stage, int]:
        """The stage that trains epoch `epoch` (0-based) and the epoch it started at."""
        start = 0
        for s in self.stages:
            if epoch < start + s.epochs:
                return s, start
            start += s.epochs
        raise ValueError(f"epoch {epoch} is past the last stage ({self.total_epochs} epochs)")

    def _steps(self, stage: Stage) -> int:
        faces = [self.data.role(r) for r in stage.data]
        batches = [stage.batch.get(r, self.cfg.data.batch_size) for r in stage.data]
        return stage_steps(stage, faces, batches, self.world, self.cfg.optim.max_steps)

    def _optimizer_for(self, stage: Stage) -> None:
        if self.opt_stage != stage.name:  # every stage starts with a fresh optimiser
            self.opt = build_optimizer(stage, self.method.param_groups(self.model, stage))
            self.opt_stage = stage.name

    # -- context for the method ----------------------------------------------------------------
    def _context(self, stage: Stage | None, steps: int = 0, logs: dict | None = None) -> TrainContext:
        start = self.stage_at(self.epoch)[1] if stage is not None and self.epoch < self.total_epochs else 0

        def log(**scalars):
            if logs is not None:
                for k, v in scalars.items():
                    logs.setdefault(k, []).append(float(v))

        return TrainContext(model=self.net, module=self.model, teacher=None if self.ema is None else self.ema.module,
                            device=self.device, cfg=self.cfg, stage=stage, epoch=self.epoch,
                            stage_epoch=self.epoch - start, step=0, steps_per_epoch=steps, stage_step=0,
                            stage_steps=steps * (stage.epochs if stage else 0), rank=self.rank, world=self.world,
                            log=log, outputs=self.role_outputs, num_faces=lambda role: len(self.data.role(role)),
                            role_labels=lambda role: np.asarray(self.data.role(role).labels),
                            autocast=self._autocast, history=list(self.history), eval_outputs=self.eval_outputs)

    def eval_outputs(self, spec: str, as_selection: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`predict` outputs and labels of a labelled dataset spec (opened once per run); whole, or
        with `as_selection` cut as the selection split is (data.limit)."""
        key = (spec, as_selection)
        if key not in self._eval_faces:
            self._eval_faces[key] = (self.data._faces(spec, self.cfg.data.num_classes) if as_selection
                                     else self.data.eval_set(spec))
        faces = self._eval_faces[key]
        labels = np.asarray(faces.labels)
        if (labels < 0).any():
            raise ValueError(f"{spec}: has unlabelled faces; a check set needs a label for every face")
        return self.predict(faces), labels

    def role_outputs(self, role: str) -> np.ndarray:
        """`predict` outputs of every face of a data role, un-augmented, in eval mode."""
        return self.predict(self.data.role(role))

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        mean, std = normalisation(self.cfg.data.color)
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "stage": self.opt_stage,
                "ema": None if self.ema is None else self.ema.state_dict(), "epoch": self.epoch,
                "ema_updates": None if self.ema is None else self.ema.updates,
                "method_state": self.method.state_dict(), "best": self.best, "best_epoch": self.best_epoch,
                "history": self.history, "config": self.cfg.to_dict(), "classes": list(self.classes), "mean": mean, "std": std}

    def resume(self, path: Path) -> None:
        state = checkpoint.load(path, map_location=self.device)
        if state["config"].get("method") != self.cfg.method:
            raise checkpoint.CheckpointError(f"{path}: trained with method {state['config'].get('method')!r}, not {self.cfg.method!r}")
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
            # checkpoints from before the warm-up have no count: continue at the configured decay
            self.ema.updates = state.get("ema_updates") or 10 ** 9
        self.epoch, self.best, self.best_epoch = state["epoch"], state["best"], state["best_epoch"]
        self.history = list(state["history"])
        self.method.load_state_dict(state.get("method_state", {}))
        if self.epoch < self.total_epochs:
            stage, _ = self.stage_at(self.epoch)
            self._optimizer_for(stage)
            if state.get("stage", stage.name) == stage.name:  # inside the stage: continue its optimiser
                self.opt.load_state_dict(state["optimizer"])

    # -- loops -----------------------------------------------------------------------------------
    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _progress(self, iterable, total: int, desc: str):
        if self.rank != 0 or os.environ.get("FER_EDGE_PROGRESS", "1") == "0":
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False)

    def train_epoch(self) -> dict:
        stage, start = self.stage_at(self.epoch)
        self._optimizer_for(stage)
        steps = self._steps(stage)
        logs: dict[str, list] = {}
        ctx = self._context(stage, steps, logs)
        if self.epoch == start:
            self.method.on_stage_start(ctx)
        self.method.on_epoch_start(ctx)
        self.net.train()
        torch.manual_seed(self.cfg.seed * 100003 + self.epoch)  # dropout etc.: same on resume
        loader = stage_loader(stage, self.data, self.epoch, steps, self.cfg.seed, self.rank, self.world, self.cfg.data.workers)
        desc = f"epoch {self.epoch + 1}/{self.total_epochs}" + (f" {stage.name}" if len(self.stages) > 1 else "")
        it = self._progress(loader, steps, desc)
        totals = []
        for step, batch in enumerate(it):
            if step >= steps:
                break
            ctx.step, ctx.stage_step = step, (self.epoch - start) * steps + step
            lr = lr_factor(stage, ctx.stage_step, ctx.stage_epoch, ctx.stage_steps, steps)
            for g in self.opt.param_groups:
                g["lr"] = lr * g.get("lr_mult", 1.0)
            batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            with self._autocast():
                terms = self.method.train_step(ctx, batch)
            if not terms:
                raise ValueError(f"{self.cfg.method}.train_step returned no loss terms")
            loss = None
            for v in terms.values():  # in the method's order: sums are bit-stable across runs
                loss = v if loss is None else loss + v
            if not torch.isfinite(loss):
                bad = [k for k, v in terms.items() if not torch.isfinite(v)]
                raise FloatingPointError(f"loss became {loss.item()} at epoch {self.epoch + 1} step {step} (stage "
                                         f"{stage.name}, lr {lr:.3g}; non-finite terms: {', '.join(bad)})")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if self.ema is not None:
                self.ema.update(self.model)
            totals.append(loss.item())
            for k, v in terms.items():
                logs.setdefault(f"{k}_loss", []).append(v.item())
            if hasattr(it, "set_postfix") and step % 20 == 0:
                it.set_postfix(loss=f"{np.mean(totals[-50:]):.3f}", lr=f"{lr:.3g}")
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise FloatingPointError(f"the weights stopped being finite in epoch {self.epoch + 1} (stage {stage.name})")
        out = {"stage": stage.name, "train_loss": float(np.mean(totals))}
        out.update({k: float(np.mean(v)) for k, v in logs.items()})
        out.update(self.method.on_epoch_end(ctx))
        return out

    def eval_model(self):
        """The module that is evaluated and exported (the EMA teacher's when the method says so)."""
        model = self.ema.module if self.ema is not None and self.method.evaluate_with_ema else self.model
        return self.method.export_module(model)

    @torch.no_grad()
    def predict(self, data) -> np.ndarray:
        self.model.eval()
        module = self.eval_model().eval()
        extra = [s.name for s in self.method.inference().inputs]
        out = []
        for batch in eval_loader(data, self.cfg.data.workers):
            with self._autocast():
                inputs = [batch[name].to(self.device) for name in extra]
                out.append(self.method.predict(module, batch["image"].to(self.device), *inputs).float().cpu())
        return torch.cat(out).numpy()

    def evaluate(self, data, restrict_to_present: bool = False) -> dict:
        labels = np.asarray(data.labels)
        if (labels < 0).any():
            raise ValueError("cannot evaluate on unlabelled faces (label -1)")
        outputs = self.predict(data)
        rule = self.method.decision()
        pred, _ = decisions.decide(outputs, rule.rule, rule.params)
        result = summarize(confusion_matrix(labels, pred, len(self.classes)), self.classes)
        result["decision"] = rule.rule
        if restrict_to_present:
            # per-face labels, in the eval set's order: paired tests between runs (recipe tables)
            result["predictions"] = pred.astype(int).tolist()
            result["labels"] = labels.astype(int).tolist()
            # accuracy over the classes the eval set has (CK+ has no neutral): others masked out
            present = np.bincount(labels, minlength=len(self.classes)) > 0
            result["accuracy_shared_classes"] = float((decisions.decide(outputs, rule.rule, rule.params, present)[0] == labels).mean())
            result["shared_classes"] = [c for c, p in zip(self.classes, present) if p]
            six = basic_six_accuracy(outputs, labels, self.classes, rule.rule, rule.params)
            if six is not None:
                result["basic_six"] = six
            if getattr(data, "candidates", None) is not None:  # FERPlus votes: where partial labels matter
                result["ambiguous_faces"] = ambiguous_split(pred, labels, data.candidates)
            if getattr(data, "groups", None) is not None:  # frames of one sequence (CK+): one vote each
                result["sequence_vote"] = sequence_vote(pred, labels, data.groups)
                result["groups"] = list(data.groups)  # paired tests between runs cluster by sequence
            rules = self.method.decision_rules()
            if rules:  # methods with several ways to decide, reported side by side
                result["rules"] = {name: float((decisions.decide(outputs, r.rule, r.params)[0] == labels).mean())
                                   for name, r in rules.items()}
        return result

    def fit(self, stop_after: int | None = None) -> dict:
        """Trains every stage (resuming from last.pt). `stop_after=n` returns after epoch n as an
        interruption would, with last.pt written."""
        last = self.out / "last.pt"
        if self.cfg.resume and last.is_file():
            self.resume(last)
            if self.rank == 0:
                print(f"resumed from {last} after epoch {self.epoch}")
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        while self.epoch < self.total_epochs and (stop_after is None or self.epoch < stop_after):
            t0 = time.time()
            stage, _ = self.stage_at(self.epoch)
            logs = self.train_epoch()
            self.epoch += 1
            if self.rank == 0:
                improved = False
                logs.update(epoch=self.epoch, lr=self.opt.param_groups[0]["lr"])
                if stage.evaluate:
                    val = self.evaluate(self.val_data)
                    logs.update(val_acc=val["accuracy"], val_mean_class_acc=val["mean_class_accuracy"])
                    improved = val["accuracy"] > self.best
                    if improved:
                        self.best, self.best_epoch = val["accuracy"], self.epoch
                logs["seconds"] = round(time.time() - t0, 1)
                self.history.append(logs)
                state = self.state()
                checkpoint.save(last, state)
                if improved:
                    checkpoint.save(self.out / "best.pt", state)
                with open(self.out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(logs) + "\n")
                try:  # curves.png beside metrics.jsonl, redrawn every epoch
                    plot_curves(self.history, self.out / "curves.png", f"{self.cfg.method}: {self.out}")
                except (ImportError, OSError, ValueError) as exc:  # a plot never stops training
                    print(f"curves.png not drawn: {exc}", flush=True)
                val_text = f" val acc {logs['val_acc']:.4f}{' *' if improved else ''}" if stage.evaluate else ""
                print(f"epoch {self.epoch} ({stage.name}): loss {logs['train_loss']:.4f}"
                      + (f" train acc {logs['train_acc']:.4f}" if "train_acc" in logs else "")
                      + f"{val_text} ({logs['seconds']} s)", flush=True)
            if self.world > 1:
                dist.barrier()
        return {"best_val_acc": self.best, "best_epoch": self.best_epoch}

    @property
    def report_checkpoint(self) -> Path:
        return self.out / ("best.pt" if self.method.select_checkpoint and (self.out / "best.pt").is_file() else "last.pt")

    def load_checkpoint(self, path: Path) -> dict:
        state = checkpoint.load(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.method.load_state_dict(state.get("method_state", {}))
        return state

    def report(self, sets: list[str] | None = None, checkpoint_path: Path | None = None) -> dict:
        """Evaluates the reported checkpoint on the eval sets; writes final.json and
        confusion_<set>.png into the run folder."""
        path = Path(checkpoint_path or self.report_checkpoint)
        state = self.load_checkpoint(path)
        results = {"checkpoint": str(path), "selected_on": "last epoch (no selection)" if path.name == "last.pt" else self.cfg.select_on,
                   "best_epoch": state["best_epoch"], "val_acc": state["best"], "seed": self.cfg.seed,
                   "decision": self.method.decision().rule, "sets": {}}
        for spec in sets if sets is not None else self.cfg.eval_sets:
            res = self.evaluate(self.data.eval_set(spec), restrict_to_present=True)
            results["sets"][spec] = res
            safe = spec.replace(":", "_").replace("/", "_").replace("@", "_")
            plot_confusion(np.array(res["confusion"]), self.classes, self.out / f"confusion_{safe}.png",
                           f"{spec}: acc {res['accuracy']:.4f}")
        summary = self.method.summary(self.history)
        if summary:
            results["method_summary"] = summary
        (self.out / "final.json").write_text(json.dumps(results, indent=2))
        return results


def trainer_from_checkpoint(path: str | Path, **overrides) -> Trainer:
    """A Trainer set up from a checkpoint's own config (for `fer-edge eval`)."""
    state = checkpoint.load(path)
    cfg = config_from_dict(state["config"])
    for k, v in overrides.items():
        setattr(cfg, k, v)
    cfg.resume = False
    return Trainer(cfg)
