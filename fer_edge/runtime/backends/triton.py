"""Triton client backend: the camera side detects and aligns locally and sends the crops (and
landmarks, for landmark models) to a Triton Inference Server over HTTP or gRPC.

    Recognizer("triton://127.0.0.1:8000/fer")         # HTTP
    Recognizer("triton+grpc://127.0.0.1:8001/fer")    # gRPC

The model's fer_edge metadata (classes, input size, colour, alignment template, decision rule)
comes from the server's model config (written by fer_edge.serving.triton_repository), so the
client decides exactly as the local Recognizer does. One client per backend, calls serialised
like every backend's (tritonclient's clients are not thread-safe); use one Recognizer per
camera thread for concurrency.
"""
from __future__ import annotations

import base64
import json
import re
import threading
from pathlib import Path

import numpy as np

from fer_edge import metadata as md
from fer_edge.runtime.backends.base import Backend, BackendError

URL = re.compile(r"^triton(\+grpc|\+http)?://([^/]+)/([A-Za-z0-9_.-]+)/?$")


def parse_url(url: str) -> tuple[str, str, str]:
    """'triton://host:port/model' -> ("http", "host:port", "model"); triton+grpc:// for gRPC."""
    m = URL.match(str(url))
    if not m:
        raise ValueError(f"{url!r}: expected triton://host:port/model (HTTP) or triton+grpc://host:port/model")
    return ("grpc" if m.group(1) == "+grpc" else "http"), m.group(2), m.group(3)


def is_url(model) -> bool:
    return isinstance(model, str) and model.startswith("triton")


class TritonBackend(Backend):
    name = "triton"
    suffixes = ()

    def __init__(self, url: str, threads: int | None = None, device: str = "cpu", timeout: float = 30.0):
        self.protocol, self.address, self.model_name = parse_url(url)
        self.url, self.threads, self.device, self.timeout = str(url), threads, device, timeout
        self.path = Path(self.model_name)  # messages name the model as for files
        self._infer_lock = threading.Lock()
        try:
            if self.protocol == "grpc":
                import tritonclient.grpc as client
            else:
                import tritonclient.http as client
        except ImportError as exc:
            raise BackendError(f"{url}: the Triton client needs tritonclient: pip install 'tritonclient[http,grpc]' "
                               f"({exc})") from exc
        self._client_mod = client
        self.meta = md.validate(self._load(), self.url)

    def _load(self) -> dict:
        c = self._client_mod
        try:
            self.client = (c.InferenceServerClient(self.address, network_timeout=self.timeout)
                           if self.protocol == "http" else c.InferenceServerClient(self.address))
            if not self.client.is_model_ready(self.model_name):
                raise BackendError(f"{self.url}: the server has no ready model {self.model_name!r}")
            config = self.client.get_model_config(self.model_name)
        except BackendError:
            raise
        except Exception as exc:  # connection refused, timeouts: the server's words
            raise BackendError(f"{self.url}: cannot reach the Triton server ({type(exc).__name__}: {exc})") from exc
        if self.protocol == "grpc":
            params = {k: v.string_value for k, v in config.config.parameters.items()}
        else:
            params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        if "fer_edge_metadata_b64" not in params:
            raise md.MetadataError(f"{self.url}: the model config carries no fer_edge metadata (write the repository "
                                   "with fer-edge serve / fer_edge.serving.write_repository)")
        return json.loads(base64.b64decode(params["fer_edge_metadata_b64"]))

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        c = self._client_mod
        inputs = []
        for name, arr in feeds.items():
            i = c.InferInput(name, list(arr.shape), "FP32")
            i.set_data_from_numpy(arr)
            inputs.append(i)
        try:
            result = self.client.infer(self.model_name, inputs, outputs=[c.InferRequestedOutput("logits")])
        except Exception as exc:
            raise BackendError(f"{self.url}: inference failed on the server ({exc})") from exc
        return result.as_numpy("logits")

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
            self.client = None

    def __repr__(self) -> str:
        return f"TritonBackend({self.url!r}, {self.meta['format']}/{self.meta['precision']})"
