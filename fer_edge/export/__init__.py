"""Export: checkpoint -> ONNX, OpenVINO IR (FP32/FP16/INT8) and TensorRT engines, each verified.
Torch is needed here (training side); loading the results is the runtime's job."""
from fer_edge.export.api import DEFAULT_TARGETS, export
from fer_edge.export.formats import FORMATS, get_format

__all__ = ["export", "DEFAULT_TARGETS", "FORMATS", "get_format"]
