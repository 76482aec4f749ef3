"""The training loop every method shares.

Per epoch: train (seeded shuffling and augmentation), evaluate on the selection split of the
training dataset (never a test split), write `last.pt` and, when the selection accuracy improved,
`best.pt`, and append a line to `metrics.jsonl`. A run resumes from `last.pt` and then follows
exactly the same path as an uninterrupted one: all randomness is keyed on (seed, epoch).
`report()` evaluates `best.pt` on the configured eval sets, writes `final.json` and confusion PNGs.
Under `torchrun` (WORLD_SIZE > 1) it trains with DistributedDataParallel (gloo on CPU, nccl on GPU).
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

from fer_edge.data import open_dataset
from fer_edge.train import checkpoint
from fer_edge.train.config import TrainConfig, config_from_dict
from fer_edge.train.methods import get_method
from fer_edge.train.metrics import confusion_matrix, plot_confusion, summarize
from fer_edge.train.torch_data import TorchFaces, normalisation


def open_split(spec: str, num_classes: int, color: str, mode: str = "majority"):
    """'ferplus:test', 'ckplus', 'rafdb:/root@test' -> FaceDataset (FERPlus under `mode`)."""
    spec, _, split = spec.partition("@")
    kind, _, arg = spec.partition(":")
    if kind == "ferplus" and arg in ("train", "valid", "test"):
        spec, split = "ferplus", arg
    kwargs = {"num_classes": num_classes, "color": color}
    if kind == "ferplus":
        kwargs["mode"] = mode
    return open_dataset(spec, split or None, **kwargs)


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
        for key, specs in (("eval_sets", cfg.eval_sets), ("data.dataset", [cfg.data.dataset])):
            if any(str(s).startswith("unlabelled:") for s in specs):  # fail before training, not at the report
                raise ValueError(f"{key}: unlabelled faces have no labels to train, select or evaluate on "
                                 "(they can be an adaptation target, e.g. aglrls.target=unlabelled:<folder>)")
        self.method = get_method(cfg.method, cfg)
        build_data = getattr(self.method, "build_data", None)
        self.train_data, self.val_data, self.classes = build_data(self) if build_data else self._default_data()
        torch.manual_seed(cfg.seed)  # the initial weights are part of the run's seeded path
        d = cfg.data
        self.model = self.method.build_model(len(self.classes), 1 if d.color == "gray" else 3).to(self.device)
        self.net = self.model
        if self.world > 1:
            # methods whose switches leave parts unused in a step (AGLRLS ablations) say so
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(getattr(self.method, "has_unused_parameters", False)))
        o = cfg.optim
        groups = getattr(self.method, "param_groups", None)
        params = groups(self.model) if groups else [p for p in self.model.parameters() if p.requires_grad]
        if o.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.momentum > 0)
        elif o.optimizer == "adamw":
            self.opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        else:
            raise ValueError(f"optim.optimizer: expected sgd or adamw, got {o.optimizer!r}")
        per_rank = math.ceil(len(self.train_data) / self.world)
        self.steps_per_epoch = per_rank // d.batch_size
        if o.max_steps:
            self.steps_per_epoch = min(self.steps_per_epoch, o.max_steps)
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size {d.batch_size} is larger than the training set per process ({per_rank})")
        self.epoch, self.best, self.best_epoch, self.history = 0, -1.0, -1, []
        setup = getattr(self.method, "setup", None)
        if setup:
            setup(self)

    def _default_data(self):
        """(train, selection, classes) for single-dataset supervised methods."""
        cfg, d = self.cfg, self.cfg.data
        if d.augment not in ("none", "weak", "strong"):
            raise ValueError(f"data.augment: expected none, weak or strong, got {d.augment!r}")
        if d.label_mode not in ("majority", "probability"):
            raise ValueError(f"data.label_mode: expected majority or probability, got {d.label_mode!r}")
        train_mode = "probability" if d.label_mode == "probability" else "majority"
        train_set = open_split(self.split_spec("train"), d.num_classes, d.color, train_mode)
        val_set = open_split(self.split_spec(cfg.select_on), d.num_classes, d.color)
        if d.limit:
            train_set, val_set = train_set.subset(range(min(d.limit, len(train_set)))), val_set.subset(range(min(d.limit, len(val_set))))
        train_data = TorchFaces(train_set, d.image_size, True, d.augment, d.random_erasing, cfg.seed,
                                soft_targets=d.label_mode == "probability")
        return train_data, TorchFaces(val_set, d.image_size, False), train_set.classes

    def split_spec(self, split: str) -> str:
        """A split of the training dataset as an open_split spec; selection is never on a test split."""
        if split != "train" and "test" in split:
            raise ValueError("select_on: checkpoints are never selected on a test split")
        d = self.cfg.data.dataset
        return f"{d}:{split}" if d == "ferplus" else f"{d}@{split}"

    # -- schedule ------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        o = self.cfg.optim
        total = o.epochs * self.steps_per_epoch
        warm = int(o.warmup_epochs * self.steps_per_epoch)
        if step < warm:
            return o.lr * (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return 0.5 * o.lr * (1 + math.cos(math.pi * min(t, 1.0)))

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        mean, std = normalisation(self.cfg.data.color)
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "epoch": self.epoch,
                "method_state": getattr(self.method, "state_dict", dict)(),
                "best": self.best, "best_epoch": self.best_epoch, "history": self.history, "config": self.cfg.to_dict(),
                "classes": list(self.classes), "mean": mean, "std": std}

    def resume(self, path: Path) -> None:
        state = checkpoint.load(path, map_location=self.device)
        if state["config"].get("method") != self.cfg.method:
            raise checkpoint.CheckpointError(f"{path}: trained with method {state['config'].get('method')!r}, not {self.cfg.method!r}")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.epoch, self.best, self.best_epoch = state["epoch"], state["best"], state["best_epoch"]
        self.history = list(state["history"])
        if hasattr(self.method, "load_state_dict"):
            self.method.load_state_dict(state.get("method_state", {}))

    # -- loops -----------------------------------------------------------------------------------
    def _loader(self, data, train: bool):
        d = self.cfg.data
        if train:
            if self.world > 1:
                sampler = torch.utils.data.distributed.DistributedSampler(data, self.world, self.rank, shuffle=True,
                                                                          seed=self.cfg.seed, drop_last=True)
                sampler.set_epoch(self.epoch)
            else:
                g = torch.Generator().manual_seed(self.cfg.seed * 100003 + self.epoch)
                sampler = torch.utils.data.RandomSampler(data, generator=g)
            return torch.utils.data.DataLoader(data, d.batch_size, sampler=sampler, drop_last=True, num_workers=d.workers)
        return torch.utils.data.DataLoader(data, 256, shuffle=False, num_workers=d.workers)

    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def train_epoch(self) -> dict:
        own = getattr(self.method, "train_epoch", None)
        if own:  # methods with their own loop (two stages, paired domains) run it themselves
            return own(self)
        self.net.train()
        torch.manual_seed(self.cfg.seed * 100003 + self.epoch)  # dropout etc.: same on resume
        self.train_data.set_epoch(self.epoch)
        loader = self._loader(self.train_data, True)
        it = loader
        if self.rank == 0:
            from tqdm import tqdm

            it = tqdm(loader, total=self.steps_per_epoch, desc=f"epoch {self.epoch + 1}/{self.cfg.optim.epochs}",
                      leave=False, disable=os.environ.get("FER_EDGE_PROGRESS", "1") == "0")
        losses, accs = [], []
        for step, batch in enumerate(it):
            if step >= self.steps_per_epoch:
                break
            lr = self.lr_at(self.epoch * self.steps_per_epoch + step)
            for gr in self.opt.param_groups:
                gr["lr"] = lr * gr.get("lr_mult", 1.0)
            batch = [b.to(self.device, non_blocking=True) for b in batch]
            with self._autocast():
                loss, logs = self.method.loss(self.net, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {self.epoch + 1} step {step} (lr {lr:.3g})")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            losses.append(loss.item())
            accs.append(logs.get("acc", float("nan")))
            if self.rank == 0 and hasattr(it, "set_postfix") and step % 20 == 0:
                it.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", lr=f"{lr:.3g}")
        return {"train_loss": float(np.mean(losses)), "train_acc": float(np.mean(accs))}

    @torch.no_grad()
    def predict(self, data: TorchFaces) -> np.ndarray:
        self.model.eval()
        out = []
        for *inputs, _label, _target in self._loader(data, False):
            with self._autocast():
                out.append(self.method.predict(self.model, *[x.to(self.device) for x in inputs]).float().cpu())
        return torch.cat(out).numpy()

    def evaluate(self, data: TorchFaces, restrict_to_present: bool = False) -> dict:
        labels = data.labels
        if (np.asarray(labels) < 0).any():
            raise ValueError("cannot evaluate on unlabelled faces (label -1)")
        outputs = self.predict(data)
        result = summarize(confusion_matrix(labels, self.method.decide(outputs), len(self.classes)), self.classes)
        if restrict_to_present:
            # accuracy over the classes the eval set has (CK+ has no neutral): others masked out
            present = np.bincount(labels, minlength=len(self.classes)) > 0
            result["accuracy_shared_classes"] = float((self.method.decide(outputs, present) == labels).mean())
            result["shared_classes"] = [c for c, p in zip(self.classes, present) if p]
            rules = self.method.decision_rules(outputs)
            if rules:  # methods with several ways to decide (AGLRLS: GLPC, averaging, single heads)
                result["rules"] = {name: float((pred == labels).mean()) for name, pred in rules.items()}
        return result

    def fit(self, stop_after: int | None = None) -> dict:
        """Trains to optim.epochs (resuming from last.pt). `stop_after=n` returns after epoch n
        as an interruption would, with last.pt written."""
        last = self.out / "last.pt"
        if self.cfg.resume and last.is_file():
            self.resume(last)
            if self.rank == 0:
                print(f"resumed from {last} after epoch {self.epoch}")
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        while self.epoch < self.cfg.optim.epochs and (stop_after is None or self.epoch < stop_after):
            t0 = time.time()
            logs = self.train_epoch()
            self.epoch += 1
            if self.rank == 0:
                val = self.evaluate(self.val_data)
                logs.update(epoch=self.epoch, val_acc=val["accuracy"], val_mean_class_acc=val["mean_class_accuracy"],
                            lr=self.opt.param_groups[0]["lr"], seconds=round(time.time() - t0, 1))
                self.history.append(logs)
                improved = val["accuracy"] > self.best
                if improved:
                    self.best, self.best_epoch = val["accuracy"], self.epoch
                state = self.state()
                checkpoint.save(last, state)
                if improved:
                    checkpoint.save(self.out / "best.pt", state)
                with open(self.out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(logs) + "\n")
                print(f"epoch {self.epoch}: loss {logs['train_loss']:.4f} train acc {logs['train_acc']:.4f} "
                      f"val acc {val['accuracy']:.4f}{' *' if improved else ''} ({logs['seconds']} s)", flush=True)
            if self.world > 1:
                dist.barrier()
        return {"best_val_acc": self.best, "best_epoch": self.best_epoch}

    def report(self, sets: list[str] | None = None, checkpoint_path: Path | None = None) -> dict:
        """Evaluates best.pt (selected on the validation split) on the eval sets; writes
        final.json and confusion_<set>.png into the run folder."""
        path = checkpoint_path or self.out / getattr(self.method, "report_checkpoint", "best.pt")
        state = checkpoint.load(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        if hasattr(self.method, "load_state_dict"):
            self.method.load_state_dict(state.get("method_state", {}))
        results = {"checkpoint": str(path), "selected_on": "last epoch (no selection)" if path.name == "last.pt" else self.cfg.select_on, "best_epoch": state["best_epoch"],
                   "val_acc": state["best"], "seed": self.cfg.seed, "sets": {}}
        d = self.cfg.data
        for spec in sets if sets is not None else self.cfg.eval_sets:
            eval_data = getattr(self.method, "eval_data", None)
            data = eval_data(self, spec) if eval_data else TorchFaces(open_split(spec, d.num_classes, d.color), d.image_size, False)
            res = self.evaluate(data, restrict_to_present=True)
            results["sets"][spec] = res
            safe = spec.replace(":", "_").replace("/", "_").replace("@", "_")
            plot_confusion(np.array(res["confusion"]), self.classes, self.out / f"confusion_{safe}.png",
                           f"{spec}: acc {res['accuracy']:.4f}")
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
