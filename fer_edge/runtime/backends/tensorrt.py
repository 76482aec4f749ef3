"""TensorRT backend (.engine/.plan), written against the TensorRT 10 Python API.

fer_edge engines are `FERENGN1` + 4-byte little-endian header length + JSON metadata + the
serialized plan, so that an engine carries its classes and preprocessing like the other formats.
Device memory goes through cuda-python (`cuda.bindings.runtime`), not torch.
TensorRT cannot be installed on the build machines; this backend runs on Jetson and GPU hosts.
"""
from __future__ import annotations

import struct

import numpy as np

from fer_edge import metadata as md
from fer_edge.runtime.backends.base import Backend, BackendError

MAGIC = b"FERENGN1"


def read_engine_file(path) -> tuple[dict, bytes]:
    """(metadata, plan bytes) of a fer_edge engine file; MetadataError when it is not one."""
    data = open(path, "rb").read()
    if len(data) < 12 or data[:8] != MAGIC:
        raise md.MetadataError(f"{path}: not a fer_edge engine (missing {MAGIC!r} header; build it with fer-edge export)")
    (n,) = struct.unpack("<I", data[8:12])
    if 12 + n > len(data):
        raise md.MetadataError(f"{path}: truncated engine header")
    meta = md.loads(data[12:12 + n], str(path))
    plan = data[12 + n:]
    md.check_payload(meta, md.sha256_bytes(plan), str(path))
    return meta, plan


def write_engine_file(path, meta: dict, plan: bytes) -> None:
    header = md.dumps(meta).encode()
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(header)) + header + plan)


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
        if len(self.input_names) != 1 + bool(meta.get("needs_landmarks")):
            raise md.MetadataError(f"{self.path}: {len(self.input_names)} engine inputs do not fit the metadata "
                                   f"(needs_landmarks={meta.get('needs_landmarks')})")
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.stream = _check(cudart.cudaStreamCreate())
        return meta

    def _infer(self, batch: np.ndarray, landmarks) -> np.ndarray:
        cudart = self._cudart
        n = batch.shape[0]
        host_inputs = [batch] if landmarks is None else [batch, landmarks]
        out = np.empty((n, self.heads * len(self.meta["classes"])), np.float32)
        d_ins = []
        d_out = _check(cudart.cudaMallocAsync(out.nbytes, self.stream))
        try:
            kind = cudart.cudaMemcpyKind
            for name, host in zip(self.input_names, host_inputs):
                self.context.set_input_shape(name, tuple(host.shape))
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
