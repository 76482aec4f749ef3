"""Augmentations without torchvision: numpy + OpenCV, deterministic under a numpy Generator.

Every op takes an item dict (uint8 `image` [H, W] or [H, W, 3], optional `landmarks` [5, 2])
and a `np.random.Generator`, and returns a new dict; geometric ops move the landmarks with the
pixels, and a horizontal flip also swaps left and right points so that index 0 stays the
image-left eye.

    weak   = flip + box jitter                                   (FixMatch/AGLRLS weak view)
    strong = weak + RandAugment (n random ops, random magnitude) + cutout   (strong view)
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

FLIP_ORDER = [1, 0, 2, 4, 3]  # left/right eye and mouth corners trade places


def _with(item: dict, image: np.ndarray, m: np.ndarray | None = None) -> dict:
    out = dict(item)
    out["image"] = image
    if m is not None and item.get("landmarks") is not None:
        lm = np.asarray(item["landmarks"], np.float32)
        out["landmarks"] = (lm @ m[:, :2].T + m[:, 2]).astype(np.float32)
    return out


def _warp(item: dict, m: np.ndarray, fill: int = 0) -> dict:
    img = item["image"]
    h, w = img.shape[:2]
    warped = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=(fill, fill, fill))
    return _with(item, warped, m)


def hflip(item: dict, rng: np.random.Generator | None = None) -> dict:
    img = item["image"]
    w = img.shape[1]
    out = _with(item, np.ascontiguousarray(img[:, ::-1]))
    if item.get("landmarks") is not None:
        lm = np.asarray(item["landmarks"], np.float32).copy()
        lm[:, 0] = (w - 1) - lm[:, 0]
        out["landmarks"] = lm[FLIP_ORDER]
    return out


def random_flip(item: dict, rng: np.random.Generator, p: float = 0.5) -> dict:
    return hflip(item) if rng.random() < p else item


def box_jitter(item: dict, rng: np.random.Generator, scale=(0.85, 1.0), shift: float = 0.05) -> dict:
    """Random crop of the face box (scale of the side, centre shifted by up to `shift`), resized
    back to the input size: the detector-box jitter a deployed model sees."""
    h, w = item["image"].shape[:2]
    s = rng.uniform(*scale)
    cw, ch = w * s, h * s
    cx = w / 2 + rng.uniform(-shift, shift) * w
    cy = h / 2 + rng.uniform(-shift, shift) * h
    x0, y0 = cx - cw / 2, cy - ch / 2
    m = np.array([[w / cw, 0, -x0 * w / cw], [0, h / ch, -y0 * h / ch]], dtype=np.float64)
    return _warp(item, m)


def gaussian_noise(item: dict, rng: np.random.Generator, sigma=(0.0, 12.0)) -> dict:
    img = item["image"].astype(np.float32)
    noisy = img + rng.normal(0.0, rng.uniform(*sigma), img.shape)
    return _with(item, np.clip(noisy, 0, 255).astype(np.uint8))


def cutout(item: dict, rng: np.random.Generator, max_frac: float = 0.5, fill: int = 127) -> dict:
    """A square of side up to max_frac of the image, anywhere (it may hang over the border)."""
    img = item["image"].copy()
    h, w = img.shape[:2]
    side = int(rng.uniform(0, max_frac) * min(h, w))
    if side > 0:
        cx, cy = rng.integers(0, w), rng.integers(0, h)
        img[max(0, cy - side // 2):cy + side // 2 + 1, max(0, cx - side // 2):cx + side // 2 + 1] = fill
    return _with(item, img)


def random_erasing(item: dict, rng: np.random.Generator, p: float = 0.5, area=(0.02, 0.33), ratio=(0.3, 3.3)) -> dict:
    """Zhong et al.'s random erasing: a rectangle of random area and aspect filled with noise."""
    if rng.random() >= p:
        return item
    img = item["image"].copy()
    h, w = img.shape[:2]
    for _ in range(10):
        a = rng.uniform(*area) * h * w
        r = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        eh, ew = int(round(np.sqrt(a * r))), int(round(np.sqrt(a / r)))
        if 0 < eh < h and 0 < ew < w:
            y, x = rng.integers(0, h - eh), rng.integers(0, w - ew)
            img[y:y + eh, x:x + ew] = rng.integers(0, 256, img[y:y + eh, x:x + ew].shape, dtype=np.uint8)
            break
    return _with(item, img)


# --- RandAugment ops: op(item, rng, magnitude in [0, 1]) --------------------------------------

def _lut(item: dict, table: np.ndarray) -> dict:
    return _with(item, cv2.LUT(item["image"], np.clip(table, 0, 255).astype(np.uint8)))


def _blend(item: dict, other: np.ndarray, factor: float) -> dict:
    img = item["image"].astype(np.float32)
    return _with(item, np.clip(other + factor * (img - other), 0, 255).astype(np.uint8))


def _sign(rng) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _gray(img):
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def op_identity(item, rng, mag):
    return item


def op_autocontrast(item, rng, mag):
    img = item["image"]
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return item
    return _lut(item, (np.arange(256) - lo) * 255.0 / (hi - lo))


def op_equalize(item, rng, mag):
    img = item["image"]
    if img.ndim == 2:
        return _with(item, cv2.equalizeHist(img))
    return _with(item, np.stack([cv2.equalizeHist(np.ascontiguousarray(img[..., c])) for c in range(3)], -1))


def op_rotate(item, rng, mag):
    h, w = item["image"].shape[:2]
    return _warp(item, cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), _sign(rng) * 30.0 * mag, 1.0))


def op_shear_x(item, rng, mag):
    h, w = item["image"].shape[:2]
    s = _sign(rng) * 0.3 * mag
    return _warp(item, np.array([[1, s, -s * (h - 1) / 2], [0, 1, 0]], dtype=np.float64))


def op_shear_y(item, rng, mag):
    h, w = item["image"].shape[:2]
    s = _sign(rng) * 0.3 * mag
    return _warp(item, np.array([[1, 0, 0], [s, 1, -s * (w - 1) / 2]], dtype=np.float64))


def op_translate_x(item, rng, mag):
    w = item["image"].shape[1]
    return _warp(item, np.array([[1, 0, _sign(rng) * 0.3 * mag * w], [0, 1, 0]], dtype=np.float64))


def op_translate_y(item, rng, mag):
    h = item["image"].shape[0]
    return _warp(item, np.array([[1, 0, 0], [0, 1, _sign(rng) * 0.3 * mag * h]], dtype=np.float64))


def op_solarize(item, rng, mag):
    t = 256 - 256 * mag
    x = np.arange(256)
    return _lut(item, np.where(x >= t, 255 - x, x))


def op_posterize(item, rng, mag):
    bits = int(round(8 - 4 * mag))
    shift = 8 - max(bits, 1)
    return _lut(item, (np.arange(256) >> shift) << shift)


def op_contrast(item, rng, mag):
    mean = float(_gray(item["image"]).mean())
    return _blend(item, np.full(item["image"].shape, mean, np.float32), 1.0 + _sign(rng) * 0.9 * mag)


def op_brightness(item, rng, mag):
    return _blend(item, np.zeros(item["image"].shape, np.float32), 1.0 + _sign(rng) * 0.9 * mag)


def op_color(item, rng, mag):
    img = item["image"]
    if img.ndim == 2:
        return item
    gray = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR).astype(np.float32)
    return _blend(item, gray, 1.0 + _sign(rng) * 0.9 * mag)


def op_sharpness(item, rng, mag):
    blurred = cv2.GaussianBlur(item["image"], (3, 3), 0).astype(np.float32)
    return _blend(item, blurred, 1.0 + _sign(rng) * 0.9 * mag)


RANDAUGMENT_OPS: dict[str, Callable] = {
    "identity": op_identity, "autocontrast": op_autocontrast, "equalize": op_equalize, "rotate": op_rotate,
    "solarize": op_solarize, "color": op_color, "posterize": op_posterize, "contrast": op_contrast,
    "brightness": op_brightness, "sharpness": op_sharpness, "shear_x": op_shear_x, "shear_y": op_shear_y,
    "translate_x": op_translate_x, "translate_y": op_translate_y,
}


def rand_augment(item: dict, rng: np.random.Generator, n: int = 3, magnitude: float | None = None) -> dict:
    """n ops drawn uniformly; magnitude in [0, 1] (None: a random magnitude per op, as FixMatch's
    RandAugment variant that the FER methods use)."""
    names = list(RANDAUGMENT_OPS)
    for k in rng.choice(len(names), size=n, replace=True):
        mag = rng.uniform(0.05, 1.0) if magnitude is None else magnitude
        item = RANDAUGMENT_OPS[names[k]](item, rng, mag)
    return item


def weak(item: dict, rng: np.random.Generator) -> dict:
    return box_jitter(random_flip(item, rng), rng)


def strong(item: dict, rng: np.random.Generator, n_ops: int = 3, cutout_frac: float = 0.5) -> dict:
    return cutout(rand_augment(weak(item, rng), rng, n=n_ops), rng, max_frac=cutout_frac)
