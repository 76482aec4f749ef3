"""Checkpoint graph -> ONNX: opset 18, dynamic batch, simplified with onnxsim, fer_edge metadata.

The metadata records the file's own sha256: it is computed with a zero placeholder in place of
the digest and the digest then written over the placeholder (same length), so a loader can
re-derive it from the bytes alone (fer_edge/metadata.py: seal, payload_digest).
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch

from fer_edge import metadata as md

OPSET = 18


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def to_onnx_model(graph: torch.nn.Module, inputs: list[dict], simplify: bool = True):
    """Exports the graph and returns the (simplified) onnx.ModelProto. `inputs`: the metadata's
    inputs ({"name", "shape": ["N", ...]}), pixels first; output "logits"."""
    import onnx

    c, h, w = inputs[0]["shape"][1:]
    example = (torch.zeros(2, c, h, w),)
    names = [i["name"] for i in inputs]
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = ({0: batch},)
    for spec in inputs[1:]:
        # an example inside the input (landmarks must land inside the image): the middle of it
        example += (torch.full((2, *spec["shape"][1:]), w / 2.0),)
    if len(inputs) > 1:
        dynamic += (tuple({0: batch} for _ in inputs[1:]),)  # the graph takes extra inputs as *args: one nested tuple
    graph = graph.eval()
    # torch.onnx logs "torchvision is not installed. Skipping torchvision::nms" (and three more)
    # on every export: our graphs use no torchvision op, so users should not read that
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(graph, example, dynamo=True, input_names=names, output_names=["logits"],
                                        dynamic_shapes=dynamic, opset_version=OPSET, optimize=True, verbose=False)
        finally:
            onnx_log.setLevel(level)
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
    meta = dict(meta, payload_sha256=md.PLACEHOLDER)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = md.ONNX_KEY, md.dumps(meta)
    data, digest = md.seal(model.SerializeToString())
    atomic_write(path, data)
    return dict(meta, payload_sha256=digest)
