"""GLPC: AGLRLS's global-local prediction consistency inference (methods.md §1). numpy only:
deployed AGLRLS models apply it in the runtime from the thresholds stored in their metadata.

Classifier order everywhere: 0 global, 1-5 the five local branches, 6 the concatenated feature.
"""
from __future__ import annotations

import numpy as np

GLOBAL, CONCAT = 0, 6


def confidence_thresholds(beta: np.ndarray, tau: float = 0.95) -> np.ndarray:
    """Per classifier and class: tau * ((beta + 1) / 2) ** 2."""
    return tau * ((np.asarray(beta, dtype=np.float64) + 1.0) / 2.0) ** 2


def glpc(probs: np.ndarray, beta: np.ndarray, tau: float = 0.95) -> np.ndarray:
    """probs [7, N, C] softmax outputs of the 7 classifiers, beta [7, C] learning status of the
    last epoch -> labels [N].

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
        raise ValueError(f"probs: expected [7, N, C], got {probs.shape}")
    if beta.shape != (7, probs.shape[2]):
        raise ValueError(f"beta: expected [7, {probs.shape[2]}], got {beta.shape}")
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
