"""Issue 13: the runtime and the CLI under threads, non-finite numbers and bad input. Each class
of fault has a test here: results under threads equal the serial ones exactly, a broken model
never yields NaN probabilities, one bad file never stops a folder, outputs never overwrite each
other, and every user mistake is one clear line."""
import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from fer_edge.cli import main
from fer_edge.runtime import Recognizer
from fer_edge.runtime.backends import BackendError, open_backend
from fer_edge.runtime.backends.base import cause
from fer_edge.runtime.frames import to_bgr

MODELS = ["m.fp32.onnx", "m.int8.onnx", "m.fp32.xml", "m.fp16.xml", "m.int8.xml", "default.int8.xml", "aglrls.xml"]


@pytest.fixture(scope="module")
def frames(data_root):
    files = [data_root / "faces" / "multiface.jpg", *sorted((data_root / "faces" / "test_images").glob("*/1.jpg"))]
    return [cv2.imread(str(f)) for f in files]


@pytest.mark.parametrize("name", MODELS)
def test_every_backend_gives_the_serial_results_under_eight_threads(name, exported, yunet_path, frames):
    pytest.importorskip("openvino")
    out, _, _ = exported
    rec = Recognizer(out / name if name.startswith("m.") else name, detector=yunet_path)

    def run(frame):
        return [(f.label, tuple(f.probabilities.values())) for f in rec.predict(frame)]

    serial = [run(f) for f in frames]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(run, frames * 4))
    assert parallel == serial * 4  # exactly: same labels, same probabilities, nobody's batch swapped


def _nan_model(tmp_path):
    """A real fer_edge ONNX file whose graph returns NaN for one class (a diverged model)."""
    import onnx
    from onnx import TensorProto, helper

    from fer_edge import metadata as md
    from fer_edge.export.onnx_export import write_onnx

    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 1, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])
    nodes = [helper.make_node("ReduceMean", ["pixels", "axes"], ["m"], keepdims=1),
             helper.make_node("Reshape", ["m", "shape"], ["flat"]),
             helper.make_node("Mul", ["flat", "w"], ["logits"])]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
             helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1]),
             helper.make_tensor("w", TensorProto.FLOAT, [1, 2], [1.0, float("nan")])]
    model = helper.make_model(helper.make_graph(nodes, "nan", [x], [y], inits), opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    meta = {"schema": md.SCHEMA, "classes": ["a", "b"], "input": [1, 8, 8], "color": "gray", "mean": [0.5], "std": [0.25],
            "method": "baseline", "inputs": [{"name": "pixels", "shape": ["N", 1, 8, 8]}], "heads": [],
            "decision": {"rule": "argmax", "params": {}}, "format": "onnx", "precision": "fp32"}
    path = tmp_path / "nan.onnx"
    write_onnx(model, meta, path)
    return path


def test_a_model_with_nan_outputs_raises_instead_of_returning_nan(tmp_path):
    with open_backend(_nan_model(tmp_path)) as b:
        with pytest.raises(BackendError, match="NaN or infinite outputs for 3 of 3 faces"):
            b.infer(np.zeros((3, 1, 8, 8), np.float32))
    with pytest.raises(BackendError, match="NaN or infinite"):
        Recognizer(tmp_path / "nan.onnx").predict(np.zeros((8, 8), np.uint8), detect=False)


def test_export_verification_fails_on_non_finite_outputs(trained, tmp_path):
    import torch

    from fer_edge.export import export
    from fer_edge.train import checkpoint

    state = checkpoint.load(trained)
    state["model"]["head.weight"] = torch.full_like(state["model"]["head.weight"], float("nan"))
    bad = checkpoint.save(tmp_path / "nan.pt", {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(ValueError, match="non-finite outputs"):
        export(bad, ["onnx:fp32"], tmp_path / "out", name="nan", val_limit=16, verbose=False)


def test_a_folder_with_bad_files_keeps_going_and_names_every_output_uniquely(data_root, yunet_path, tmp_path, capsys):
    src = tmp_path / "in"
    portrait = (data_root / "faces" / "test_images" / "paul_rudd" / "1.jpg").read_bytes()
    for sub in ("a", "b"):  # the same file name in two folders
        (src / sub).mkdir(parents=True)
        (src / sub / "1.jpg").write_bytes(portrait)
    (src / "a" / "broken.png").write_bytes(b"not an image at all")
    (src / "b" / "cut.jpg").write_bytes(portrait[: len(portrait) // 2])  # a truncated JPEG
    (src / "c" / "folder.jpg").mkdir(parents=True)  # a directory named like an image
    out = tmp_path / "missing" / "out"
    code = main(["predict", str(src), "--save", str(out), "--json", "--yunet", str(yunet_path)])
    captured = capsys.readouterr()
    assert code == 1
    records = json.loads(captured.out)
    assert len(records) == 4 and sum("error" in r for r in records) == 2
    assert [r["image"] for r in records if "faces" in r] == [str(src / "a" / "1.jpg"), str(src / "b" / "1.jpg")]
    assert "skipped" in captured.err and "truncated JPEG" in captured.err and "not a readable image" in captured.err
    assert (out / "a" / "1_fer.png").is_file() and (out / "b" / "1_fer.png").is_file()
    assert main(["predict", str(src / "a" / "1.jpg"), "--save", str(tmp_path / "x" / "y" / "one.png"),
                 "--yunet", str(yunet_path)]) == 0
    assert (tmp_path / "x" / "y" / "one.png").is_file()


def test_save_targets_opencv_cannot_write_are_usage_errors(data_root, yunet_path, tmp_path, capsys):
    img = str(data_root / "faces" / "test_images" / "paul_rudd" / "1.jpg")
    assert main(["predict", img, "--save", str(tmp_path / "x.unknownext"), "--yunet", str(yunet_path)]) == 2
    assert "cannot write '.unknownext'" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["predict", str(tmp_path), "--save", str(tmp_path / "file"), "--yunet", str(yunet_path)]) == 2


def _huge_png(path):
    ok, buf = cv2.imencode(".png", np.zeros((2, 2), np.uint8))
    data = bytearray(buf.tobytes())
    ihdr = data[12:29]  # type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", 60000, 60000)
    data[16:29] = ihdr[4:]
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_bad_frames_are_clear_errors_naming_the_file(tmp_path, data_root):
    with pytest.raises(ValueError, match=r"huge.png"):
        to_bgr(_huge_png(tmp_path / "huge.png"))
    with pytest.raises(ValueError, match="is a directory"):
        to_bgr(tmp_path)
    portrait = (data_root / "faces" / "test_images" / "paul_rudd" / "1.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(portrait[:5000])
    with pytest.raises(ValueError, match="truncated JPEG"):
        to_bgr(tmp_path / "cut.jpg")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises((ValueError, FileNotFoundError), match="gave no frame|cannot open"):
        list(Recognizer(detector=None).stream(str(tmp_path / "notes.txt")))


def test_explicit_settings_that_cannot_be_honoured_are_errors(monkeypatch, tmp_path, exported, yunet_path):
    from fer_edge.faces import FaceDetector

    monkeypatch.setenv("FER_EDGE_YUNET", str(tmp_path / "nowhere.onnx"))
    with pytest.raises(FileNotFoundError, match="FER_EDGE_YUNET=.*nowhere.onnx"):
        FaceDetector()
    monkeypatch.delenv("FER_EDGE_YUNET")
    out, _, _ = exported
    with pytest.raises(ValueError, match="not a YuNet face-detection model"):
        FaceDetector(out / "m.fp32.onnx")  # a valid ONNX, but an expression classifier
    for kw, match in (({"score_threshold": -1}, "score_threshold"), ({"nms_threshold": float("nan")}, "nms_threshold"),
                      ({"max_side": 0}, "max_side"), ({"min_side": 700}, "min_side")):
        with pytest.raises(ValueError, match=match):
            FaceDetector(yunet_path, **kw)


def test_recognizer_and_backend_arguments_are_checked_at_construction(exported):
    out, _, _ = exported
    for bad in (-1, 0, "2", 1.5):
        with pytest.raises(ValueError, match="max_faces"):
            Recognizer(out / "m.fp32.onnx", max_faces=bad)
    with pytest.raises(ValueError, match="threads"):
        Recognizer(out / "m.fp32.onnx", threads=-1)
    assert Recognizer(backend="onnxruntime").model.path.name == "default.onnx"  # the shipped file ORT reads
    with pytest.raises(FileNotFoundError, match="no TensorRT engine is shipped"):
        Recognizer(backend="tensorrt")
    with pytest.raises(BackendError, match="reads .engine or .plan files, not '.xml'"):
        Recognizer(out / "m.fp32.xml", backend="tensorrt")


def test_runtime_errors_keep_their_reason():
    exc = RuntimeError("Exception from src/inference/src/cpp/core.cpp:84:\nException from src/frontends/ir/src/ir_deserializer.cpp:12:\n"
                       "Incorrect weights in bin file!\n")
    assert cause(exc) == "Incorrect weights in bin file!"


def test_export_arguments_are_checked_before_any_work(tmp_path):
    from fer_edge.export import export

    with pytest.raises(ValueError, match="val_limit"):
        export(tmp_path / "none.pt", ["onnx:fp32"], tmp_path, val_limit=-5)
    (tmp_path / "afile").write_text("")
    with pytest.raises(ValueError, match="a file, not a folder"):
        export(tmp_path / "none.pt", ["onnx:fp32"], tmp_path / "afile")
