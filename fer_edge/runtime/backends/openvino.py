"""OpenVINO backend (.xml IR with its .bin)."""
from __future__ import annotations

from fer_edge import metadata as md
from fer_edge.runtime.backends.base import Backend, BackendError


class OpenVINOBackend(Backend):
    """`inference_precision`: OpenVINO's CPU plugin computes in bf16 by default on CPUs that have
    it (AVX512-BF16/AMX), which changes FP32 results by ~0.1 in the logits; fer_edge pins f32 so
    that an FP32 model runs in FP32. Pass "bf16" to trade that for speed."""

    name = "openvino"

    def __init__(self, path, threads=None, device="cpu", inference_precision: str = "f32"):
        self.inference_precision = inference_precision
        super().__init__(path, threads, device)

    def _load(self) -> dict:
        import openvino as ov

        bin_path = self.path.with_suffix(".bin")
        if self.path.suffix == ".xml" and not bin_path.is_file():
            raise BackendError(f"{self.path}: its weights file {bin_path.name} is missing")
        core = ov.Core()
        model = core.read_model(str(self.path))
        if not model.has_rt_info(md.OPENVINO_RT_PATH):
            raise md.MetadataError(f"{self.path}: an OpenVINO model without fer_edge metadata (export it with fer-edge export)")
        meta = md.loads(model.get_rt_info(md.OPENVINO_RT_PATH).astype(str), str(self.path))
        data = self.path.read_bytes() + (bin_path.read_bytes() if self.path.suffix == ".xml" else b"")
        md.check_payload(meta, md.payload_digest(data, meta["payload_sha256"]), str(self.path))
        md.check_outputs(meta, model.outputs[0].get_partial_shape()[-1].get_length(), str(self.path))
        md.check_graph_inputs(meta, [i.get_any_name() for i in model.inputs], str(self.path))
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self.inference_precision}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        self.compiled = core.compile_model(model, "CPU" if self.device == "cpu" else self.device.upper(), config)
        return meta

    def _infer(self, feeds):
        return self.compiled(feeds)[self.compiled.output(0)]
