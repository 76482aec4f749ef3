"""Classification metrics and the confusion-matrix plot."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """[true, predicted] counts."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def summarize(cm: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, mean class accuracy (over classes present) and per-class accuracy."""
    support = cm.sum(1)
    correct = np.diag(cm)
    per_class = {c: (float(correct[i] / support[i]) if support[i] else None) for i, c in enumerate(classes)}
    present = support > 0
    return {
        "accuracy": float(correct.sum() / max(cm.sum(), 1)),
        "mean_class_accuracy": float((correct[present] / support[present]).mean()) if present.any() else 0.0,
        "per_class_accuracy": per_class,
        "count": int(cm.sum()),
        "confusion": cm.tolist(),
    }


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            if cm[i].sum():
                ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Training curves beside metrics.jsonl: every logged loss term (left) and the accuracies
    (train, validation; right) per epoch, stage boundaries marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    losses = sorted({k for h in history for k, v in h.items() if k.endswith("loss") and isinstance(v, (int, float))})
    for k in losses:
        pts = [(h["epoch"], h[k]) for h in history if isinstance(h.get(k), (int, float))]
        ax_loss.plot(*zip(*pts), marker=".", label=k.replace("_loss", "") if k != "train_loss" else "total")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (epoch mean)")
    values = [h[k] for h in history for k in losses if isinstance(h.get(k), (int, float))]
    if values and min(values) > 0:  # terms spanning decades (CE vs a small contrastive term)
        ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=7)
    for k, label in (("train_acc", "train"), ("val_acc", "validation"), ("val_mean_class_acc", "validation mean class"),
                     ("check_acc", "check set")):
        pts = [(h["epoch"], h[k]) for h in history if isinstance(h.get(k), (int, float))]
        if pts:
            ax_acc.plot(*zip(*pts), marker=".", label=label)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend(fontsize=7)
    for ax in (ax_loss, ax_acc):
        for a, b in zip(history, history[1:]):
            if a.get("stage") != b.get("stage"):
                ax.axvline(a["epoch"] + 0.5, color="grey", lw=0.8, ls="--")
        if epochs:
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
