"""Issue 19: the TensorRT backend's own logic, run here against a stand-in for TensorRT and
cuda-python (neither installs on these machines): binding by tensor name, chunking batches above
the optimisation profile, a refused input shape, and concurrent callers getting serial answers.

The stand-in keeps "device" buffers as numpy arrays addressed by their data pointers and copies
with ctypes.memmove, so the backend's real allocation / copy / bind / execute sequence runs; its
"network" is a known function of the bound inputs: logits[c] = mean(pixels) * (c + 1) + sum(landmarks).
"""
import ctypes
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from fer_edge import metadata as md

ASSETS = Path(__file__).resolve().parents[2] / "fer_edge" / "assets"


class FakeCuda:
    def __init__(self):
        self.buffers = {}

    class cudaMemcpyKind:  # noqa: N801 (cuda-python's names)
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def cudaStreamCreate(self):  # noqa: N802
        return (0, 1)

    def cudaStreamDestroy(self, stream):  # noqa: N802
        return (0,)

    def cudaMallocAsync(self, nbytes, stream):  # noqa: N802
        buf = np.zeros(max(1, nbytes), np.uint8)
        self.buffers[buf.ctypes.data] = buf
        return (0, buf.ctypes.data)

    def cudaFreeAsync(self, ptr, stream):  # noqa: N802
        self.buffers.pop(int(ptr), None)
        return (0,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):  # noqa: N802
        ctypes.memmove(int(dst), int(src), nbytes)
        return (0,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def view(self, ptr, shape):
        buf = self.buffers[int(ptr)]
        return buf[: int(np.prod(shape)) * 4].view(np.float32).reshape(shape)


class FakeContext:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses, self.calls, self.active = engine, {}, {}, [], 0

    def set_input_shape(self, name, shape):
        if shape[0] > self.engine.profile_max:
            return False
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name, address):
        self.addresses[name] = address

    def execute_async_v3(self, stream):
        self.active += 1
        assert self.active == 1, "two calls inside one execution context at once"
        time.sleep(0.002)  # widen the window a missing lock would show in
        cuda = self.engine.cuda
        px = cuda.view(self.addresses["pixels"], self.shapes["pixels"])
        n = px.shape[0]
        extra = 0.0
        if "landmarks" in self.shapes:
            extra = cuda.view(self.addresses["landmarks"], self.shapes["landmarks"]).reshape(n, -1).sum(1)
        out = cuda.view(self.addresses["logits"], (n, self.engine.classes))
        out[:] = px.reshape(n, -1).mean(1)[:, None] * np.arange(1, self.engine.classes + 1)[None] + np.asarray(extra).reshape(-1, 1)
        self.calls.append(n)
        self.active -= 1
        return True


class FakeEngine:
    def __init__(self, names, cuda, classes, profile_max):
        self.names, self.cuda, self.classes, self.profile_max = names, cuda, classes, profile_max
        self.num_io_tensors = len(names)
        self.contexts = []

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return "OUT" if name == "logits" else "IN"

    def create_execution_context(self):
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]


@pytest.fixture
def fake_trt(monkeypatch):
    cuda = FakeCuda()
    state = {}

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            state["engine"] = FakeEngine(state["names"], cuda, state["classes"], state["profile_max"])
            return state["engine"]

    trt = types.SimpleNamespace(Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
                                Runtime=Runtime, TensorIOMode=types.SimpleNamespace(INPUT="IN", OUTPUT="OUT"))
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cuda
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cuda)
    return state


def engine_file(tmp_path, model: str, profile_max: int) -> Path:
    from fer_edge.runtime.backends import open_backend
    from fer_edge.runtime.backends.tensorrt import write_engine_file

    plan = b"fake plan " + model.encode()
    meta = dict(open_backend(ASSETS / model).meta, format="tensorrt", precision="fp16",
                batch_profile=[1, 8, profile_max], payload_sha256=md.sha256_bytes(plan))
    path = tmp_path / f"{Path(model).stem}.engine"
    write_engine_file(path, meta, plan)
    return path


def expected(px, lm, classes):
    n = len(px)
    extra = 0.0 if lm is None else lm.reshape(n, -1).sum(1, dtype=np.float64)[:, None]
    return px.reshape(n, -1).mean(1, dtype=np.float64)[:, None] * np.arange(1, classes + 1)[None] + extra


def test_inputs_are_bound_by_name_whatever_the_engine_order(fake_trt, tmp_path):
    from fer_edge.runtime.backends import open_backend

    # the engine lists landmarks before pixels: position would swap them, names cannot
    fake_trt.update(names=["landmarks", "logits", "pixels"], classes=49, profile_max=32)  # 7 heads x 7 classes
    b = open_backend(engine_file(tmp_path, "aglrls.xml", 32))
    c, s, _ = b.input_shape
    rng = np.random.default_rng(0)
    px = rng.uniform(0, 255, (3, c, s, s)).astype(np.float32)
    lm = rng.uniform(0, s, (3, 5, 2)).astype(np.float32)
    out = b.infer(px, lm)
    assert out.shape == (3, 7, 7)  # 7 heads of 7 classes
    np.testing.assert_allclose(out.reshape(3, -1), expected(px, lm, 49), rtol=1e-4)


def test_batches_above_the_profile_run_in_chunks(fake_trt, tmp_path):
    from fer_edge.runtime.backends import open_backend

    fake_trt.update(names=["pixels", "logits"], classes=8, profile_max=32)
    b = open_backend(engine_file(tmp_path, "default.onnx", 32))
    px = np.random.default_rng(1).uniform(0, 255, (75, *b.input_shape)).astype(np.float32)
    out = b.infer(px)
    assert fake_trt["engine"].contexts[0].calls == [32, 32, 11]
    np.testing.assert_allclose(out, expected(px, None, 8), rtol=1e-4)


def test_a_refused_input_shape_is_a_clear_error(fake_trt, tmp_path):
    from fer_edge.runtime.backends import BackendError, open_backend

    fake_trt.update(names=["pixels", "logits"], classes=8, profile_max=4)
    b = open_backend(engine_file(tmp_path, "default.onnx", 32))  # metadata says 32, the engine takes 4
    with pytest.raises(BackendError, match="refused input pixels of shape"):
        b.infer(np.zeros((6, *b.input_shape), np.float32))


def test_concurrent_callers_get_the_serial_answers(fake_trt, tmp_path):
    from fer_edge.runtime.backends import open_backend

    fake_trt.update(names=["pixels", "logits"], classes=8, profile_max=32)
    b = open_backend(engine_file(tmp_path, "default.onnx", 32))
    rng = np.random.default_rng(2)
    batches = [rng.uniform(0, 255, (k + 1, *b.input_shape)).astype(np.float32) for k in range(8)]
    serial = [b.infer(x) for x in batches]
    results, errors = [None] * 8, []

    def call(k):
        try:
            for _ in range(5):
                results[k] = b.infer(batches[k])
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors  # the context never saw two calls at once
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got, want)


def test_tensorrt_is_available_only_with_cuda_python(monkeypatch):
    from fer_edge.export.tensorrt_export import tensorrt_available

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "cuda", None)  # cuda-python missing
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    assert tensorrt_available() is False
