"""PyTorch backend for fer_edge checkpoints (.pt): the training side's view of a model, for
comparing with exports and for quick tries. It lives on the training side and reaches the runtime
through the `fer_edge.backends` entry point (pyproject.toml); torch is imported when a checkpoint
is opened, never before."""
from __future__ import annotations

import numpy as np

from fer_edge import metadata as md
from fer_edge.runtime.backends.base import Backend


class TorchCheckpointBackend(Backend):
    name = "torch"
    suffixes = (".pt",)

    def _load(self) -> dict:
        import torch

        from fer_edge.export.api import load_for_export, model_metadata
        from fer_edge.export.graph import InferenceGraph

        model, method, cfg, state = load_for_export(self.path)
        self._torch = torch
        if self.threads:
            torch.set_num_threads(self.threads)
        self.graph = InferenceGraph(model, state["mean"], state["std"], method.predict).eval()
        self._names = ["pixels"] + [i.name for i in method.inference().inputs]
        return dict(model_metadata(method, cfg, state), format="torch", precision="fp32",
                    payload_sha256=md.sha256_bytes(self.path.read_bytes()))

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self._torch.no_grad():
            return self.graph(*[self._torch.from_numpy(feeds[n]) for n in self._names]).numpy()
