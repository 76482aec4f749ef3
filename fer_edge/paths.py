"""Where things live, for every layer (data, faces, runtime): the data folder (`FER_EDGE_DATA`, else
`../shared/data` when it exists), the per-user cache, and the image suffixes fer_edge reads.
Neutral on purpose: `faces` and `data` both use it and never import each other for it."""
from __future__ import annotations

import os
from pathlib import Path


def data_root(required: bool = True) -> Path | None:
    """The data folder: $FER_EDGE_DATA, else ../shared/data beside the working directory or the
    source checkout. Nothing is ever downloaded."""
    env = os.environ.get("FER_EDGE_DATA")
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd() / ".." / "shared" / "data", Path(__file__).resolve().parents[2] / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    if required:
        tried = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(f"no data folder found (tried {tried}); set FER_EDGE_DATA to the folder holding "
                                "ferplus/, ckplus48/, yunet/ ...")
    return None


def cache_dir() -> Path:
    """Per-user cache for fer_edge files ($FER_EDGE_CACHE, else ~/.cache/fer_edge)."""
    env = os.environ.get("FER_EDGE_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fer_edge"
    return base


# the image files fer_edge opens from folders (datasets, `predict <folder>`, `data crop`)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm"})
