"""How model outputs become labels: the decision rules, by name, for training-side evaluation
and the runtime alike (numpy only, never torch).

A model declares its rule and the rule's parameters in its metadata (`decision`: {"rule": name,
"params": {...}}); the trainer evaluates checkpoints with the same rule through the same
function, so a deployed model gives the labels its checkpoint gave when it was evaluated.

Outputs are logits: [N, C] for single-head models, [N, heads, C] for multi-head ones (AGLRLS).
`allowed` [C] bool restricts the choice to some classes (evaluation on a dataset that lacks
some classes); masked classes get probability 0.

    >>> labels, probs = decide(np.array([[2.0, 1.0], [0.0, 3.0]]), "argmax")
    >>> labels.tolist()
    [0, 1]
"""
from __future__ import annotations

from typing import Callable

import numpy as np

# AGLRLS classifier order: 0 global, 1-5 the five local branches, 6 the concatenated feature
GLOBAL, CONCAT = 0, 6


class DecisionError(ValueError):
    """An unknown rule, or parameters / outputs that do not fit it."""


def softmax(logits: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the last axis in float64; classes outside `allowed` get probability 0."""
    z = np.asarray(logits, dtype=np.float64)
    if allowed is not None:
        z = np.where(np.asarray(allowed, bool), z, -np.inf)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _single(outputs: np.ndarray, rule: str) -> np.ndarray:
    if outputs.ndim != 2:
        raise DecisionError(f"rule {rule!r}: expected outputs [N, C], got shape {outputs.shape}")
    return outputs


def _multi(outputs: np.ndarray, rule: str) -> np.ndarray:
    if outputs.ndim != 3:
        raise DecisionError(f"rule {rule!r}: expected multi-head outputs [N, heads, C], got shape {outputs.shape}")
    return outputs


def _argmax(outputs, params, allowed):
    p = softmax(_single(outputs, "argmax"), allowed)
    return p.argmax(1), p


def _mean_softmax(outputs, params, allowed):
    p = softmax(_multi(outputs, "mean_softmax"), allowed).mean(1)
    return p.argmax(1), p


def _head(outputs, params, allowed):
    k = int(params["head"])
    outputs = _multi(outputs, "head")
    if not 0 <= k < outputs.shape[1]:
        raise DecisionError(f"rule 'head': head {k} out of range for {outputs.shape[1]} heads")
    p = softmax(outputs[:, k], allowed)
    return p.argmax(1), softmax(outputs, allowed).mean(1)


def confidence_thresholds(beta: np.ndarray, tau: float = 0.95) -> np.ndarray:
    """AGLRLS per classifier and class: tau * ((beta + 1) / 2) ** 2 (methods.md §1); the same
    formula sets the training-time pseudo-label thresholds."""
    return tau * ((np.asarray(beta, dtype=np.float64) + 1.0) / 2.0) ** 2


def glpc(probs: np.ndarray, beta: np.ndarray, tau: float = 0.95) -> np.ndarray:
    """AGLRLS's global-local prediction consistency: probs [7, N, C] softmax outputs of the 7
    classifiers, beta [7, C] learning status of the last epoch -> labels [N].

    Step 1: for the concat classifier, then the global one, a prediction whose confidence reaches
    its class threshold tau*((beta+1)/2)^2 is the answer. Step 2 (neither is confident): every
    classifier's probabilities below beta_k[c] are zeroed, the rest summed over the 7, arg-max.

    >>> p = np.zeros((7, 1, 2)); p[:, 0] = [0.6, 0.4]; p[6, 0] = [0.2, 0.8]
    >>> int(glpc(p, np.full((7, 2), 0.5))[0])   # concat confident enough for class 1 (0.8 >= 0.534)
    1
    """
    probs = np.asarray(probs, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if probs.ndim != 3 or probs.shape[0] != 7:
        raise DecisionError(f"glpc: probs expected [7, N, C], got {probs.shape}")
    if beta.shape != (7, probs.shape[2]):
        raise DecisionError(f"glpc: expected beta [7, {probs.shape[2]}], got {beta.shape}")
    thr = confidence_thresholds(beta, tau)
    n = probs.shape[1]
    labels = np.full(n, -1, dtype=np.int64)
    for k in (CONCAT, GLOBAL):
        c = probs[k].argmax(1)
        conf = probs[k][np.arange(n), c]
        take = (labels < 0) & (conf >= thr[k][c])
        labels[take] = c[take]
    rest = labels < 0
    if rest.any():
        kept = np.where(probs[:, rest] >= beta[:, None, :], probs[:, rest], 0.0)
        labels[rest] = kept.sum(0).argmax(1)
    return labels


def _glpc(outputs, params, allowed):
    if "beta" not in params:
        raise DecisionError("rule 'glpc' needs params.beta (the learning status [7, C] of the last epoch)")
    probs = softmax(_multi(outputs, "glpc"), allowed)  # [N, 7, C]
    labels = glpc(probs.transpose(1, 0, 2), np.asarray(params["beta"]), float(params.get("tau", 0.95)))
    return labels, probs.mean(1)


RULES: dict[str, Callable] = {"argmax": _argmax, "mean_softmax": _mean_softmax, "head": _head, "glpc": _glpc}


def check(rule: str, params: dict | None = None) -> None:
    """Raises DecisionError for an unknown rule or missing parameters (metadata validation)."""
    if rule not in RULES:
        raise DecisionError(f"unknown decision rule {rule!r}; known: {', '.join(RULES)}")
    params = params or {}
    if rule == "head" and "head" not in params:
        raise DecisionError("rule 'head' needs params.head")
    if rule == "glpc" and "beta" not in params:
        raise DecisionError("rule 'glpc' needs params.beta")


def decide(outputs: np.ndarray, rule: str = "argmax", params: dict | None = None,
           allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Outputs (logits) -> (labels [N] int64, probabilities [N, C] float64).

    Probabilities are the softmax for single-head models and the heads' mean softmax for
    multi-head models, whatever rule picks the label."""
    check(rule, params)
    labels, probs = RULES[rule](np.asarray(outputs), params or {}, allowed)
    return np.asarray(labels, np.int64), probs
