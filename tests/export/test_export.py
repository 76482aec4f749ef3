import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
os.environ.setdefault("FER_EDGE_PROGRESS", "0")

from fer_edge import metadata as md  # noqa: E402
from fer_edge.export import export, get_format  # noqa: E402
from fer_edge.runtime.backends import BackendError, open_backend  # noqa: E402
from fer_edge.runtime.backends.tensorrt import read_engine_file, write_engine_file  # noqa: E402


def test_every_format_that_runs_here_round_trips(exported):
    out, rows, report = exported
    for key in [("onnx", "fp32"), ("openvino", "fp32")]:
        assert rows[key]["max_abs_diff"] < 1e-3 and rows[key]["agreement_with_torch"] == 1.0, rows[key]
    assert rows[("openvino", "fp16")]["agreement_with_torch"] > 0.97
    for key in [("onnx", "int8"), ("openvino", "int8")]:
        assert rows[key]["agreement_with_torch"] > 0.8, rows[key]
        assert rows[key]["size_mb"] < rows[(key[0], "fp32")]["size_mb"] / 2
    assert report["torch_accuracy"] == pytest.approx(rows[("onnx", "fp32")]["accuracy"])
    assert (out / "m.export.json").is_file()


def test_tensorrt_build_is_the_only_skipped_step(exported):
    _, rows, _ = exported
    from fer_edge.export.tensorrt_export import tensorrt_available

    if tensorrt_available():
        assert "skipped" not in rows[("tensorrt", "fp16")]
    else:
        assert "not both installed" in rows[("tensorrt", "fp16")]["skipped"]


def test_metadata_travels_and_describes_the_model(exported, trained):
    out, _, _ = exported
    with open_backend(out / "m.fp32.onnx") as b:
        meta = b.meta
        assert meta["classes"] == ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
        assert meta["input"] == [1, 48, 48] and meta["color"] == "gray" and meta["method"] == "baseline"
        assert meta["source_checkpoint_sha256"] == md.sha256_bytes(trained.read_bytes())
        assert "torch" in meta["exporters"] and "onnx" in meta["exporters"]
        _assert_source_commit(meta["exporters"])
        logits = b.infer(np.zeros((3, 1, 48, 48), np.uint8))
        assert logits.shape == (3, 8)
    with open_backend(out / "m.int8.xml") as b:
        assert b.meta["precision"] == "int8" and b.meta["format"] == "openvino"


def _assert_source_commit(exporters):
    """Run from a git checkout, the export names the commit that exported it (+dirty when fer_edge/
    has changes); installed from a wheel there is no checkout and no key."""
    import subprocess
    from pathlib import Path

    import fer_edge

    root = Path(fer_edge.__file__).resolve().parents[1]
    if not (root / ".git").exists():
        assert "fer_edge_commit" not in exporters
        return
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert exporters["fer_edge_commit"].split("+")[0] == head


def test_qdq_graph_holds_quantize_dequantize_pairs(exported):
    import onnx

    out, _, _ = exported
    g = onnx.load(str(out / "m.int8.onnx")).graph
    producers = {o: n for n in g.node for o in n.output}
    convs = [n for n in g.node if n.op_type == "Conv"]
    assert convs and sum(n.op_type == "QuantizeLinear" for n in g.node) > 0
    for conv in convs:  # both the activation and the weight reach each Conv through DequantizeLinear
        assert producers[conv.input[0]].op_type == "DequantizeLinear"
        assert producers[conv.input[1]].op_type == "DequantizeLinear"
        dq = producers[conv.input[0]]
        assert dq.input[0] in producers and producers[dq.input[0]].op_type == "QuantizeLinear"


def _rewrite_onnx(src, dst, fn):
    import onnx

    m = onnx.load(str(src))
    fn(m)
    onnx.save(m, str(dst))


def test_tampered_or_corrupt_onnx_is_rejected(exported, tmp_path):
    out, _, _ = exported
    src = out / "m.fp32.onnx"

    def relabel(m):
        meta = md.loads(m.metadata_props[0].value, "x")
        meta["classes"] = meta["classes"][::-1]
        m.metadata_props[0].value = md.dumps(meta)

    _rewrite_onnx(src, tmp_path / "relabelled.onnx", relabel)
    with pytest.raises(md.MetadataError, match="do not match their metadata"):
        open_backend(tmp_path / "relabelled.onnx")

    def new_weights(m):
        from onnx import numpy_helper

        init = max(m.graph.initializer, key=lambda t: np.prod(t.dims))
        arr = numpy_helper.to_array(init).copy()
        arr.flat[0] += 1.0
        init.CopyFrom(numpy_helper.from_array(arr, init.name))

    _rewrite_onnx(src, tmp_path / "weights.onnx", new_weights)
    with pytest.raises(md.MetadataError, match="modified or only partly replaced"):
        open_backend(tmp_path / "weights.onnx")
    _rewrite_onnx(src, tmp_path / "bare.onnx", lambda m: m.metadata_props.pop())
    with pytest.raises(md.MetadataError, match="without fer_edge metadata"):
        open_backend(tmp_path / "bare.onnx")

    def bad_json(m):
        m.metadata_props[0].value = "{not json"

    _rewrite_onnx(src, tmp_path / "json.onnx", bad_json)
    with pytest.raises(md.MetadataError, match="not valid JSON"):
        open_backend(tmp_path / "json.onnx")
    data = src.read_bytes()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(BackendError, match="could not load.*re-export it from its checkpoint"):
        open_backend(tmp_path / "trunc.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(BackendError, match="empty model file"):
        open_backend(tmp_path / "empty.onnx")
    with pytest.raises(BackendError, match="unknown model suffix"):
        open_backend(tmp_path / "model.tflite")


def test_tampered_openvino_weights_or_missing_bin_are_rejected(exported, tmp_path):
    import shutil

    out, _, _ = exported
    shutil.copy(out / "m.fp32.xml", tmp_path / "a.xml")
    bin_bytes = bytearray((out / "m.fp32.bin").read_bytes())
    bin_bytes[100] ^= 0xFF
    (tmp_path / "a.bin").write_bytes(bytes(bin_bytes))
    with pytest.raises(md.MetadataError, match="do not match"):
        open_backend(tmp_path / "a.xml")
    shutil.copy(out / "m.fp32.xml", tmp_path / "b.xml")
    with pytest.raises(BackendError, match="weights file b.bin is missing"):
        open_backend(tmp_path / "b.xml")


def test_interrupted_exports_never_leave_a_file_that_looks_valid(trained, tmp_path, monkeypatch):
    import fer_edge.export.onnx_export as ox
    import fer_edge.export.openvino_export as ovx

    first = export(trained, ["onnx:fp32", "openvino:fp32"], tmp_path, name="m", val_limit=32, verbose=False)
    assert all("skipped" not in r for r in first["artifacts"])
    real_replace = os.replace

    # ONNX: the temp file is written, then the process dies before the rename
    def die(*a, **k):
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(ox.os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        export(trained, ["onnx:fp32"], tmp_path, name="n", val_limit=32, verbose=False)
    assert not (tmp_path / "n.fp32.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".onnx" and p.name.startswith("n")]

    # OpenVINO over an existing export: dies after the new .bin is in place, before the .xml
    calls = {"n": 0}

    def die_second(a, b):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real_replace(a, b)

    monkeypatch.setattr(ox.os, "replace", real_replace)
    monkeypatch.setattr(ovx.os, "replace", die_second)
    with pytest.raises(KeyboardInterrupt):
        export(trained, ["openvino:fp16"], tmp_path, name="m", val_limit=32, verbose=False)
    assert not (tmp_path / "m.fp16.xml").exists()  # the .xml (what a loader opens) never appeared
    # (an old .xml left beside a new .bin is rejected by its digest: see the tampered-bin test)


def test_engine_file_header(tmp_path):
    meta = {"schema": md.SCHEMA, "format": "tensorrt", "precision": "fp16", "classes": ["a", "b"], "input": [1, 8, 8],
            "color": "gray", "mean": [0.5], "std": [0.25], "method": "baseline", "heads": [],
            "inputs": [{"name": "pixels", "shape": ["N", 1, 8, 8]}], "decision": {"rule": "argmax", "params": {}},
            "payload_sha256": md.sha256_bytes(b"PLAN")}
    write_engine_file(tmp_path / "e.engine", meta, b"PLAN")
    got, plan = read_engine_file(tmp_path / "e.engine")
    assert plan == b"PLAN" and got["classes"] == ["a", "b"]
    data = (tmp_path / "e.engine").read_bytes()
    (tmp_path / "t.engine").write_bytes(data[:-1] + b"X")
    with pytest.raises(md.MetadataError, match="do not match"):
        read_engine_file(tmp_path / "t.engine")
    (tmp_path / "raw.engine").write_bytes(b"\x00" * 64)
    with pytest.raises(md.MetadataError, match="not a fer_edge engine"):
        open_backend(tmp_path / "raw.engine")


def test_formats_table_and_clear_errors():
    assert get_format("openvino", "int8").suffix == ".xml"
    with pytest.raises(ValueError, match="unknown export format 'tflite'; valid formats: onnx, openvino, tensorrt"):
        get_format("tflite")
    with pytest.raises(ValueError, match="does not support precision 'fp16'; valid: fp32, int8"):
        get_format("onnx", "fp16")


def test_backend_input_validation(exported):
    out, _, _ = exported
    with open_backend(out / "m.fp32.onnx") as b:
        with pytest.raises(ValueError, match=r"expected shape \[N>=1, 1, 48, 48\], got \(2, 3, 48, 48\)"):
            b.infer(np.zeros((2, 3, 48, 48), np.float32))
        with pytest.raises(TypeError, match="float32"):
            b.infer(np.zeros((1, 1, 48, 48), np.float64))
        with pytest.raises(TypeError, match="numpy array"):
            b.infer([[0]])


def test_cli_export_list(capsys):
    from fer_edge.cli import main

    assert main(["export", "--list"]) == 0
    assert "tensorrt" in capsys.readouterr().out


def test_the_exported_graphs_pass_the_static_tensorrt_check(exported):
    """Every ONNX graph fer_edge exports (FP32 and the Q/DQ INT8 TensorRT builds from) uses only
    what TensorRT 10's ONNX parser takes (the AGLRLS graph and each method's: the contract test)."""
    from fer_edge.export.tensorrt_check import check

    out, _, report = exported
    assert report["tensorrt_check"] == {"fp32": [], "int8": []}
    assert check(out / "m.fp32.onnx") == [] and check(out / "m.int8.onnx") == []


def test_the_static_tensorrt_check_names_what_would_not_build():
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from fer_edge.export.tensorrt_check import check, table

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("MaxPool", ["x"], ["p", "pi"], name="pool", kernel_shape=[2, 2], dilations=[2, 2]),
             helper.make_node("QuantizeLinear", ["p", "s", "zp"], ["q"], name="quant"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"], name="dequant"),
             helper.make_node("ReduceMean", ["d", "axes_runtime"], ["m"], name="mean"),
             helper.make_node("Det", ["m"], ["det"], name="det"),
             helper.make_node("Gelu", ["det"], ["y"], name="mine", domain="com.example")]
    inits = [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(3), "zp")]
    axes = helper.make_tensor_value_info("axes_runtime", TensorProto.INT64, [1])
    model = helper.make_model(helper.make_graph(nodes, "bad", [x, axes], [y], inits),
                              opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    found = {(f.node, f.problem.split(" ")[0]) for f in check(model)}
    assert ("pool", "dilations") in found and ("pool", "the") in found  # dilation, Indices output
    assert ("quant", "the") in found and ("dequant", "the") in found    # non-zero zero points
    assert ("mean", "axes") in found and ("det", "not") in found and ("mine", "custom") in found
    assert table()["opset"] == [9, 20] and "onnx-tensorrt" in table()["source"]


def test_an_fp32_artifact_that_computes_another_function_fails_its_verification(exported):
    from fer_edge.export.verify import compare

    out, _, _ = exported
    with open_backend(out / "m.fp32.onnx") as b:
        images = np.random.default_rng(0).random((16, *b.meta["inputs"][0]["shape"][1:]), dtype=np.float32)
        logits = b.infer(images)
    labels = logits.argmax(1)
    assert compare(out / "m.fp32.onnx", "fp32", logits, labels, images)["agreement_with_torch"] == 1.0
    skewed = logits.copy()
    skewed[:, 0] += 0.5 * max(1.0, float(np.abs(logits).max()))  # what a wrong fusion did to the PLL ViT's logits
    with pytest.raises(ValueError, match="does not compute what the PyTorch model does"):
        compare(out / "m.fp32.onnx", "fp32", skewed, labels, images)
    # lower precisions are judged by their agreement in the report, not failed on a difference
    assert compare(out / "m.fp32.onnx", "fp16", skewed, labels, images)["max_abs_diff"] > 0


def test_a_file_that_fails_verification_never_replaces_a_good_one(trained, tmp_path, monkeypatch):
    from fer_edge.export import verify

    out = tmp_path / "exports"
    export(trained, ["onnx:fp32"], out, name="m", val_limit=32, threads=1, verbose=False)
    good = (out / "m.fp32.onnx").read_bytes()
    monkeypatch.setattr(verify, "FP32_TOLERANCE", -1.0)  # every FP32 artifact now "computes another function"
    for target, files in [("onnx:fp32", ["m.fp32.onnx"]), ("openvino:fp32", ["m.fp32.xml", "m.fp32.bin"])]:
        with pytest.raises(ValueError, match="does not compute what the PyTorch model does.*failed file is kept"):
            export(trained, [target], out, name="m", val_limit=32, threads=1, verbose=False)
        for f in files:
            assert (out / "failed" / f).is_file()  # kept together for a bug report (an IR's .xml and .bin)
    assert (out / "m.fp32.onnx").read_bytes() == good  # the earlier good export is untouched
    assert not (out / "m.fp32.xml").exists() and not (out / "m.fp32.bin").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-")]
