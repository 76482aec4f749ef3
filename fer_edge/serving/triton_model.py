"""The Triton Python-backend model fer_edge writes into a repository as `<name>/1/model.py`.

It runs fer_edge's own runtime backend (ONNX Runtime or OpenVINO) on batches of aligned face
crops: the cameras detect and align locally and send only the crops (and the landmarks a
landmark model takes). Requests that Triton's dynamic batcher groups are run as one batch and
split back. A request that fails (bad shape, NaN) gets its own error; the others are answered.
"""
import base64
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from fer_edge.runtime.backends import open_backend

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params["fer_edge_model_file"])
        threads = int(params.get("fer_edge_threads", "0")) or None
        self.backend = open_backend(path, params.get("fer_edge_backend", "auto"), threads=threads)
        served = json.loads(base64.b64decode(params["fer_edge_metadata_b64"]))
        if served.get("payload_sha256") != self.backend.meta.get("payload_sha256"):
            raise pb_utils.TritonModelException(f"{path}: not the model this repository was written for")
        self.extra = list(self.backend.extra_inputs)

    def execute(self, requests):
        pixels, extra, sizes, responses = [], {name: [] for name in self.extra}, [], []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "pixels").as_numpy()
            pixels.append(x)
            sizes.append(len(x))
            for name in self.extra:
                extra[name].append(pb_utils.get_input_tensor_by_name(r, name).as_numpy())
        try:
            out = self.backend.infer(np.concatenate(pixels), **{k: np.concatenate(v) for k, v in extra.items()})
        except Exception:  # one bad request must not fail the batch it was grouped with: answer each alone
            for k, r in enumerate(requests):
                try:
                    one = self.backend.infer(pixels[k], **{name: v[k] for name, v in extra.items()})
                    responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("logits", one)]))
                except Exception as exc:
                    responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
            return responses
        start = 0
        for n in sizes:
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("logits", np.ascontiguousarray(out[start:start + n], dtype=np.float32).copy())]))
            start += n
        return responses

    def finalize(self):
        self.backend.close()
