"""Will TensorRT 10 build this ONNX graph? A static check, for machines without TensorRT.

Every node is checked against the operator table of onnx-tensorrt for TensorRT 10
(tensorrt_ops.json: which ops parse, and the types of their data input), the opset range it
parses, and the restrictions of that table that can bite fer_edge's graphs, written out here:
pooling is 2D/3D without dilation and MaxPool has no Indices output; the `axes` of
ReduceMean/Slice/Squeeze/Unsqueeze are constants; Q/DQ zero points are zero (explicit,
symmetric quantisation). Custom domains need plugins and are reported too. It cannot see
everything TensorRT checks (resources, tactics, dynamic-shape corner cases), so a clean report
means "nothing known stops the build", not "the engine will build"."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).with_name("tensorrt_ops.json")
# ONNX TensorProto element types -> the names the table uses
ONNX_TYPES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE", 16: "BF16",
              17: "FP8", 22: "INT4"}
CONSTANT_INPUTS = {"ReduceMean": 1, "ReduceMax": 1, "ReduceMin": 1, "ReduceSum": 1, "ReduceProd": 1, "Slice": 3,
                   "Squeeze": 1, "Unsqueeze": 1}
ZERO_POINTS = {"QuantizeLinear": 2, "DequantizeLinear": 2}


@dataclass(frozen=True)
class Finding:
    node: str
    op: str
    problem: str

    def __str__(self) -> str:
        return f"{self.op} node {self.node!r}: {self.problem}"


@lru_cache(maxsize=1)
def table() -> dict:
    return json.loads(TABLE.read_text())


def check(model) -> list[Finding]:
    """Findings for an onnx.ModelProto (or a path); empty when nothing known stops the build."""
    import numpy as np
    import onnx
    from onnx import numpy_helper, shape_inference

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    t = table()
    findings = []
    lo, hi = t["opset"]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not lo <= opset <= hi:
        findings.append(Finding("<model>", "opset", f"default-domain opset {opset}, TensorRT {t['tensorrt']} parses {lo}-{hi}"))
    graph = shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    initializers = {i.name: i for i in graph.initializer}
    types.update({name: i.data_type for name, i in initializers.items()})
    constants = set(initializers) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    for k, node in enumerate(graph.node):
        name, op = node.name or f"#{k}", node.op_type
        if node.domain not in ("", "ai.onnx"):
            findings.append(Finding(name, op, f"custom domain {node.domain!r}: TensorRT needs a plugin for it"))
            continue
        entry = t["operators"].get(op)
        if entry is None or not entry["supported"]:
            findings.append(Finding(name, op, "not supported by TensorRT's ONNX parser"))
            continue
        data_type = ONNX_TYPES.get(types.get(node.input[0])) if node.input and node.input[0] else None
        if data_type and entry["types"] and data_type not in entry["types"]:
            findings.append(Finding(name, op, f"input {node.input[0]!r} is {data_type}; TensorRT takes {', '.join(entry['types'])}"))
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op in ("AveragePool", "MaxPool"):
            if len(attrs.get("kernel_shape", [])) not in (2, 3):
                findings.append(Finding(name, op, "only 2D or 3D pooling builds"))
            if any(d != 1 for d in attrs.get("dilations", [])):
                findings.append(Finding(name, op, "dilations must be all ones"))
            if op == "MaxPool" and len([o for o in node.output if o]) > 1:
                findings.append(Finding(name, op, "the Indices output is unsupported"))
        idx = CONSTANT_INPUTS.get(op)
        if idx is not None and len(node.input) > idx and node.input[idx] and node.input[idx] not in constants:
            findings.append(Finding(name, op, f"axes input {node.input[idx]!r} must be a constant (an initializer)"))
        idx = ZERO_POINTS.get(op)
        if idx is not None and len(node.input) > idx and node.input[idx]:
            zp = initializers.get(node.input[idx])
            if zp is None or np.any(numpy_helper.to_array(zp) != 0):
                findings.append(Finding(name, op, "the zero point must be a constant zero (symmetric quantisation)"))
    return findings
