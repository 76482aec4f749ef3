"""Issue 14: what a user meets first: a faster pipeline (min_face, detection every N frames),
results that draw and save themselves, a CLI that says which face is which, `fer-edge benchmark`."""
import json
import os

import cv2
import numpy as np
import pytest

from fer_edge.runtime import Recognizer


@pytest.fixture(scope="module")
def group(data_root):
    return cv2.imread(str(data_root / "faces" / "multiface.jpg"))


@pytest.fixture(scope="module")
def rec(exported, yunet_path):
    out, _, _ = exported
    return Recognizer(out / "m.fp32.onnx", detector=yunet_path)


def test_min_face_sets_the_working_resolution(yunet_path):
    from fer_edge.faces import FaceDetector

    now, before = FaceDetector(yunet_path), FaceDetector(yunet_path, min_face=None)
    assert now.min_face == 40
    # (h, w) -> (with min_face 40, full resolution): camera frames shrink, crops and photos as before
    cases = {(480, 640): (0.5, 1.0), (48, 48): (160 / 48, 160 / 48), (1638, 2048): (0.3125, 0.3125),
             (300, 2048): (0.3125, 0.3125), (240, 320): (160 / 240, 1.0), (150, 200): (160 / 150, 160 / 150)}
    for hw, (a, b) in cases.items():
        assert now.working_scale(*hw) == pytest.approx(a) and before.working_scale(*hw) == pytest.approx(b), hw
    assert FaceDetector(yunet_path, min_face=80).working_scale(480, 640) == pytest.approx(1 / 3)  # floor: 160 px
    with pytest.raises(ValueError, match="min_face"):
        FaceDetector(yunet_path, min_face=0)


def test_camera_frames_at_reduced_resolution_keep_every_face(rec, group):
    frame = cv2.resize(group, (640, 480), interpolation=cv2.INTER_AREA)  # faces ~50 px wide
    fast = rec.predict(frame)
    full = Recognizer(rec.model.path, detector=rec.detector.model_path, min_face=None).predict(frame)
    assert len(fast) == len(full) == 6
    from fer_edge.runtime.video import iou

    for a in fast:  # the same faces: each box overlaps a full-resolution one (IoU > 0.7)
        assert max(iou(a.box, b.box) for b in full) > 0.7


def test_detect_every_n_frames_follows_faces_and_redetects_when_lost(rec, group):
    from fer_edge.runtime.video import iou

    frames = [np.roll(group, 2 * k, axis=1) for k in range(7)] + [np.zeros_like(group)] + [group] * 3
    every = list(rec.stream(frames, detect_every=1))
    flow = list(rec.stream(frames, detect_every=3))
    assert [len(r) for _, r in every] == [6] * 7 + [0, 6, 6, 6]
    # frames 0, 3, 6 detect, the flow carries the faces between; on the blank frame 7 the flow
    # loses them, so it detects at once (no face); the next detection is frame 10
    assert [len(r) for _, r in flow] == [6] * 7 + [0, 0, 0, 6]
    for (_, a), (_, b) in zip(every[:7], flow[:7]):  # followed boxes stay on the detected faces
        for fa in a:
            assert max(iou(fa.box, fb.box) for fb in b) > 0.7
        assert sorted(f.track for f in b) == list(range(6))
    with pytest.raises(ValueError, match="detect_every"):
        list(rec.stream(frames, detect_every=0))


def test_results_plot_save_and_repr(rec, group, tmp_path):
    import fer_edge

    res = rec.predict(group)
    assert isinstance(res, fer_edge.FrameResults) and isinstance(res, list) and len(res) == 6
    drawn = res.plot()
    assert drawn.shape == group.shape and not np.array_equal(drawn, group)
    assert cv2.imread(str(res.save(tmp_path / "sub" / "out.png"))).shape == group.shape
    assert res.to_list()[0]["label"] == res[0].label and res[0].track is None
    # readable at any size: a 48 px crop and a 4K frame both draw (text kept inside the image)
    tiny = fer_edge.draw(cv2.resize(group, (48, 48)), res[:1])
    assert tiny.shape == (48, 48, 3)
    big = cv2.resize(group, (3840, 2016))
    assert fer_edge.draw(big, rec.predict(big)).shape == big.shape
    text = repr(rec)
    assert "m.fp32.onnx" in text and "backend='onnxruntime'" in text and "precision='fp32'" in text
    with pytest.raises(ValueError, match="no frame"):
        fer_edge.FrameResults([]).plot()


def test_default_model_form_is_chosen_and_stated(yunet_path):
    pytest.importorskip("openvino")
    assert Recognizer(precision="fp32", detector=yunet_path).model.path.name == "default.onnx"
    auto = Recognizer(detector=yunet_path)
    assert auto.model.path.name == "default.int8.xml" and "precision='int8'" in repr(auto)
    with pytest.raises(ValueError, match="precision"):
        Recognizer(precision="fp16")
    with pytest.raises(ValueError, match="default model"):
        Recognizer("default.onnx", precision="int8")


def test_cli_version_camera_show_and_video_summary(rec, group, yunet_path, tmp_path, capsys, monkeypatch):
    from fer_edge import __version__
    from fer_edge.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"fer-edge {__version__}"
    model = str(rec.model.path)
    assert main(["predict", "7", "--model", model, "--yunet", str(yunet_path)]) == 2  # a camera index; none here
    assert "cannot open video source 7" in capsys.readouterr().err
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    img = tmp_path / "g.png"
    cv2.imwrite(str(img), group)
    assert main(["predict", str(img), "--model", model, "--yunet", str(yunet_path), "--show"]) == 2
    assert "--show needs a display" in capsys.readouterr().err
    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, group.shape[1::-1])
    for k in range(4):
        w.write(np.roll(group, 2 * k, axis=1))
    w.release()
    assert main(["predict", str(video), "--model", model, "--yunet", str(yunet_path), "--detect-every", "2",
                 "--save", str(tmp_path / "v_fer.mp4")]) == 0
    out = capsys.readouterr().out
    assert "4 frames" in out and "24 faces, 6 tracks" in out and "track 0: 4 frames" in out
    assert (tmp_path / "v_fer.mp4").stat().st_size > 0
    assert main(["predict", str(video), "--model", model, "--yunet", str(yunet_path), "--json"]) == 0
    frames = json.loads(capsys.readouterr().out)
    assert [f["frame"] for f in frames] == [0, 1, 2, 3] and frames[0]["faces"][0]["track"] in range(6)


def test_every_subcommand_has_examples_and_every_option_help():
    import argparse

    from fer_edge import cli

    root = cli.build_parser(["--help"])
    subs = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in subs.choices.items():
        assert p.epilog and "examples:" in p.epilog, name
        for action in p._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_benchmark_measures_every_form_side_by_side(exported, yunet_path, tmp_path, capsys):
    from fer_edge.cli import main

    out, _, _ = exported
    models = [str(out / "m.fp32.onnx"), str(out / "m.int8.onnx")]
    assert main(["benchmark", *models, "--limit", "60", "--repeats", "4", "--yunet", str(yunet_path),
                 "--out", str(tmp_path), "--no-detection-rates"]) == 0
    text = capsys.readouterr().out
    assert "m.fp32.onnx" in text and "m.int8.onnx" in text and "pipeline before min_face" in text
    report = json.loads(next(tmp_path.glob("benchmark-*.json")).read_text())
    rows = report["models"]
    assert rows["m.fp32.onnx"]["agreement"] == 1.0 and rows["m.int8.onnx"]["agreement_with"] == "m.fp32.onnx"
    for r in rows.values():
        assert 0 <= r["accuracy"] <= 1 and r["size_mb"] > 0
        assert set(r["pipeline"]) >= {"detect", "align", "infer", "post", "total", "total_batch4", "per_frame_batch4"}
        assert r["classifier_per_face_batch1"]["p50_ms"] > 0 and r["classifier_per_face_batch8"]["p99_ms"] > 0
    assert report["anchors"]["speedup_vs_before"] > 0 and set(report["anchors"]["stream"]) == {"detect_every_1",
                                                                                               "detect_every_3"}
    assert report["machine"]["cores"] == os.cpu_count() and "onnxruntime" in report["machine"]["versions"]
    assert next(tmp_path.glob("benchmark-*.png")).stat().st_size > 0


def test_training_draws_curves_beside_its_metrics(trained):
    assert (trained.parent / "curves.png").stat().st_size > 0


def test_landmark_cache_has_one_location(data_root, yunet_path, tmp_path, monkeypatch):
    from fer_edge.cli import main
    from fer_edge.data import landmarks

    monkeypatch.setenv("FER_EDGE_CACHE", str(tmp_path))
    assert main(["data", "landmarks", "ckplus", "--yunet", str(yunet_path)]) == 0
    assert landmarks.cache_file("ckplus") == tmp_path / "landmarks" / "ckplus.npz"
    assert landmarks.load(landmarks.cache_file("ckplus")).landmarks.shape == (981, 5, 2)  # where training reads


def test_export_prints_our_lines_not_the_tools(trained, tmp_path, capfd):
    from fer_edge.export import export

    export(trained, ["onnx:fp32", "onnx:int8"], tmp_path, name="q", calibration_size=8, val_limit=16, verbose=True)
    out, err = capfd.readouterr()
    assert "torchvision" not in err and "Collecting tensor data" not in out and "histogram" not in out
    assert out.count("onnx") >= 2  # our two rows
