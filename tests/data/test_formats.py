"""Formats that are not in ../shared/data, on small files written here in exactly their layout,
plus image folders (CK+48) and the corrupt-file rule."""
import csv

import cv2
import numpy as np
import pytest

from fer_edge.data import open_dataset
from fer_edge.data.affectnet import AffectNet, five_from_68
from fer_edge.data.base import CorruptImageError
from fer_edge.data.fer2013 import FER2013
from fer_edge.data.folder import ImageFolder, ckplus
from fer_edge.data.labels import CLASSES, canonical, class_index, remap, view
from fer_edge.data.rafdb import RAFDB

CK_COUNTS = {"anger": 135, "contempt": 54, "disgust": 177, "fear": 75, "happiness": 207, "sadness": 84, "surprise": 249}


def test_label_space_and_name_maps():
    assert CLASSES == ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    assert view(7) == CLASSES[:7]
    assert canonical("Happy") == "happiness" and canonical("ANGRY") == "anger"
    assert class_index("contempt", 8) == 7
    with pytest.raises(ValueError, match="not in the 7-class view"):
        class_index("contempt", 7)
    with pytest.raises(ValueError, match="unknown expression class name 'smile'"):
        canonical("smile")
    assert remap([7, 1], CLASSES, view(7)).tolist() == [-1, 1]


def test_ckplus_counts(data_root):
    ds = ckplus()
    assert len(ds) == 981
    assert {k: v for k, v in ds.class_counts().items() if v} == CK_COUNTS
    seven = ckplus(num_classes=7)
    assert len(seven) == 981 - 54
    item = ds[0]
    assert item["image"].shape == (48, 48) and item["image"].dtype == np.uint8


def _png(path, value=128, size=(48, 48), color=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full(size + ((3,) if color else ()), value, np.uint8)
    img[10:20, 10:30] = 255 - value
    cv2.imwrite(str(path), img)


def test_corrupt_files_are_skipped_counted_and_reported(tmp_path):
    for i in range(3):
        _png(tmp_path / "happy" / f"ok{i}.png", 50 * i)
    (tmp_path / "happy" / "empty.png").write_bytes(b"")
    (tmp_path / "sad").mkdir()
    good = (tmp_path / "happy" / "ok0.png").read_bytes()
    (tmp_path / "sad" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "sad" / "text.jpg").write_text("not an image")
    ds = ImageFolder(tmp_path)
    assert len(ds) == 6
    with pytest.raises(CorruptImageError, match="empty file"):
        ds.item([s.name for s in ds.samples].index("happy/empty.png"))
    with pytest.warns(RuntimeWarning, match="skipping unreadable image"):
        items = [ds[i] for i in range(len(ds))]  # an epoch completes
    assert all(it["image"].shape == (48, 48) for it in items)
    assert set(ds.skipped) == {"happy/empty.png", "sad/truncated.png", "sad/text.jpg"}
    report = ds.verify()
    assert report == {"kept": 3, "unreadable": 3, "errors": report["errors"]} and len(ds) == 3
    assert "dropped (unreadable image): 3" in ds.report()


def test_unknown_class_folder(tmp_path):
    _png(tmp_path / "happy" / "a.png")
    _png(tmp_path / "smiling" / "b.png")
    with pytest.raises(ValueError, match="smiling"):
        ImageFolder(tmp_path)
    ds = ImageFolder(tmp_path, ignore_unknown=True)
    assert len(ds) == 1 and sum(ds.dropped.values()) == 1


def _fer2013_csv(path):
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for i, (emotion, usage) in enumerate([(3, "Training"), (0, "Training"), (6, "PublicTest"), (5, "PrivateTest"), (1, "Training")]):
            w.writerow([emotion, " ".join(map(str, rng.integers(0, 256, 48 * 48))), usage])
        w.writerow([2, "1 2 3", "Training"])  # malformed pixels


def test_fer2013_csv(tmp_path):
    _fer2013_csv(tmp_path / "fer2013.csv")
    train = FER2013(tmp_path / "fer2013.csv", "train")
    assert [CLASSES[l] for l in train.labels] == ["happiness", "anger", "disgust"]
    assert train.dropped["malformed pixels"] == 1
    assert train[0]["image"].shape == (48, 48)
    assert FER2013(tmp_path / "fer2013.csv", "train", color="rgb")[0]["image"].shape == (48, 48, 3)
    assert [CLASSES[l] for l in FER2013(tmp_path / "fer2013.csv", "test").labels] == ["surprise"]
    (tmp_path / "bad.csv").write_text("label,pix\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        FER2013(tmp_path / "bad.csv")


def test_fer2013_with_ferplus_labels_joins_by_row(tmp_path):
    _fer2013_csv(tmp_path / "fer2013.csv")
    with open(tmp_path / "fer2013new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"])
        w.writerow(["Training", "fer0000000.png", 0, 9, 0, 0, 0, 0, 0, 0, 1, 0])
        w.writerow(["Training", "", 0, 0, 0, 0, 0, 0, 0, 0, 0, 10])      # no name: not a face
        w.writerow(["PublicTest", "fer0000002.png", 10, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        w.writerow(["PrivateTest", "fer0000003.png", 0, 0, 8, 0, 0, 0, 0, 0, 2, 0])
        w.writerow(["Training", "fer0000004.png", 2, 0, 0, 0, 0, 0, 0, 8, 0, 0])
        w.writerow(["Training", "fer0000005.png", 10, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    ds = FER2013(tmp_path / "fer2013.csv", "train", ferplus_csv=tmp_path / "fer2013new.csv")
    assert [CLASSES[l] for l in ds.labels] == ["happiness", "contempt"]
    assert ds.dropped["no FERPlus label"] == 1 and ds.dropped["malformed pixels"] == 1


def test_rafdb_layout(tmp_path):
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text(
        "train_00001.jpg 5\ntrain_00002.jpg 4\ntest_0001.jpg 7\ntrain_00003.jpg 6\n")
    for stem in ("train_00001", "train_00002", "train_00003", "test_0001"):
        _png(tmp_path / "Image" / "aligned" / f"{stem}_aligned.jpg", size=(100, 100), color=True)
        _png(tmp_path / "Image" / "original" / f"{stem}.jpg", size=(200, 160), color=True)
    (tmp_path / "Annotation" / "manual").mkdir(parents=True)
    (tmp_path / "Annotation" / "manual" / "train_00001_manu_attri.txt").write_text(
        "60.1 80.2\n100.3 81.0\n80.0 110.5\n65.2 140.0\n98.7 139.1\n0\n0\n2\n")
    ds = RAFDB(tmp_path, "train")
    assert [CLASSES[l] for l in ds.labels] == ["sadness", "happiness", "anger"]
    assert ds[0]["image"].shape == (100, 100, 3)
    orig = RAFDB(tmp_path, "train", aligned=False)
    np.testing.assert_allclose(orig[0]["landmarks"][0], [60.1, 80.2], rtol=1e-6)
    assert orig.dropped["no manual landmarks"] == 2
    assert len(RAFDB(tmp_path, "test")) == 1
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 9\n")
    with pytest.raises(ValueError, match="expected '<image> <1-7>'"):
        RAFDB(tmp_path, "train")


def test_affectnet_manual_csv(tmp_path):
    pts = np.round(np.stack([np.linspace(20, 80, 68), np.linspace(30, 90, 68)], 1), 1)  # as written below
    lm = ";".join(f"{v:.1f}" for v in pts.ravel())
    with open(tmp_path / "training.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                    "expression", "valence", "arousal"])
        w.writerow(["689/a.jpg", 10, 20, 100, 100, lm, 1, 0.5, 0.2])
        w.writerow(["689/b.jpg", 0, 0, 50, 50, lm, 9, 0.0, 0.0])    # uncertain: dropped
        w.writerow(["689/c.jpg", 0, 0, 50, 50, "", 7, -0.3, 0.1])
    _png(tmp_path / "Manually_Annotated_Images" / "689" / "a.jpg", size=(160, 140), color=True)
    _png(tmp_path / "Manually_Annotated_Images" / "689" / "c.jpg", size=(60, 60), color=True)
    ds = AffectNet(tmp_path, "train")
    assert [CLASSES[l] for l in ds.labels] == ["happiness", "contempt"]
    assert sum(ds.dropped.values()) == 1
    item = ds[0]
    assert item["image"].shape == (100, 100, 3) and item["valence"] == 0.5
    np.testing.assert_allclose(item["landmarks"], five_from_68(pts) - [10, 20], atol=1e-4)  # in crop pixels
    assert len(AffectNet(tmp_path, "train", num_classes=7)) == 1


def test_open_dataset_specs(data_root, tmp_path):
    assert len(open_dataset("ferplus", "test")) == 3137
    assert len(open_dataset("ckplus")) == 981
    with pytest.raises(ValueError, match="unknown dataset"):
        open_dataset("imagenet")
    with pytest.raises(ValueError, match="needs a path"):
        open_dataset("rafdb")
    with pytest.raises(ValueError, match="splits"):
        open_dataset("ferplus", "all")
