"""TensorRT backend (.engine/.plan), written against the TensorRT 10 Python API.

fer_edge engines are a metadata header (fer_edge/metadata.py: ENGINE_MAGIC) + the serialized
plan, so that an engine carries its classes and preprocessing like the other formats.
Device memory goes through cuda-python (`cuda.bindings.runtime`), not torch.
TensorRT cannot be installed on the build machines; this backend runs on Jetson and GPU hosts.
"""
from __future__ import annotations

import numpy as np

from fer_edge import metadata as md
from fer_edge.runtime.backends.base import Backend, BackendError


def read_engine_file(path) -> tuple[dict, bytes]:
    """(metadata, plan bytes) of a fer_edge engine file; MetadataError when it is not one."""
    with open(path, "rb") as f:
        return md.read_engine_bytes(f.read(), str(path))


def write_engine_file(path, meta: dict, plan: bytes) -> None:
    with open(path, "wb") as f:
        f.write(md.engine_file_bytes(meta, plan))


def _check(result):
    err = result[0]
    if int(err) != 0:
        raise BackendError(f"CUDA error {err}")
    return result[1] if len(result) == 2 else result[1:]


class TensorRTBackend(Backend):
    name = "tensorrt"

    def _load(self) -> dict:
        meta, plan = read_engine_file(self.path)
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except ImportError as exc:
            raise BackendError(f"{self.path}: TensorRT engines need the tensorrt and cuda-python packages ({exc})") from exc
        self._trt, self._cudart = trt, cudart
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BackendError(f"{self.path}: TensorRT could not deserialize the plan (built for another TensorRT "
                               f"version or GPU? metadata says TensorRT {meta.get('tensorrt')}, "
                               f"compute capability {meta.get('compute_capability')})")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        md.check_graph_inputs(meta, self.input_names, str(self.path))
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.stream = _check(cudart.cudaStreamCreate())
        return meta

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        # batches above the optimisation profile's maximum run in chunks that fit it
        hi = (self.meta.get("batch_profile") or [None, None, None])[2]
        n = len(feeds["pixels"])
        if hi and n > hi:
            return np.concatenate([self._run({k: v[i:i + hi] for k, v in feeds.items()}) for i in range(0, n, hi)])
        return self._run(feeds)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        cudart = self._cudart
        n = len(feeds["pixels"])
        out = np.empty((n, self.heads * len(self.meta["classes"])), np.float32)
        d_ins = []
        d_out = _check(cudart.cudaMallocAsync(out.nbytes, self.stream))
        try:
            kind = cudart.cudaMemcpyKind
            for name in self.input_names:  # bound by name, never by position
                host = feeds[name]
                if not self.context.set_input_shape(name, tuple(host.shape)):
                    raise BackendError(f"{self.path.name}: TensorRT refused input {name} of shape {tuple(host.shape)} "
                                       f"(profile {self.meta.get('batch_profile')})")
                d_ins.append(_check(cudart.cudaMallocAsync(host.nbytes, self.stream)))
                _check(cudart.cudaMemcpyAsync(d_ins[-1], host.ctypes.data, host.nbytes, kind.cudaMemcpyHostToDevice, self.stream))
                self.context.set_tensor_address(name, int(d_ins[-1]))
            self.context.set_tensor_address(self.output_name, int(d_out))
            if not self.context.execute_async_v3(self.stream):
                raise BackendError("TensorRT execution failed")
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, d_out, out.nbytes, kind.cudaMemcpyDeviceToHost, self.stream))
            _check(cudart.cudaStreamSynchronize(self.stream))
        finally:
            for d_in in d_ins:
                cudart.cudaFreeAsync(d_in, self.stream)
            cudart.cudaFreeAsync(d_out, self.stream)
        return out

    def close(self) -> None:
        if getattr(self, "stream", None) is not None:
            self._cudart.cudaStreamDestroy(self.stream)
            self.stream = None
