"""Model metadata: what every exported model carries and what loading checks (torch-free).

Fields: format, precision, classes, input (channels, height, width), color ("gray"/"bgr"/"rgb"),
mean/std (already applied inside the graph: inputs are raw 0-255 pixels), method,
needs_landmarks, extras (method-specific, e.g. GLPC thresholds), source_checkpoint_sha256,
payload_sha256 (of the weights as stored, so that tampering or a half-replaced file is caught),
exporters (library versions), created. Engines add tensorrt and compute_capability.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

SCHEMA = "fer_edge.model/1"
REQUIRED = ("schema", "format", "precision", "classes", "input", "color", "mean", "std", "method", "needs_landmarks",
            "payload_sha256")


class MetadataError(ValueError):
    """Missing, corrupt or inconsistent model metadata."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dumps(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True)


def loads(text: str | bytes, source: str) -> dict:
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetadataError(f"{source}: fer_edge metadata is not valid JSON ({exc})") from exc
    validate(meta, source)
    return meta


def validate(meta: Any, source: str) -> dict:
    if not isinstance(meta, dict):
        raise MetadataError(f"{source}: fer_edge metadata must be a JSON object")
    if meta.get("schema") != SCHEMA:
        raise MetadataError(f"{source}: unknown metadata schema {meta.get('schema')!r} (expected {SCHEMA!r})")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise MetadataError(f"{source}: metadata lacks {missing}")
    inp = meta["input"]
    if not (isinstance(inp, list) and len(inp) == 3 and all(isinstance(v, int) and v > 0 for v in inp)):
        raise MetadataError(f"{source}: metadata 'input' must be [channels, height, width], got {inp!r}")
    if meta["color"] not in ("gray", "bgr", "rgb") or (meta["color"] == "gray") != (inp[0] == 1):
        raise MetadataError(f"{source}: metadata color {meta['color']!r} does not fit {inp[0]} input channels")
    if not (isinstance(meta["classes"], list) and meta["classes"] and all(isinstance(c, str) for c in meta["classes"])):
        raise MetadataError(f"{source}: metadata 'classes' must be a non-empty list of names")
    if len(meta["mean"]) != inp[0] or len(meta["std"]) != inp[0]:
        raise MetadataError(f"{source}: mean/std need {inp[0]} values")
    return meta


def check_payload(meta: dict, payload_sha256: str, source: str) -> None:
    if meta["payload_sha256"] != payload_sha256:
        raise MetadataError(f"{source}: the weights do not match their metadata (payload sha256 {payload_sha256[:12]}... "
                            f"!= recorded {meta['payload_sha256'][:12]}...): the file was modified or only partly replaced")


def check_outputs(meta: dict, num_outputs: int, source: str) -> None:
    if num_outputs != len(meta["classes"]):
        raise MetadataError(f"{source}: the model has {num_outputs} outputs but its metadata names {len(meta['classes'])} classes")
