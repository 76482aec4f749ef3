"""AGLRLS training (methods.md §1): labelled source, unlabelled target, two stages.

Stage 1 (source only): the 7 classifiers on source faces, CE weights [5,1,1,1,1,1,5].
Stage 2 (transfer): each step takes `source_batch` source faces and `target_batch` target faces
(a weak and a strong view of each); loss = sum_k w_k CE_source + sum_k w_k L_pseudo +
cdan_weight * sum_k L_cdan with w = [7,1,1,1,1,1,7]; heads, branches, crop nets and
discriminators learn at head_lr_mult x the backbone's lr. The losses are the authors' plain
weighted sums (not averages), so learning rates are smaller than for the baseline.

Learning status (beta) for the dynamic thresholds and GLPC: measured on the target pool's
un-augmented faces in eval mode at the start of stage 2 and after every transfer epoch (counts
reset each time); epoch e's pseudo labels use the beta measured after epoch e-1, and the beta
after the last epoch ships with the model for GLPC. Target labels are never read here: the
target pool is opened with `aglrls.target_classes` = 8 by default so CK+'s contempt faces stay
in the unlabelled pool, and only the final report compares with CK+'s labels. The report uses
the last checkpoint (no checkpoint selection).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_edge.models import load_weights
from fer_edge.models.aglrls import AGLRLSNet
from fer_edge.runtime.glpc import confidence_thresholds, glpc
from fer_edge.train.adversarial import CDANDiscriminator, cdan_e_loss, grl_coeff
from fer_edge.train.methods import METHODS, Method
from fer_edge.train.pseudo_labels import DynamicThresholds, pseudo_label_loss
from fer_edge.train.torch_data import LandmarkFaces

SOURCE_WEIGHTS = (5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 5.0)
TRANSFER_WEIGHTS = (7.0, 1.0, 1.0, 1.0, 1.0, 1.0, 7.0)
ALIGNED = {"none": (), "global": (0,), "global_local": tuple(range(7))}
CLASSIFIERS = ("global", "left_eye", "right_eye", "nose", "left_mouth", "right_mouth", "concat")


def softmax_np(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis, keepdims=True)


class AGLRLSModel(nn.Module):
    """The network and its domain discriminators (one per feature, or one shared by the five
    local features). Only `net` is exported; the discriminators exist for training."""

    def __init__(self, net: AGLRLSNet, num_classes: int, shared_discriminator: bool, feat_dim: int = 64):
        super().__init__()
        self.net = net
        dims = [feat_dim, feat_dim, 6 * feat_dim] if shared_discriminator else [feat_dim] * 6 + [6 * feat_dim]
        self.discriminators = nn.ModuleList(CDANDiscriminator(d, num_classes) for d in dims)
        self.shared_discriminator = shared_discriminator

    def discriminator(self, k: int) -> CDANDiscriminator:
        if not self.shared_discriminator:
            return self.discriminators[k]
        return self.discriminators[0] if k == 0 else self.discriminators[2] if k == 6 else self.discriminators[1]

    def forward(self, images, landmarks):
        return self.net(images, landmarks)


class AGLRLS(Method):
    name = "aglrls"
    needs_landmarks = True
    report_checkpoint = "last.pt"  # no selection: the target's labels may not choose, the source's do not know
    has_unused_parameters = True  # discriminators of unaligned features, crop nets in stage 1 under DDP

    def __init__(self, cfg):
        super().__init__(cfg)
        a = cfg.aglrls
        if a.align not in ALIGNED:
            raise ValueError(f"aglrls.align: expected one of {tuple(ALIGNED)}, got {a.align!r}")
        if a.shared_local not in ("auto", "yes", "no"):
            raise ValueError(f"aglrls.shared_local: expected auto, yes or no, got {a.shared_local!r}")
        if cfg.model.backbone not in ("ir50", "mobilenet_v2"):
            raise ValueError(f"AGLRLS needs a backbone with a stage-2 map: ir50 or mobilenet_v2, got {cfg.model.backbone!r}")
        self.source_epochs = 0 if a.init_from else a.source_epochs
        if self.source_epochs > cfg.optim.epochs:
            raise ValueError(f"aglrls.source_epochs ({self.source_epochs}) exceeds optim.epochs ({cfg.optim.epochs}), "
                             "which counts both stages")
        self.thresholds: DynamicThresholds | None = None
        self.beta: np.ndarray | None = None  # learning status after the last measured epoch, [7, C]

    # -- data ------------------------------------------------------------------------------------
    def landmark_file(self, spec: str) -> Path:
        """The landmark cache of a dataset spec ('ferplus:train' -> <dir>/ferplus_train.npz)."""
        from fer_edge.data.paths import cache_dir

        a = self.cfg.aglrls
        folder = Path(a.landmarks_dir) if a.landmarks_dir else cache_dir() / "landmarks"
        return folder / (spec.replace(":", "_").replace("/", "_").replace("@", "_").strip("_") + ".npz")

    def _open(self, trainer, spec: str, num_classes: int, views: str, mode: str = "majority") -> LandmarkFaces:
        from fer_edge.data import landmarks
        from fer_edge.train.trainer import open_split

        d = self.cfg.data
        ds = open_split(spec, num_classes, d.color, mode)
        if d.limit:
            ds = ds.subset(range(min(d.limit, len(ds))))
        stats = landmarks.ensure(ds, self.landmark_file(spec), progress=trainer.rank == 0)
        if stats["detected_now"] and trainer.rank == 0:
            print(f"{spec}: detected landmarks for {stats['detected_now']} faces (cached in {self.landmark_file(spec)})")
        return LandmarkFaces(ds, d.image_size, views, self.cfg.seed)

    def build_data(self, trainer):
        d = self.cfg.data
        if d.num_classes != 7:
            raise ValueError("AGLRLS trains the 7 basic expressions (data.num_classes=7)")
        source = self._open(trainer, trainer.split_spec("train"), d.num_classes, "weak")
        val = self._open(trainer, trainer.split_spec(self.cfg.select_on), d.num_classes, "eval")
        self.target = self._open(trainer, self.cfg.aglrls.target, self.cfg.aglrls.target_classes, "weak+strong")
        self.target_eval = self.target.with_views("eval")  # learning status: the same pool, un-augmented
        self.thresholds = DynamicThresholds(7, d.num_classes, self.cfg.aglrls.tau)
        from fer_edge.data.labels import view

        return source, val, view(d.num_classes)

    def eval_data(self, trainer, spec: str) -> LandmarkFaces:
        return self._open(trainer, spec, self.cfg.data.num_classes, "eval")

    # -- model -----------------------------------------------------------------------------------
    def build_model(self, num_classes: int, in_channels: int) -> nn.Module:
        m, a = self.cfg.model, self.cfg.aglrls
        shared_local = None if a.shared_local == "auto" else a.shared_local == "yes"
        net = AGLRLSNet(num_classes, m.backbone, self.cfg.data.image_size, m.width, in_channels, shared_local, a.shared_heads)
        if m.pretrained:
            load_weights(net.backbone, m.pretrained)
        return AGLRLSModel(net, num_classes, a.shared_discriminator)

    def param_groups(self, model: AGLRLSModel) -> list[dict]:
        backbone = list(model.net.backbone.parameters())
        ids = {id(p) for p in backbone}
        rest = [p for p in model.parameters() if id(p) not in ids]
        return [{"params": backbone, "lr_mult": 1.0, "name": "backbone"}, {"params": rest, "lr_mult": 1.0, "name": "heads"}]

    def setup(self, trainer) -> None:
        a = self.cfg.aglrls
        if a.init_from:
            from fer_edge.train import checkpoint

            state = checkpoint.load(a.init_from, map_location=trainer.device)
            if state["config"].get("method") != self.name:
                raise checkpoint.CheckpointError(f"{a.init_from}: not an AGLRLS checkpoint (method {state['config'].get('method')!r})")
            trainer.model.load_state_dict(state["model"])

    def state_dict(self) -> dict:
        return {"beta": None if self.beta is None else self.beta.tolist()}

    def load_state_dict(self, state: dict) -> None:
        beta = (state or {}).get("beta")
        self.beta = None if beta is None else np.asarray(beta, dtype=np.float64)

    def export_extras(self, model) -> dict:
        if self.beta is None:
            raise ValueError("this AGLRLS checkpoint has no learning status (beta) yet: it never reached stage 2")
        return {"glpc_beta": self.beta.tolist(), "glpc_tau": self.cfg.aglrls.tau, "classifiers": list(CLASSIFIERS),
                "outputs": "logits [N, 7 classifiers, classes]", "landmarks_input": "[N, 5, 2] pixels of the model input"}

    # -- inference -------------------------------------------------------------------------------
    def predict(self, model, images, landmarks) -> torch.Tensor:
        """[N, 7, C] logits of the seven classifiers (what the exported graph returns)."""
        net = model.net if isinstance(model, AGLRLSModel) else model
        return net.all_logits(images, landmarks)

    def _probs(self, outputs: np.ndarray, allowed=None) -> np.ndarray:
        logits = np.asarray(outputs, np.float64)
        if allowed is not None:
            logits = np.where(np.asarray(allowed)[None, None], logits, -np.inf)
        return softmax_np(logits).transpose(1, 0, 2)  # [7, N, C]

    def decide(self, outputs: np.ndarray, allowed=None) -> np.ndarray:
        """GLPC with the stored learning status (plain averaging before stage 2 has measured one)."""
        probs = self._probs(outputs, allowed)
        if self.beta is None:
            return probs.mean(0).argmax(1)
        return glpc(probs, self.beta, self.cfg.aglrls.tau)

    def decision_rules(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        probs = self._probs(outputs)
        rules = {"average_7": probs.mean(0).argmax(1), "global": probs[0].argmax(1), "concat": probs[6].argmax(1)}
        if self.beta is not None:
            rules["glpc"] = glpc(probs, self.beta, self.cfg.aglrls.tau)
        return rules

    # -- training --------------------------------------------------------------------------------
    def train_epoch(self, trainer) -> dict:
        if trainer.epoch < self.source_epochs:
            return self._source_epoch(trainer)
        if trainer.epoch == self.source_epochs or self.beta is None:
            self.measure_status(trainer)  # stage 2 starts: learning status of the stage-1 model
        logs = self._transfer_epoch(trainer)
        self.measure_status(trainer)
        logs["beta_mean"] = float(self.beta.mean())
        return logs

    def _set_lr(self, trainer, backbone_lr: float, head_mult: float) -> None:
        for g in trainer.opt.param_groups:
            g["lr"] = backbone_lr * (head_mult if g.get("name") == "heads" else 1.0)

    def _steps(self, trainer, natural: int) -> int:
        m = self.cfg.optim.max_steps
        return max(1, min(natural, m) if m else natural)

    def _source_epoch(self, trainer) -> dict:
        d, o = self.cfg.data, self.cfg.optim
        trainer.net.train()
        torch.manual_seed(self.cfg.seed * 100003 + trainer.epoch)
        trainer.train_data.set_epoch(trainer.epoch)
        steps = self._steps(trainer, len(trainer.train_data) // d.batch_size)
        total, warm = self.source_epochs * steps, int(o.warmup_epochs * steps)
        loader = trainer._loader(trainer.train_data, True)
        w = torch.tensor(SOURCE_WEIGHTS, device=trainer.device)
        losses, accs = [], []
        for step, (x, lm, y, _t) in enumerate(self._progress(trainer, loader, steps, "stage 1")):
            if step >= steps:
                break
            it = trainer.epoch * steps + step
            lr = o.lr * (it + 1) / warm if it < warm else 0.5 * o.lr * (1 + math.cos(math.pi * (it - warm) / max(1, total - warm)))
            self._set_lr(trainer, lr, 1.0)
            x, lm, y = x.to(trainer.device), lm.to(trainer.device), y.to(trainer.device)
            with trainer._autocast():
                logits = trainer.net(x, lm)["logits"]
            loss = sum(w[k] * F.cross_entropy(z.float(), y) for k, z in enumerate(logits))
            self._step(trainer, loss, step)
            losses.append(loss.item())
            accs.append((logits[6].argmax(1) == y).float().mean().item())
        return {"stage": 1, "train_loss": float(np.mean(losses)), "train_acc": float(np.mean(accs))}

    def _transfer_epoch(self, trainer) -> dict:
        from fer_edge.data.splits import PairedSampler

        a, dev = self.cfg.aglrls, trainer.device
        trainer.net.train()
        torch.manual_seed(self.cfg.seed * 100003 + trainer.epoch)
        for data in (trainer.train_data, self.target):
            data.set_epoch(trainer.epoch)
        natural = a.steps_per_epoch or -(-len(self.target) // a.target_batch)
        sampler = PairedSampler(len(trainer.train_data), len(self.target), a.source_batch, a.target_batch, self.cfg.seed)
        sampler.set_epoch(trainer.epoch)
        steps = self._steps(trainer, min(natural, len(sampler)))
        transfer_epochs = self.cfg.optim.epochs - self.source_epochs
        total = transfer_epochs * steps
        collate = torch.utils.data.default_collate
        batches = ((collate([trainer.train_data[i] for i in s]), collate([self.target[i] for i in t])) for s, t in sampler)
        w = torch.tensor(TRANSFER_WEIGHTS, device=dev)
        aligned, use_target = ALIGNED[a.align], bool(ALIGNED[a.align]) or a.pseudo_labels
        thr = torch.from_numpy(self.thresholds_from_beta()).to(dev)
        logs = {k: [] for k in ("loss", "ce", "pseudo", "cdan", "mask", "acc")}
        for step, (src, tgt) in enumerate(self._progress(trainer, batches, steps, "stage 2")):
            if step >= steps:
                break
            it = (trainer.epoch - self.source_epochs) * steps + step
            self._set_lr(trainer, a.lr_transfer / (1 + 10 * it / total) ** 0.75, a.head_lr_mult)
            xs, ls, ys = src[0].to(dev), src[1].to(dev), src[2].to(dev)
            ns, nt = len(xs), len(tgt[0])
            parts_x, parts_l = [xs], [ls]
            if use_target:
                parts_x.append(tgt[0].to(dev))
                parts_l.append(tgt[1].to(dev))
            if a.pseudo_labels:
                parts_x.append(tgt[2].to(dev))
                parts_l.append(tgt[3].to(dev))
            with trainer._autocast():
                out = trainer.net(torch.cat(parts_x), torch.cat(parts_l))  # one batch: BN sees both domains, as CDAN
            feats, logits = out["features"], [z.float() for z in out["logits"]]
            ce = sum(w[k] * F.cross_entropy(z[:ns], ys) for k, z in enumerate(logits))
            loss, pseudo, cdan, mask_rate = ce, torch.zeros((), device=dev), torch.zeros((), device=dev), 0.0
            if a.pseudo_labels:
                masks = []
                for k, z in enumerate(logits):
                    lk, mask = pseudo_label_loss(torch.softmax(z[ns:ns + nt], 1), z[ns + nt:], thr[k])
                    pseudo = pseudo + w[k] * lk
                    masks.append(mask.mean().item())
                loss = loss + pseudo
                mask_rate = float(np.mean(masks))
            if aligned:
                coeff = grl_coeff(it, a.grl_max_iter or total)
                for k in aligned:
                    probs = torch.softmax(logits[k][:ns + nt], 1)
                    cdan = cdan + cdan_e_loss(trainer.model.discriminator(k), feats[k][:ns + nt].float(), probs, ns, coeff)
                loss = loss + a.cdan_weight * cdan
            self._step(trainer, loss, step)
            for key, v in (("loss", loss.item()), ("ce", ce.item()), ("pseudo", pseudo.item()), ("cdan", cdan.item()),
                           ("mask", mask_rate), ("acc", (logits[6][:ns].argmax(1) == ys).float().mean().item())):
                logs[key].append(v)
        out = {"stage": 2, "train_loss": float(np.mean(logs["loss"])), "train_acc": float(np.mean(logs["acc"]))}
        out.update({f"{k}_loss": float(np.mean(logs[k])) for k in ("ce", "pseudo", "cdan")})
        out["pseudo_label_rate"] = float(np.mean(logs["mask"]))
        return out

    def _step(self, trainer, loss: torch.Tensor, step: int) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at epoch {trainer.epoch + 1} step {step}")
        trainer.opt.zero_grad(set_to_none=True)
        loss.backward()
        trainer.opt.step()

    def _progress(self, trainer, iterable, steps: int, stage: str):
        import os

        if trainer.rank != 0 or os.environ.get("FER_EDGE_PROGRESS", "1") == "0":
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, total=steps, leave=False, desc=f"epoch {trainer.epoch + 1}/{self.cfg.optim.epochs} {stage}")

    def thresholds_from_beta(self) -> np.ndarray:
        return confidence_thresholds(self.beta, self.cfg.aglrls.tau).astype(np.float32)

    @torch.no_grad()
    def measure_status(self, trainer) -> None:
        """Learning status of every classifier on the unlabelled target pool (eval mode, no
        augmentation); the counts start from zero each time."""
        self.thresholds.reset()
        for x, lm, _y, _t in trainer._loader(self.target_eval, False):
            with trainer._autocast():
                logits = self.predict(trainer.model.eval(), x.to(trainer.device), lm.to(trainer.device)).float()
            self.thresholds.update([torch.softmax(logits[:, k], 1) for k in range(logits.shape[1])])
        trainer.net.train()
        self.beta = self.thresholds.beta.numpy().copy()


METHODS[AGLRLS.name] = AGLRLS
