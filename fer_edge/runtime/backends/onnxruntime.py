"""ONNX Runtime backend (CPU; CUDA/TensorRT execution providers when installed and asked)."""
from __future__ import annotations

from fer_edge import metadata as md
from fer_edge.runtime.backends.base import Backend


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def _load(self) -> dict:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # ORT's workers spin after each run by default; in a pipeline that alternates with the
        # face detector (OpenCV's threads) the spinning steals the cores detection needs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if self.device == "cuda":
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        custom = self.session.get_modelmeta().custom_metadata_map
        if md.ONNX_KEY not in custom:
            raise md.MetadataError(f"{self.path}: an ONNX model without fer_edge metadata (export it with fer-edge export)")
        meta = md.loads(custom[md.ONNX_KEY], str(self.path))
        md.check_payload(meta, md.payload_digest(self.path.read_bytes(), meta["payload_sha256"]), str(self.path))
        md.check_outputs(meta, self.session.get_outputs()[0].shape[-1], str(self.path))
        md.check_graph_inputs(meta, [i.name for i in self.session.get_inputs()], str(self.path))
        return meta

    def _infer(self, feeds):
        return self.session.run(None, feeds)[0]
