"""Issue 19: serving many cameras through Triton Inference Server, for real on localhost.

The server is the `tritonserver` binary of the nvidia-pytriton wheel; its Python backend runs
model.py in the stub environment (numpy < 2). Both come from CI (`.ci/run`); elsewhere the
tests that need them skip with the reason, unless FER_EDGE_REQUIRE_TRITON=1 makes that a failure.
"""
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_edge.runtime import Recognizer
from fer_edge.serving.triton_repository import KINDS, model_config, parse_config, write_repository

ASSETS = Path(__file__).resolve().parents[2] / "fer_edge" / "assets"


def _need_server():
    from fer_edge.serving import triton_server as ts

    try:
        ts.server_distribution()
        return ts.check_stub_env(ts.default_stub_env())
    except (ts.TritonUnavailable, FileNotFoundError, RuntimeError) as exc:
        if os.environ.get("FER_EDGE_REQUIRE_TRITON") == "1":
            pytest.fail(f"FER_EDGE_REQUIRE_TRITON=1 but: {exc}")
        pytest.skip(f"no Triton server here: {exc}")


@pytest.fixture(scope="module")
def served(tmp_path_factory, data_root):
    """One server with two models: the default model (ONNX Runtime inside the Python backend)
    and the shipped AGLRLS model (OpenVINO, landmarks as a second input)."""
    stub_env = _need_server()
    pytest.importorskip("tritonclient.http")
    from fer_edge.serving.triton_server import TritonServer

    repo = tmp_path_factory.mktemp("triton_repo")
    write_repository(ASSETS / "default.onnx", repo, name="fer", max_batch=16, instances=2)
    write_repository(ASSETS / "aglrls.xml", repo, name="aglrls", max_batch=16)
    server = TritonServer(repo, stub_env=stub_env)
    with server:
        yield server


@pytest.fixture(scope="module")
def group(data_root):
    return cv2.imread(str(data_root / "faces" / "multiface.jpg"))


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_of_config_parses_as_a_triton_model_config(kind):
    pytest.importorskip("tritonclient.grpc")
    from fer_edge.runtime.backends import open_backend

    meta = open_backend(ASSETS / "aglrls.xml").meta  # two inputs, 7 heads
    text = model_config("m", meta, kind, max_batch=8, preferred=(4, 8, 64), queue_delay_us=500, instances=3,
                        device="gpu" if kind == "tensorrt" else "cpu", model_file="model.xml")
    cfg = parse_config(text)
    assert cfg.name == "m" and cfg.max_batch_size == 8
    assert [i.name for i in cfg.input] == ["pixels", "landmarks"] and list(cfg.input[1].dims) == [5, 2]
    assert list(cfg.input[0].dims) == meta["input"]
    assert cfg.output[0].name == "logits" and list(cfg.output[0].dims) == [7, 7]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]  # capped at max_batch
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert cfg.instance_group[0].count == 3
    assert (cfg.backend or cfg.platform) == {"python": "python", "onnxruntime": "onnxruntime_onnx",
                                            "openvino": "openvino", "tensorrt": "tensorrt_plan"}[kind]
    assert "fer_edge_metadata_b64" in cfg.parameters


def test_repository_writing_checks_its_inputs(tmp_path):
    with pytest.raises(ValueError, match="name"):
        write_repository(ASSETS / "default.onnx", tmp_path, name="bad name")
    with pytest.raises(ValueError, match="serves"):
        write_repository(ASSETS / "default.onnx", tmp_path, kind="tensorrt")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(Exception, match="bad.onnx"):
        write_repository(bad, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()  # nothing written for a model that does not load
    with pytest.raises(ValueError, match="GPU"):
        model_config("m", {"input": [1, 48, 48], "classes": ["a"], "inputs": [{"name": "pixels"}]}, "tensorrt")
    folder = write_repository(ASSETS / "default.int8.xml", tmp_path / "ok", name="fer_int8", kind="openvino")
    assert (folder / "1" / "model.xml").is_file() and (folder / "1" / "model.bin").is_file()


def test_deepstream_config_and_labels_for_an_engine(tmp_path):
    from fer_edge import metadata as md
    from fer_edge.export.deepstream import write_deepstream_config
    from fer_edge.runtime.backends import open_backend
    from fer_edge.runtime.backends.tensorrt import write_engine_file

    meta = dict(open_backend(ASSETS / "default.onnx").meta, format="tensorrt", precision="fp16",
                payload_sha256=md.sha256_bytes(b"PLANBYTES"))
    engine = tmp_path / "fer.engine"
    write_engine_file(engine, meta, b"PLANBYTES")
    path = write_deepstream_config(engine, meta)
    text = path.read_text()
    assert "model-engine-file=fer.plan" in text and "network-mode=2" in text and "model-color-format=2" in text
    assert "process-mode=2" in text and "net-scale-factor=1.0" in text and "output-blob-names=logits" in text
    assert (tmp_path / "fer.plan").read_bytes() == b"PLANBYTES"  # nvinfer reads the bare plan
    assert (tmp_path / "fer_labels.txt").read_text().strip().split(";") == meta["classes"]
    aglrls = open_backend(ASSETS / "aglrls.xml").meta
    assert write_deepstream_config(tmp_path / "a.engine", aglrls) is None  # landmark input: nvinfer cannot feed it


def test_served_results_equal_the_local_recognizer(served, group, yunet_path):
    local = Recognizer(ASSETS / "default.onnx", detector=yunet_path).predict(group)
    for url in (f"triton://{served.http_url}/fer", f"triton+grpc://{served.grpc_url}/fer"):
        remote = Recognizer(url, detector=yunet_path)
        assert remote.model.name == "triton" and remote.classes == Recognizer(ASSETS / "default.onnx").classes
        got = remote.predict(group)
        assert [f.label for f in got] == [f.label for f in local] and len(got) == 6
        for a, b in zip(got, local):
            assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) < 1e-5
        remote.close()


def test_a_landmark_model_is_served_with_its_landmarks(served, group, yunet_path):
    local = Recognizer(ASSETS / "aglrls.xml", detector=yunet_path).predict(group)
    remote = Recognizer(f"triton://{served.http_url}/aglrls", detector=yunet_path).predict(group)
    assert remote and [f.label for f in remote] == [f.label for f in local]  # GLPC on the served 7 heads


def test_concurrent_cameras_get_the_serial_answers(served, group, yunet_path):
    rec = Recognizer(ASSETS / "default.onnx", detector=yunet_path)
    frames = [np.roll(group, 7 * k, axis=1) for k in range(6)]
    faces = [rec.detect(f) for f in frames]
    x = [rec.crops_for(f, d)[0] for f, d in zip(frames, faces)]
    serial = [rec.infer(xi, None) for xi in x]
    out, errors = [None] * len(x), []

    def camera(k):  # one client per camera thread; the server's dynamic batcher mixes their requests
        try:
            r = Recognizer(f"triton+grpc://{served.grpc_url}/fer", detector=yunet_path)
            for _ in range(5):
                got = r.infer(x[k], None)
                assert np.allclose(got, serial[k], atol=1e-5)
            out[k] = got
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=camera, args=(k,)) for k in range(len(x))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(o is not None for o in out)


def test_server_side_errors_are_clear_and_harm_no_other_request(served):
    from fer_edge.runtime.backends import BackendError, open_backend

    b = open_backend(f"triton://{served.http_url}/fer")
    good = np.full((2, *b.input_shape), 128, np.float32)
    with pytest.raises(ValueError, match="expected shape"):
        b.infer(np.zeros((2, 3, 48, 48), np.float32))  # checked on the client, before any traffic
    assert b.infer(good).shape == (2, 8)
    with pytest.raises(BackendError, match="no ready model 'nope'"):
        open_backend(f"triton://{served.http_url}/nope")
    with pytest.raises(BackendError, match="cannot reach"):
        open_backend("triton://127.0.0.1:9/fer")
    with pytest.raises(ValueError, match="triton://host:port/model"):
        open_backend("triton://no-model-name")
