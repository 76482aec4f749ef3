"""ONNX -> TensorRT engine, written against the TensorRT 10 Python API.

FP16, or INT8 from the explicitly quantised (Q/DQ) ONNX; one optimisation profile over the batch
sizes asked for; a timing cache reused across builds; a workspace limit; DLA for Jetson.
TensorRT cannot be installed on the build machines: there `build_engine` raises
TensorRTUnavailable and only this step is skipped (the ONNX it consumes is verified in ONNX
Runtime). The engine file carries fer_edge metadata in a header (runtime/backends/tensorrt.py).
"""
from __future__ import annotations

from pathlib import Path

from fer_edge import metadata as md


class TensorRTUnavailable(RuntimeError):
    pass


def tensorrt_available() -> bool:
    """TensorRT and cuda-python (the build reads the GPU's compute capability through it, and
    the backend moves memory with it) are both importable."""
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime  # noqa: F401
    except ImportError:
        return False
    return True


def build_engine(onnx_bytes: bytes, meta: dict, path: Path, precision: str, batch_sizes=(1, 8, 32),
                 workspace_mb: int = 1024, timing_cache: Path | None = None, dla_core: int | None = None) -> dict:
    if not tensorrt_available():
        raise TensorRTUnavailable("tensorrt and cuda-python are not both installed here (they are on Jetson / GPU hosts)")
    import tensorrt as trt
    from fer_edge.runtime.backends.tensorrt import write_engine_file

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # INT8 comes from the explicitly quantised (Q/DQ) ONNX. TensorRT 10's guidance for explicit
    # quantisation is a strongly typed network with no precision flags: the Q/DQ nodes alone say
    # where INT8 runs, and every other tensor keeps its ONNX type (TensorRT 11 removes the INT8
    # and FP16 builder flags). FP16 engines stay weakly typed with the FP16 flag, which TensorRT 10
    # still supports, so the FP32 graph can run in FP16 where the builder finds it faster.
    strongly_typed = precision == "int8"
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    lo, opt, hi = min(batch_sizes), sorted(batch_sizes)[len(batch_sizes) // 2], max(batch_sizes)
    profile = builder.create_optimization_profile()
    graph_inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    for spec in meta["inputs"]:  # one profile entry per declared input, by name
        if spec["name"] not in graph_inputs:
            raise RuntimeError(f"the ONNX graph has no input {spec['name']!r} (it has {sorted(graph_inputs)})")
        rest = tuple(spec["shape"][1:])
        profile.set_shape(spec["name"], (lo, *rest), (opt, *rest), (hi, *rest))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    if timing_cache:
        timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
    plan = bytes(plan)
    from cuda.bindings import runtime as cudart

    err, props = cudart.cudaGetDeviceProperties(0)
    meta = dict(meta, payload_sha256=md.sha256_bytes(plan), tensorrt=trt.__version__,
                compute_capability=f"{props.major}.{props.minor}" if int(err) == 0 else None,
                batch_profile=[lo, opt, hi], dla_core=dla_core)
    tmp = path.with_name(f".{path.name}.tmp")
    write_engine_file(tmp, meta, plan)
    tmp.replace(path)
    return meta
