"""A DeepStream `nvinfer` secondary-classifier config and labels file for a TensorRT engine.

DeepStream runs the engine on face crops its primary detector found (operate-on-gie-id) and
attaches the class to each face object. Written next to the engine; documented as untested
here (no DeepStream on the build machines). Normalisation is folded into fer_edge graphs, so
nvinfer feeds raw 0-255 pixels (net-scale-factor 1, no offsets). Landmark models (AGLRLS) take a
second input nvinfer cannot make: they get no config.
"""
from __future__ import annotations

from pathlib import Path


def deepstream_config(engine: Path, meta: dict, primary_gie_id: int = 1, face_class_id: int = 0) -> str:
    c, h, w = meta["input"]
    color = meta.get("color", "gray")
    model_color_format = {"rgb": 0, "bgr": 1, "gray": 2}[color]
    return "\n".join([
        "# fer_edge: facial expression classifier as a DeepStream secondary GIE (untested here).",
        f"# model: {engine.name} (the bare TensorRT plan); input {c}x{h}x{w} {color}; classes in {engine.stem}_labels.txt",
        "[property]",
        "gpu-id=0",
        "net-scale-factor=1.0",  # fer_edge graphs normalise inside
        f"model-engine-file={engine.name}",
        f"labelfile-path={engine.stem}_labels.txt",
        "batch-size=8",
        "network-mode=2" if meta.get("precision") == "fp16" else
        ("network-mode=1" if meta.get("precision") == "int8" else "network-mode=0"),
        f"model-color-format={model_color_format}",
        "network-type=1",  # classifier
        "process-mode=2",  # secondary: on the primary detector's objects
        f"operate-on-gie-id={primary_gie_id}",
        f"operate-on-class-ids={face_class_id}",
        "output-blob-names=logits",
        "classifier-threshold=0.0",
        "classifier-async-mode=0",
        "maintain-aspect-ratio=0",
        "",
    ])


def write_deepstream_config(engine: str | Path, meta: dict, **kw) -> Path | None:
    """<engine stem>_deepstream.txt and <engine stem>_labels.txt beside the engine; None (nothing
    written) for models with inputs besides the pixels."""
    from fer_edge import metadata as md

    engine = Path(engine)
    if len(meta.get("inputs", [])) > 1:
        return None
    try:  # a fer_edge engine (metadata header + plan): nvinfer deserializes bare plans only
        _, plan = md.read_engine_bytes(engine.read_bytes(), str(engine))
        bare = engine.with_suffix(".plan")
        bare.write_bytes(plan)
    except md.MetadataError:  # already a bare plan (a Triton repository's model.plan)
        bare = engine
    path = engine.with_name(f"{engine.stem}_deepstream.txt")
    path.write_text(deepstream_config(bare, meta, **kw))
    # nvinfer classifiers read one line of ';'-separated labels per output layer
    engine.with_name(f"{engine.stem}_labels.txt").write_text(";".join(meta["classes"]) + "\n")
    return path
