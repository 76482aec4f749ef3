"""Model metadata: what every exported model carries, where each file format keeps it, and
what loading checks (torch-free; the exporters write it, the runtime backends read it).

Fields (schema fer_edge.model/2): format, precision, classes, input (channels, height, width),
color ("gray"/"bgr"/"rgb"), mean/std (already applied inside the graph: inputs are raw 0-255
pixels), method, inputs (every graph input in order: {"name", "shape"}, shape with "N" for the
batch; the first is always "pixels"), heads (classifier names of a multi-head model, [] for one
head), decision ({"rule", "params"}: see fer_edge.decisions), extras (method facts for people),
source_checkpoint_sha256, payload_sha256 (of the file as stored with the digest zeroed, so that
tampering or a half-replaced file is caught), exporters (library versions; fer_edge_commit when
exported from a git checkout), created. Engines add tensorrt, compute_capability and batch_profile.

Schema 1 files (exported before the method contract) are read and upgraded in `upgrade`: their
`needs_landmarks` becomes a landmarks input and `extras.glpc_beta` a GLPC decision.

Where each format keeps it:
- ONNX: `metadata_props["fer_edge"]` (ONNX_KEY), JSON;
- OpenVINO IR: rt_info at OPENVINO_RT_PATH, JSON;
- TensorRT engine: a header, ENGINE_MAGIC + 4-byte little-endian length + JSON, then the plan.
"""
from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

SCHEMA = "fer_edge.model/2"
SCHEMA_V1 = "fer_edge.model/1"
REQUIRED = ("schema", "format", "precision", "classes", "input", "color", "mean", "std", "method", "inputs",
            "heads", "decision", "payload_sha256")

ONNX_KEY = "fer_edge"
OPENVINO_RT_PATH = ["fer_edge", "metadata"]
ENGINE_MAGIC = b"FERENGN1"
# the payload digest is computed with this in its place, then written over it (same length)
PLACEHOLDER = "0" * 64


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
    return validate(upgrade(meta, source), source)


def upgrade(meta: Any, source: str) -> Any:
    """Schema 1 -> 2 (in a copy); other schemas pass through to `validate`."""
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA_V1:
        return meta
    meta = dict(meta)
    c, h, w = meta.get("input", [0, 0, 0])
    inputs = [{"name": "pixels", "shape": ["N", c, h, w]}]
    if meta.get("needs_landmarks"):
        inputs.append({"name": "landmarks", "shape": ["N", 5, 2]})
    extras = meta.get("extras") or {}
    heads = list(extras.get("classifiers", []))
    if "glpc_beta" in extras:
        decision = {"rule": "glpc", "params": {"beta": extras["glpc_beta"], "tau": extras.get("glpc_tau", 0.95)}}
    else:
        decision = {"rule": "mean_softmax" if heads else "argmax", "params": {}}
    meta.update(schema=SCHEMA, inputs=inputs, heads=heads, decision=decision)
    return meta


def validate(meta: Any, source: str) -> dict:
    from fer_edge import decisions

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
    inputs = meta["inputs"]
    ok = isinstance(inputs, list) and inputs and all(
        isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("shape"), list)
        and i["shape"][:1] == ["N"] and all(isinstance(d, int) and d > 0 for d in i["shape"][1:]) for i in inputs)
    if not ok or inputs[0]["name"] != "pixels" or inputs[0]["shape"][1:] != inp:
        raise MetadataError(f"{source}: metadata 'inputs' must list the graph inputs as {{name, shape: ['N', ...]}}, "
                            f"pixels [N, {inp[0]}, {inp[1]}, {inp[2]}] first; got {inputs!r}")
    if len({i["name"] for i in inputs}) != len(inputs):
        raise MetadataError(f"{source}: metadata 'inputs' names repeat")
    if not (isinstance(meta["heads"], list) and all(isinstance(h, str) for h in meta["heads"])):
        raise MetadataError(f"{source}: metadata 'heads' must be a list of classifier names")
    dec = meta["decision"]
    if not (isinstance(dec, dict) and isinstance(dec.get("rule"), str) and isinstance(dec.get("params", {}), dict)):
        raise MetadataError(f"{source}: metadata 'decision' must be {{rule, params}}, got {dec!r}")
    try:
        decisions.check(dec["rule"], dec.get("params"))
    except decisions.DecisionError as exc:
        raise MetadataError(f"{source}: {exc}") from exc
    return meta


def input_names(meta: dict) -> list[str]:
    return [i["name"] for i in meta["inputs"]]


def check_payload(meta: dict, payload_sha256: str, source: str) -> None:
    if meta["payload_sha256"] != payload_sha256:
        raise MetadataError(f"{source}: the weights do not match their metadata (payload sha256 {payload_sha256[:12]}... "
                            f"!= recorded {meta['payload_sha256'][:12]}...): the file was modified or only partly replaced")


def check_outputs(meta: dict, num_outputs: int, source: str) -> None:
    if num_outputs != len(meta["classes"]):
        raise MetadataError(f"{source}: the model has {num_outputs} outputs but its metadata names {len(meta['classes'])} classes")


def check_graph_inputs(meta: dict, names: list[str], source: str) -> None:
    """The graph's input names must be the declared ones (backends bind inputs by name)."""
    if sorted(names) != sorted(input_names(meta)):
        raise MetadataError(f"{source}: graph inputs {names} do not fit the metadata's {input_names(meta)}")


def seal(data: bytes) -> tuple[bytes, str]:
    """Bytes serialised with PLACEHOLDER as payload_sha256 -> (bytes with the real digest, digest)."""
    if data.count(PLACEHOLDER.encode()) != 1:
        raise RuntimeError("the digest placeholder must occur exactly once in the serialized model")
    digest = sha256_bytes(data)
    return data.replace(PLACEHOLDER.encode(), digest.encode()), digest


def payload_digest(data: bytes, recorded: str) -> str:
    """sha256 of a sealed file: the recorded digest is swapped back for the placeholder it replaced."""
    if data.count(recorded.encode()) != 1:
        return sha256_bytes(data)  # cannot be the file we wrote; the comparison will fail
    return sha256_bytes(data.replace(recorded.encode(), PLACEHOLDER.encode()))


def engine_file_bytes(meta: dict, plan: bytes) -> bytes:
    header = dumps(meta).encode()
    return ENGINE_MAGIC + struct.pack("<I", len(header)) + header + plan


def read_engine_bytes(data: bytes, source: str) -> tuple[dict, bytes]:
    """(metadata, plan) of a fer_edge engine file's bytes; MetadataError when it is not one."""
    if len(data) < 12 or data[:8] != ENGINE_MAGIC:
        raise MetadataError(f"{source}: not a fer_edge engine (missing {ENGINE_MAGIC!r} header; build it with fer-edge export)")
    (n,) = struct.unpack("<I", data[8:12])
    if 12 + n > len(data):
        raise MetadataError(f"{source}: truncated engine header")
    meta = loads(data[12:12 + n], source)
    plan = data[12 + n:]
    check_payload(meta, sha256_bytes(plan), source)
    return meta, plan
