"""The one table of export formats: it drives the export API, the CLI and the benchmarks."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    extra: str                       # pip extra that provides it
    precisions: tuple[str, ...]
    runs_here: bool                  # can be built and run on a CPU-only x86 machine
    description: str


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", ".onnx", "onnx", ("fp32", "int8"), True,
           "ONNX opset 17, dynamic batch, simplified; int8 = explicit Q/DQ (for TensorRT and ONNX Runtime)"),
    Format("openvino", ".xml", "openvino", ("fp32", "fp16", "int8"), True,
           "OpenVINO IR (.xml + .bin); int8 = NNCF post-training quantisation"),
    Format("tensorrt", ".engine", "tensorrt", ("fp16", "int8"), False,
           "TensorRT 10 engine (Jetson / NVIDIA GPUs); int8 from the Q/DQ ONNX"),
)}


def get_format(name: str, precision: str | None = None) -> Format:
    """Looks a format up by name; unknown names or precisions list the valid ones."""
    if name not in FORMATS:
        raise ValueError(f"unknown export format {name!r}; valid formats: {', '.join(FORMATS)}")
    fmt = FORMATS[name]
    if precision is not None and precision not in fmt.precisions:
        raise ValueError(f"format {name!r} does not support precision {precision!r}; valid: {', '.join(fmt.precisions)}")
    return fmt


def table() -> str:
    rows = [f"{'format':10s} {'suffix':8s} {'extra':9s} {'precisions':16s} description"]
    rows += [f"{f.name:10s} {f.suffix:8s} {f.extra:9s} {','.join(f.precisions):16s} {f.description}" for f in FORMATS.values()]
    return "\n".join(rows)
