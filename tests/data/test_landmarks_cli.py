import numpy as np
import pytest

from fer_edge.cli import main
from fer_edge.data import landmarks
from fer_edge.data.folder import ckplus


def test_landmark_cache_on_ckplus_reports_its_detection_rate(detector, tmp_path):
    ds = ckplus()
    cache = landmarks.build(ds, detector, progress=False)
    assert cache.landmarks.shape == (981, 5, 2)
    assert cache.detection_rate > 0.9
    assert f"{int(cache.detected.sum())}/981 faces detected" in cache.summary()
    path = landmarks.save(cache, tmp_path / "lm.npz")
    loaded = landmarks.load(path)
    np.testing.assert_array_equal(loaded.landmarks, cache.landmarks)
    assert loaded.meta["detector_sha256"] == cache.meta["detector_sha256"] and loaded.meta["count"] == 981
    assert landmarks.attach(ds, loaded) == 981
    item = ds[0]
    assert item["landmarks"].shape == (5, 2) and item["landmarks_detected"] in (True, False)
    # 48x48 crops: eyes in the upper half, mouth in the lower half
    lm = loaded.landmarks[loaded.detected]
    assert (lm[:, :2, 1].mean() < 24) and (lm[:, 3:, 1].mean() > 24)


def test_failed_detection_falls_back_to_the_template(detector, tmp_path):
    import cv2

    from fer_edge.data.folder import ImageFolder

    (tmp_path / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "happy" / "flat.png"), np.full((48, 48), 100, np.uint8))
    cache = landmarks.build(ImageFolder(tmp_path), detector, progress=False)
    assert not cache.detected[0] and cache.detection_rate == 0.0
    np.testing.assert_allclose(cache.landmarks[0], landmarks.fallback_landmarks(48, 48))


def test_corrupt_cache_file_is_rejected(tmp_path):
    bad = tmp_path / "lm.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a fer_edge landmark cache"):
        landmarks.load(bad)


def test_cli_data_stats_prints_counts_and_writes_a_png(data_root, tmp_path, capsys):
    out = tmp_path / "ferplus.png"
    assert main(["data", "stats", "ferplus", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "25045" in text and "3191" in text and "3137" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_data_landmarks(data_root, yunet_path, tmp_path, capsys):
    out = tmp_path / "ck.npz"
    assert main(["data", "landmarks", "ckplus", "--out", str(out), "--yunet", str(yunet_path)]) == 0
    assert "faces detected" in capsys.readouterr().out
    assert landmarks.load(out).landmarks.shape == (981, 5, 2)


def test_cli_errors_are_messages_not_tracebacks(capsys):
    assert main(["data", "stats", "imagenet"]) == 2
    assert "unknown dataset" in capsys.readouterr().err
