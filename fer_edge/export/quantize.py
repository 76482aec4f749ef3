"""INT8: explicit Q/DQ ONNX (ONNX Runtime static quantisation; what TensorRT builds INT8 from)
and OpenVINO IR quantised with NNCF. Both calibrate on images from the training data."""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def quiet_tools():
    """The quantisers' own chatter (ONNX Runtime's calibration prints, NNCF's progress bars and
    info log) kept off the user's terminal; their errors still raise. Our own messages say
    what was exported and how it verified."""
    # ONNX Runtime's quantiser warns through the root logger (e.g. one line per LayerNorm weight
    # that per-channel quantisation leaves per-tensor): kept quiet too, for the same span only
    loggers = [logging.getLogger("nncf"), logging.getLogger()]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def as_inputs(calibration) -> dict[str, np.ndarray]:
    """Calibration data as {input name: array}: a bare array is the pixels."""
    return {"pixels": calibration} if isinstance(calibration, np.ndarray) else dict(calibration)


class _Reader:
    """onnxruntime CalibrationDataReader over samples of the model's inputs, fed by name."""

    def __init__(self, calibration, batch: int = 1):
        # batch 1: ORT's percentile calibrator stacks per-batch activations and fails when the
        # last batch is shorter (300 = 18 x 16 + 12); one image per call works for any count
        arrays = as_inputs(calibration)
        n = len(arrays["pixels"])
        self.batches = [{name: a[i:i + batch] for name, a in arrays.items()} for i in range(0, n, batch)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return self.batches[self.i - 1]

    def rewind(self):
        self.i = 0


def qdq_onnx(fp32_model, calibration):
    """Symmetric per-channel INT8 weights and symmetric INT8 activations as Q/DQ pairs (TensorRT's
    explicit-quantisation form). Returns an onnx.ModelProto."""
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        model = onnx.ModelProto()
        model.CopyFrom(fp32_model)
        del model.metadata_props[:]
        onnx.save(model, src)
        with quiet_tools():
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(dst), _Reader(calibration), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                            calibrate_method=CalibrationMethod.Percentile,
                            # biases stay float: TensorRT's DequantizeLinear takes INT8/FP8/INT4 inputs only
                            # (an INT32 bias DQ fails its ONNX parser; it fuses float biases into the conv)
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                           "CalibPercentile": 99.999, "QuantizeBias": False})
        return onnx.load(dst)


def nncf_openvino(ov_model, calibration):
    """NNCF post-training quantisation of an OpenVINO model (mixed preset, all calibration images)."""
    import nncf

    arrays = as_inputs(calibration)
    n = len(arrays["pixels"])
    items = [{name: a[i:i + 1] for name, a in arrays.items()} for i in range(n)]
    with quiet_tools():
        return nncf.quantize(ov_model, nncf.Dataset(items), subset_size=n, preset=nncf.QuantizationPreset.MIXED)
