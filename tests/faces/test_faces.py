import cv2
import numpy as np
import pytest

from fer_edge.faces import FaceDetector, align, invert, resolve_yunet, similarity, template, transform_points
from fer_edge.faces.detector import YUNET_SHA256

PORTRAITS = ["angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham"]


def test_shared_weights_are_the_official_release(yunet_path):
    import hashlib

    assert hashlib.sha256(yunet_path.read_bytes()).hexdigest() == YUNET_SHA256


def test_finds_every_face_in_the_group_photo(detector, data_root):
    img = cv2.imread(str(data_root / "faces" / "multiface.jpg"))
    faces = detector.detect(img)
    assert len(faces) == 6
    assert all(f.score > 0.8 for f in faces)
    boxes = np.array([f.box for f in faces])
    assert (boxes[:, 2] > 20).all() and (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= img.shape[1] + 2).all()
    for f in faces:  # landmarks inside their box, eyes above the mouth, left eye left of right eye
        x, y, w, h = f.box
        assert ((f.landmarks >= [x - 2, y - 2]) & (f.landmarks <= [x + w + 2, y + h + 2])).all()
        assert f.landmarks[0, 0] < f.landmarks[1, 0] and f.landmarks[:2, 1].max() < f.landmarks[3:, 1].min()


@pytest.mark.parametrize("name", PORTRAITS)
def test_one_face_per_portrait(detector, data_root, name):
    img = cv2.imread(str(data_root / "faces" / "test_images" / name / "1.jpg"))
    faces = detector.detect(img)
    assert len(faces) == 1 and faces[0].score > 0.8


@pytest.mark.parametrize("name", PORTRAITS)
def test_aligned_real_faces_put_the_eyes_on_the_template(detector, data_root, name):
    # A similarity cannot remove a face's own shape: nose and mouth keep a few pixels of
    # residual at 112 px, while the eyes, which fix scale and rotation, land on the template.
    img = cv2.imread(str(data_root / "faces" / "test_images" / name / "1.jpg"))
    f = detector.detect(img)[0]
    crop, m = align(img, f.landmarks, 112)
    assert crop.shape == (112, 112, 3)
    moved = transform_points(f.landmarks, m)
    eye_centre = np.linalg.norm(moved[:2].mean(0) - template(112)[:2].mean(0))
    assert eye_centre < 2.0
    assert np.linalg.norm(moved - template(112), axis=1).mean() < 4.0
    # the inverse maps the template back onto the detected landmarks' fit
    np.testing.assert_allclose(transform_points(moved, invert(m)), f.landmarks, atol=1e-2)


@pytest.mark.parametrize("size", [64, 112, 224])
def test_alignment_recovers_an_exact_similarity(size):
    rng = np.random.default_rng(size)
    angle, scale, shift = rng.uniform(-0.5, 0.5), rng.uniform(0.5, 3), rng.uniform(-50, 50, 2)
    r = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = template(112) @ r.T + shift + 300
    img = np.zeros((800, 800, 3), np.uint8)
    crop, m = align(img, src, size)
    assert crop.shape == (size, size, 3)
    assert np.abs(transform_points(src, m) - template(size)).max() < 0.01


def test_alignment_bad_landmarks():
    with pytest.raises(ValueError, match=r"expected 5 landmarks of shape \(5, 2\), got \(4, 2\)"):
        similarity(np.zeros((4, 2)), template())
    with pytest.raises(ValueError, match="NaN"):
        similarity(np.full((5, 2), np.nan), template())
    with pytest.raises(ValueError, match="degenerate"):
        similarity(np.ones((5, 2)), template())


def test_small_crops_are_upscaled_for_detection(detector, data_root):
    from fer_edge.data.folder import ckplus

    ds = ckplus()
    found = sum(bool(detector.detect(ds.image(i))) for i in range(0, len(ds), 40))
    assert found >= 0.9 * len(range(0, len(ds), 40))


def test_no_face_gives_an_empty_list_and_bad_frames_give_clear_errors(detector):
    assert detector.detect(np.full((480, 640, 3), 90, np.uint8)) == []
    assert detector.detect(np.zeros((480, 640, 4), np.uint8)) == []  # BGRA accepted
    assert detector.detect(np.zeros((100, 100), np.uint8)) == []     # gray accepted
    with pytest.raises(TypeError, match="uint8"):
        detector.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        detector.detect(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        detector.detect(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        detector.detect(None)


def test_model_resolution_order_and_clear_error(tmp_path, monkeypatch, yunet_path):
    monkeypatch.setenv("FER_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FER_EDGE_DATA", str(tmp_path / "nodata"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FER_EDGE_YUNET", raising=False)
    import fer_edge.paths as paths

    monkeypatch.setattr(paths, "__file__", str(tmp_path / "a" / "b" / "c" / "paths.py"))
    with pytest.raises(FileNotFoundError, match="FER_EDGE_YUNET.*sha256|sha256.*FER_EDGE_YUNET"):
        resolve_yunet()
    monkeypatch.setenv("FER_EDGE_YUNET", str(yunet_path))
    assert resolve_yunet() == yunet_path
    (tmp_path / "cache").mkdir()
    cached = tmp_path / "cache" / "face_detection_yunet_2023mar.onnx"
    cached.write_bytes(yunet_path.read_bytes())
    monkeypatch.delenv("FER_EDGE_YUNET")
    assert resolve_yunet() == cached
    assert resolve_yunet(yunet_path) == yunet_path  # an argument wins
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_yunet(tmp_path / "missing.onnx")


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "yunet.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ValueError, match="not a YuNet face-detection model"):
        FaceDetector(bad)


def test_detector_is_thread_safe(detector, data_root):
    from concurrent.futures import ThreadPoolExecutor

    img = cv2.imread(str(data_root / "faces" / "multiface.jpg"))
    serial = [len(detector.detect(img)) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda _: len(detector.detect(img)), range(8)))
    assert serial == [6] * 4 and parallel == [6] * 8


def test_fetch_checks_the_sha256_and_never_leaves_a_bad_file(tmp_path, yunet_path):
    from fer_edge.faces.detector import fetch_yunet

    got = fetch_yunet(tmp_path / "cache" / "yunet.onnx", url=yunet_path.as_uri())
    assert got.read_bytes() == yunet_path.read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not the model")
    with pytest.raises(ValueError, match="expected 8f2383e4"):
        fetch_yunet(tmp_path / "cache2" / "yunet.onnx", url=bad.as_uri())
    assert not (tmp_path / "cache2" / "yunet.onnx").exists() and not (tmp_path / "cache2" / "yunet.onnx.part").exists()


def test_crops_from_a_camera_video_and_folder_become_an_unlabelled_target(detector, data_root, tmp_path, capsys):
    from fer_edge.cli import main
    from fer_edge.data import open_dataset
    from fer_edge.faces.crops import crop_faces

    group = cv2.imread(str(data_root / "faces" / "multiface.jpg"))
    video = tmp_path / "camera.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, group.shape[1::-1])
    for _ in range(3):
        w.write(group)
    w.release()
    stats = crop_faces(video, tmp_path / "crops", size=96, every=2, detector=detector)
    assert stats == {"frames": 2, "faces": 12, "out": str(tmp_path / "crops")}  # frames 0 and 2, 6 faces each
    crop = cv2.imread(str(sorted((tmp_path / "crops").glob("*.png"))[0]))
    assert crop.shape == (96, 96, 3)
    found = detector.detect(crop)  # the crop is framed like FERPlus: its eyes sit on the fer2013 template
    assert len(found) == 1 and np.abs(found[0].landmarks[:2] - template(96, "fer2013")[:2]).max() < 6
    shots = tmp_path / "shots"
    shots.mkdir()
    cv2.imwrite(str(shots / "a.jpg"), group)
    (shots / "broken.jpg").write_bytes(b"not a jpeg")  # skipped, not fatal
    assert main(["data", "crop", str(shots), "--out", str(tmp_path / "crops"), "--yunet", str(detector.model_path)]) == 0
    assert "6 faces from 1 frames" in capsys.readouterr().out
    assert len(open_dataset(f"unlabelled:{tmp_path / 'crops'}")) == 18
    with pytest.raises(FileNotFoundError):
        crop_faces(tmp_path / "missing", tmp_path / "x", detector=detector)
    with pytest.raises(ValueError, match="every"):
        crop_faces(video, tmp_path / "x", every=0, detector=detector)
    with pytest.raises(ValueError, match="no readable images"):
        crop_faces(shots / "broken.jpg", tmp_path / "x", detector=detector)
