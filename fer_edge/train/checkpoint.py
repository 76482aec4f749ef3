"""Checkpoints that cannot be half-written and load without unpickling code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts saved with torch.save and
read with `torch.load(weights_only=True)`; it carries a format marker so that a foreign file is
told apart from a corrupt one. Writes go to a temporary file that is renamed into place.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

FORMAT = "fer_edge.checkpoint/1"


class CheckpointError(ValueError):
    """A missing, corrupt or foreign checkpoint file."""


def save(path: str | Path, state: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)
    return path


def load(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, random bytes...
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a fer_edge checkpoint (format {found!r}, expected {FORMAT!r})")
    for key in ("model", "config", "epoch"):
        if key not in state:
            raise CheckpointError(f"{path}: fer_edge checkpoint without {key!r}")
    return state
