"""Classification metrics (with the views reports add: the basic six, per-sequence votes, faces\nwith several candidate labels) and the confusion-matrix plot."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fer_edge import decisions


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
    if ax_loss.lines:
        ax_loss.legend(fontsize=7)
    for k, label in (("train_acc", "train"), ("val_acc", "validation"), ("val_mean_class_acc", "validation mean class"),
                     ("check_acc", "check set")):
        pts = [(h["epoch"], h[k]) for h in history if isinstance(h.get(k), (int, float))]
        if pts:
            ax_acc.plot(*zip(*pts), marker=".", label=label)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    if ax_acc.lines:
        ax_acc.legend(fontsize=7)
    else:  # label-free stages only (e.g. MIM pre-training): say so rather than leave an empty legend
        ax_acc.text(0.5, 0.5, "no accuracy logged (label-free stage)", ha="center", va="center", transform=ax_acc.transAxes)
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


# The six basic expressions every FER dataset labels (CK+ adds contempt and lacks neutral): a
# cross-dataset number that does not depend on which extra classes a dataset has.
BASIC_SIX = ("happiness", "surprise", "sadness", "anger", "disgust", "fear")


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion correct / n (independent trials)."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def sequence_vote(pred, labels, groups, resamples: int = 2000, seed: int = 0) -> dict:
    """Accuracy when frames of one sequence are one decision, and what frame correlation does to
    the face-level confidence interval.

    `groups[i]` names face i's sequence. A sequence's vote is its most frequent prediction; a
    tie goes to the prediction of its last face in order (CK+ keeps a sequence's last frames,
    so the last is the expression's peak). A sequence whose faces disagree on the label is an
    error. The face-level interval is given twice: as if the faces were independent (Wilson on
    the faces) and by a bootstrap over sequences (faces of one sequence resampled together),
    which is the honest one when frames are near-duplicates."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    groups = list(groups)
    if not (len(pred) == len(labels) == len(groups)) or not groups:
        raise ValueError(f"sequence_vote: {len(pred)} predictions, {len(labels)} labels, {len(groups)} groups")
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    votes, truths, face_correct = [], [], []
    for g, idx in members.items():
        truth = set(labels[idx].tolist())
        if len(truth) != 1:
            raise ValueError(f"sequence {g!r} has faces labelled {sorted(truth)}: one sequence is one expression")
        counts = np.bincount(pred[idx])
        best = np.flatnonzero(counts == counts.max())
        votes.append(int(pred[idx[-1]]) if len(best) > 1 and pred[idx[-1]] in best else int(best[0]))
        truths.append(truth.pop())
        face_correct.append(np.asarray(pred[idx] == labels[idx], np.float64))
    hits = np.asarray(votes) == np.asarray(truths)
    n_seq = len(members)
    rng = np.random.default_rng(seed)
    sums = np.array([c.sum() for c in face_correct])
    sizes = np.array([len(c) for c in face_correct])
    draws = rng.integers(0, n_seq, size=(resamples, n_seq))
    boot = sums[draws].sum(1) / sizes[draws].sum(1)
    face_acc = float(sums.sum() / sizes.sum())
    return {
        "accuracy": float(hits.mean()),
        "sequences": n_seq,
        "faces": int(sizes.sum()),
        "ci95": wilson_interval(int(hits.sum()), n_seq),
        "face_accuracy": face_acc,
        "face_ci95_if_independent": wilson_interval(int(sums.sum()), int(sizes.sum())),
        "face_ci95_by_sequence": (float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))),
    }


def paired_test_by_sequence(pred_a, pred_b, labels, groups, resamples: int = 20000, seed: int = 0) -> dict:
    """Paired test of two models on the same faces when faces come in correlated groups (CK+'s
    3 frames of a sequence, near-duplicates): McNemar on faces counts one sequence's flip three
    times and overstates significance. Per sequence d = (faces only A gets right) - (faces only B
    gets right); under "no difference" each sequence's d is as likely negative as positive, so the
    two-sided p is the share of random sign flips whose |sum| reaches the observed |sum|.

    >>> r = paired_test_by_sequence([1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 0], ["a", "a", "a", "b"])
    >>> r["sequences"], r["differing_sequences"], r["only_first_right"], round(r["p_value"], 1)
    (2, 1, 3, 1.0)
    """
    pred_a, pred_b, labels = np.asarray(pred_a), np.asarray(pred_b), np.asarray(labels)
    groups = list(groups)
    if not (len(pred_a) == len(pred_b) == len(labels) == len(groups)) or not groups:
        raise ValueError(f"paired_test_by_sequence: {len(pred_a)}/{len(pred_b)} predictions, {len(labels)} labels, "
                         f"{len(groups)} groups")
    diff = (pred_a == labels).astype(np.int64) - (pred_b == labels).astype(np.int64)
    _, seq = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    d = np.bincount(seq, weights=diff).astype(np.int64)
    nz = d[d != 0]
    observed = abs(int(nz.sum()))
    if nz.size == 0:
        p = 1.0
    else:
        signs = np.random.default_rng(seed).choice(np.array([-1, 1]), size=(resamples, nz.size))
        p = float(((np.abs(signs @ nz) >= observed).sum() + 1) / (resamples + 1))
    return {"sequences": int(d.size), "differing_sequences": int(nz.size),
            "only_first_right": int((diff > 0).sum()), "only_second_right": int((diff < 0).sum()), "p_value": p}


def basic_six_accuracy(outputs, labels, classes: Sequence[str], rule: str, params: dict | None) -> dict | None:
    """Accuracy on the faces labelled with one of the basic six expressions the set has, the
    decision restricted to those classes (CK+: 927 of its 981 faces). None when the set has none."""
    labels = np.asarray(labels)
    basic = np.array([c in BASIC_SIX for c in classes])
    present = np.bincount(labels, minlength=len(classes)) > 0
    allowed = basic & present
    keep = allowed[labels]
    if not keep.any():
        return None
    pred, _ = decisions.decide(np.asarray(outputs)[keep], rule, params, allowed)
    return {"accuracy": float((pred == labels[keep]).mean()), "count": int(keep.sum()),
            "classes": [c for c, a in zip(classes, allowed) if a]}


def ambiguous_split(pred, labels, candidates) -> dict:
    """Accuracy on the faces whose votes leave two or more candidate classes (candidates [N, C]
    bool), and on the others; None for a side with no faces."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    several = np.asarray(candidates, bool).sum(1) >= 2
    acc = lambda m: float((pred[m] == labels[m]).mean()) if m.any() else None  # noqa: E731
    return {"count": int(several.sum()), "accuracy": acc(several), "accuracy_unambiguous": acc(~several)}


def label_shift_prior(probs, source_prior, iters: int = 1000, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """The class prior of unlabelled faces under label shift, by Saerens, Latinne & Decaestecker's
    EM (Neural Computation 2002): posteriors `probs` [N, C] from a model trained under
    `source_prior` [C] are reweighted by target/source prior until the mean reweighted posterior
    is the target prior. Returns (target prior [C], reweighted posteriors [N, C]); argmax of the
    latter is the prior-corrected decision. Used to ask how much of a semi-supervised gain is the
    unlabelled pool's class mix rather than better features (benchmarks/leaf_prior.py).

    >>> p = np.array([[0.9 / 1.1, 0.2 / 1.1]] * 76 + [[0.1 / 0.9, 0.8 / 0.9]] * 24)
    >>> prior, _ = label_shift_prior(p, [0.5, 0.5])
    >>> np.round(prior, 6).tolist()
    [0.8, 0.2]
    """
    p = np.asarray(probs, dtype=np.float64)
    src = np.asarray(source_prior, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"label_shift_prior: expected posteriors [N, C] with N > 0, got shape {p.shape}")
    if src.shape != (p.shape[1],) or not (src > 0).all():
        raise ValueError(f"label_shift_prior: source_prior must be {p.shape[1]} positive numbers, got {src.tolist()}")
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError("label_shift_prior: each row of probs must be finite, non-negative and sum to 1")
    src = src / src.sum()
    prior = src.copy()
    for _ in range(iters):
        q = p * (prior / src)
        q /= q.sum(1, keepdims=True)
        new = q.mean(0)
        done = np.abs(new - prior).max() < tol
        prior = new
        if done:
            break
    q = p * (prior / src)
    return prior, q / q.sum(1, keepdims=True)
