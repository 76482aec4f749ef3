"""ONNX -> OpenVINO IR (FP32, FP16 weights, or NNCF INT8) with fer_edge metadata in rt_info.

The .xml and .bin are written into a temporary folder and moved into place bin first, xml last;
the recorded digest covers both files, so a crash between the moves leaves an xml whose
weights do not match and that loading rejects."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fer_edge import metadata as md


def write_openvino(onnx_model, meta: dict, path: Path, precision: str, calibration: np.ndarray | None = None) -> dict:
    import openvino as ov

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        src = Path(tmp) / "model.onnx"
        src.write_bytes(onnx_model.SerializeToString())
        model = ov.convert_model(str(src))
        if precision == "int8":
            from fer_edge.export.quantize import nncf_openvino

            model = nncf_openvino(model, calibration)
        meta = dict(meta, payload_sha256=md.PLACEHOLDER)
        model.set_rt_info(md.dumps(meta), md.OPENVINO_RT_PATH)
        xml, binf = Path(tmp) / path.name, Path(tmp) / path.with_suffix(".bin").name
        ov.save_model(model, str(xml), compress_to_fp16=precision == "fp16")
        xml_bytes, bin_bytes = xml.read_bytes(), binf.read_bytes()
        if xml_bytes.count(md.PLACEHOLDER.encode()) != 1:
            raise RuntimeError("digest placeholder not found exactly once in the IR")
        digest = md.sha256_bytes(xml_bytes + bin_bytes)
        xml.write_bytes(xml_bytes.replace(md.PLACEHOLDER.encode(), digest.encode()))
        os.replace(binf, path.with_suffix(".bin"))
        os.replace(xml, path)
    return dict(meta, payload_sha256=digest)
