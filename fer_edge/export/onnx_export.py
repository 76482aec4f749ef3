"""Checkpoint graph -> ONNX: opset 18, dynamic batch, simplified with onnxsim, fer_edge metadata.

The metadata records the file's own sha256: it is computed with a zero placeholder in place of
the digest and the digest then written over the placeholder (same length), so a loader can
re-derive it from the bytes alone (see runtime/backends/base.py: payload_digest).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from fer_edge import metadata as md

OPSET = 18
PLACEHOLDER = "0" * 64


def seal(data: bytes, meta_placeholder_json: str) -> tuple[bytes, str]:
    """bytes written with the placeholder digest -> (bytes with the real digest, digest)."""
    if data.count(PLACEHOLDER.encode()) != 1:
        raise RuntimeError("the digest placeholder must occur exactly once in the serialized model")
    digest = md.sha256_bytes(data)
    return data.replace(PLACEHOLDER.encode(), digest.encode()), digest


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def to_onnx_model(graph: torch.nn.Module, input_shape, simplify: bool = True, landmarks: bool = False):
    """Exports the graph and returns the (simplified) onnx.ModelProto. Inputs: "pixels"
    [N, C, H, W] and, for landmark models, "landmarks" [N, 5, 2]; output "logits"."""
    import onnx

    c, h, w = input_shape
    example = (torch.zeros(2, c, h, w),)
    names = ["pixels"]
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = ({0: batch},)
    if landmarks:
        example += (torch.full((2, 5, 2), w / 2.0),)
        names.append("landmarks")
        dynamic += (({0: batch},),)  # the graph takes extra inputs as *args: one nested tuple
    graph = graph.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, example, dynamo=True, input_names=names, output_names=["logits"],
                                    dynamic_shapes=dynamic, opset_version=OPSET, optimize=True, verbose=False)
    model = program.model_proto
    if simplify:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if ok:
            model = simplified
    onnx.checker.check_model(model)
    return model


def write_onnx(model, meta: dict, path: Path) -> dict:
    """Adds metadata (with the sealed payload digest) and writes the file atomically. The caller's
    model is left untouched (other formats are converted from it)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    model = copy
    meta = dict(meta, payload_sha256=PLACEHOLDER)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "fer_edge", md.dumps(meta)
    data, digest = seal(model.SerializeToString(), entry.value)
    atomic_write(path, data)
    return dict(meta, payload_sha256=digest)
