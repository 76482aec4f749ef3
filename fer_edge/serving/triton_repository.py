"""A Triton Inference Server model repository for an exported fer_edge model.

    write_repository("exports/m.fp32.onnx", "triton_models", name="fer", kind="python")

kind:
- "python" (default; runs on any Triton, CPU-only included, e.g. the `nvidia-pytriton` wheel's
  server): a Python-backend model (fer_edge/serving/triton_model.py) that runs fer_edge's own
  runtime backend on the exported file, so the server answers exactly what the local Recognizer
  would;
- "onnxruntime" / "openvino" / "tensorrt": Triton's own backends on the same file (GPU servers
  whose Triton ships them: the `tritonserver` containers). The graphs' tensor names are already
  Triton's: inputs `pixels` (+ `landmarks`), output `logits`.
Every config has dynamic batching (preferred sizes, a queue delay), an instance group, and the
model's fer_edge metadata (base64 JSON) as a parameter, from which the client-side backend
(fer_edge.runtime.backends.triton) learns classes, input size, colour, template and decision rule.
"""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

KINDS = {
    # kind -> (config header lines, file name in the version folder, suffixes it takes)
    "python": (['backend: "python"'], None, (".onnx", ".xml")),
    "onnxruntime": (['platform: "onnxruntime_onnx"'], "model.onnx", (".onnx",)),
    "openvino": (['backend: "openvino"'], "model.xml", (".xml", ".onnx")),
    "tensorrt": (['platform: "tensorrt_plan"'], "model.plan", (".engine", ".plan")),
}


def _dims(shape) -> str:
    return "[ " + ", ".join(str(int(d)) for d in shape) + " ]"


def model_config(name: str, meta: dict, kind: str = "python", max_batch: int = 32, preferred=(8, 32),
                 queue_delay_us: int = 2000, instances: int = 1, device: str = "cpu", model_file: str = "",
                 backend: str = "auto", threads: int = 0) -> str:
    """config.pbtxt text (Triton's ModelConfig in protobuf text format)."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {tuple(KINDS)}, got {kind!r}")
    if max_batch < 1 or instances < 1 or queue_delay_us < 0:
        raise ValueError("max_batch and instances must be >= 1 and queue_delay_us >= 0")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device: expected cpu or gpu, got {device!r}")
    if kind == "tensorrt" and device != "gpu":
        raise ValueError("a TensorRT plan runs on a GPU: device='gpu'")
    c, h, w = meta["input"]
    heads = len(meta.get("heads") or [])
    out_dims = [heads, len(meta["classes"])] if heads > 1 else [len(meta["classes"])]
    lines = [f'name: "{name}"', *KINDS[kind][0], f"max_batch_size: {max_batch}", "input ["]
    specs = [("pixels", [c, h, w])] + [(i["name"], i["shape"][1:]) for i in meta["inputs"][1:]]
    lines.append(",\n".join(f'  {{ name: "{n}" data_type: TYPE_FP32 dims: {_dims(d)} }}' for n, d in specs))
    lines += ["]", "output [", f'  {{ name: "logits" data_type: TYPE_FP32 dims: {_dims(out_dims)} }}', "]"]
    sizes = sorted({min(int(p), max_batch) for p in preferred if int(p) >= 1})
    lines += ["dynamic_batching {", f"  preferred_batch_size: {_dims(sizes)}",
              f"  max_queue_delay_microseconds: {int(queue_delay_us)}", "}"]
    lines += [f'instance_group [ {{ count: {instances} kind: {"KIND_GPU" if device == "gpu" else "KIND_CPU"} }} ]']
    params = {"fer_edge_metadata_b64": base64.b64encode(json.dumps(meta, sort_keys=True).encode()).decode()}
    if kind == "python":
        params.update(fer_edge_model_file=model_file, fer_edge_backend=backend, fer_edge_threads=str(int(threads)))
    for k, v in params.items():
        lines.append(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}')
    return "\n".join(lines) + "\n"


def write_repository(model: str | Path, repository: str | Path, name: str = "fer_edge", kind: str = "python",
                     max_batch: int = 32, preferred=(8, 32), queue_delay_us: int = 2000, instances: int = 1,
                     device: str = "cpu", backend: str = "auto", threads: int = 0) -> Path:
    """Writes <repository>/<name>/{config.pbtxt, 1/<model files>} (and, for the python kind,
    1/model.py); returns the model's folder. The model file is opened once with fer_edge's
    backend first, so a corrupt or foreign file fails here rather than in the server."""
    import re

    from fer_edge.runtime.backends import open_backend

    model = Path(model)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"name: letters, digits, '_', '.', '-' only (a Triton model name), got {name!r}")
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {tuple(KINDS)}, got {kind!r}")
    if model.suffix.lower() not in KINDS[kind][2]:
        raise ValueError(f"{model}: the {kind} kind serves {' or '.join(KINDS[kind][2])} files, not {model.suffix!r}")
    plan = None
    if kind == "tensorrt":  # fer_edge engines are a metadata header + the plan; Triton reads the bare plan
        from fer_edge.runtime.backends.tensorrt import read_engine_file

        meta, plan = read_engine_file(model)
    else:
        with open_backend(model, backend) as b:
            meta = dict(b.meta)
    folder = Path(repository) / name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    target = KINDS[kind][1] or model.name
    if kind == "openvino" and model.suffix.lower() == ".onnx":
        target = "model.onnx"
    if plan is not None:
        (version / target).write_bytes(plan)
    else:
        shutil.copy(model, version / target)
    if model.suffix.lower() == ".xml":
        shutil.copy(model.with_suffix(".bin"), (version / target).with_suffix(".bin"))
    if kind == "python":
        shutil.copy(Path(__file__).with_name("triton_model.py"), version / "model.py")
    config = model_config(name, meta, kind, max_batch, preferred, queue_delay_us, instances, device, target, backend, threads)
    (folder / "config.pbtxt").write_text(config)
    if kind == "tensorrt":
        from fer_edge.export.deepstream import write_deepstream_config

        write_deepstream_config(version / target, meta)
    return folder


def parse_config(text: str):
    """config.pbtxt text -> Triton's ModelConfig protobuf (tritonclient ships its schema): a
    config Triton could not read fails here with protobuf's message."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())
