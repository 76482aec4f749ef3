"""PyTorch backend for fer_edge checkpoints (.pt): the training side's view of a model, for
comparing with exports and for quick tries. Needs torch; the rest of the runtime never does."""
from __future__ import annotations

import numpy as np

from fer_edge import metadata as md
from fer_edge.runtime.backends.base import Backend


class TorchCheckpointBackend(Backend):
    name = "torch"

    def _load(self) -> dict:
        import torch

        from fer_edge.export.api import align_template, load_for_export
        from fer_edge.export.graph import InferenceGraph

        model, method, cfg, state = load_for_export(self.path)
        self._torch = torch
        if self.threads:
            torch.set_num_threads(self.threads)
        self.graph = InferenceGraph(model, state["mean"], state["std"], method.predict).eval()
        channels = 1 if cfg.data.color == "gray" else 3
        return {"schema": md.SCHEMA, "format": "torch", "precision": "fp32", "classes": list(state["classes"]),
                "input": [channels, cfg.data.image_size, cfg.data.image_size], "color": cfg.data.color,
                "mean": list(state["mean"]), "std": list(state["std"]), "method": cfg.method,
                "needs_landmarks": bool(getattr(method, "needs_landmarks", False)),
                "payload_sha256": md.sha256_bytes(self.path.read_bytes()),
                "extras": getattr(method, "export_extras", lambda m: {})(model),
                "align_template": align_template(cfg)}

    def _infer(self, batch: np.ndarray, landmarks) -> np.ndarray:
        extra = () if landmarks is None else (self._torch.from_numpy(landmarks),)
        with self._torch.no_grad():
            return self.graph(self._torch.from_numpy(batch), *extra).numpy()
