"""A pre-trained ViT encoder on its own: `<name>.safetensors` (weights) + `<name>.json` (its shape
and how it was trained), so that fine-tuning (pll) and frozen-encoder methods (CAFE) load it by
path without the checkpoint of the run that made it."""
from __future__ import annotations

import json
from pathlib import Path

from fer_edge.models.vit import ViT

SHAPE_KEYS = ("size", "depth", "patch", "image_size", "in_channels")


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def encoder_shape(vit: ViT) -> dict:
    return {k: getattr(vit, k) for k in SHAPE_KEYS}


def save_encoder(vit: ViT, path: str | Path, **facts) -> Path:
    """Writes the encoder's weights and a JSON of its shape plus `facts` (e.g. the pre-training
    target and epochs). Returns the .safetensors path. Written to temporary names first, so an
    interruption never leaves a half-written encoder under the real name."""
    from safetensors.torch import save_file

    weights, meta = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp_w, tmp_m = weights.with_name(weights.name + ".tmp"), meta.with_name(meta.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in vit.state_dict().items()}, str(tmp_w))
    tmp_m.write_text(json.dumps({"format": "fer_edge.vit_encoder", "version": 1, **encoder_shape(vit), **facts}, indent=2))
    tmp_w.replace(weights)
    tmp_m.replace(meta)
    return weights


def read_encoder_meta(path: str | Path) -> dict:
    weights, meta = _paths(path)
    if not weights.is_file() or not meta.is_file():
        raise FileNotFoundError(f"encoder {weights.with_suffix('')}: expected {weights.name} and {meta.name} side by side")
    try:
        info = json.loads(meta.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta}: not valid JSON ({exc})") from exc
    if info.get("format") != "fer_edge.vit_encoder" or any(k not in info for k in SHAPE_KEYS):
        raise ValueError(f"{meta}: not a fer_edge encoder description (needs format and {', '.join(SHAPE_KEYS)})")
    return info


def load_encoder(path: str | Path, into: ViT | None = None, drop_path: float = 0.0) -> ViT:
    """The encoder at `path` (either file, or the common stem). With `into`, its shape must match
    and the weights load into it; otherwise a new ViT of the stored shape is built."""
    from fer_edge.models import load_weights

    info = read_encoder_meta(path)
    shape = {k: info[k] for k in SHAPE_KEYS}
    if into is None:
        into = ViT(shape["size"], shape["patch"], shape["image_size"], shape["in_channels"], drop_path, shape["depth"])
    elif encoder_shape(into) != shape:
        diff = {k: (shape[k], getattr(into, k)) for k in SHAPE_KEYS if shape[k] != getattr(into, k)}
        raise ValueError(f"encoder {path}: shape does not fit the model (stored vs model: {diff})")
    load_weights(into, _paths(path)[0], strict=True)
    return into
