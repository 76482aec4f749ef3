"""Linear probes of frozen face encoders on FERPlus: does a label-free encoder carry expression
information, and more than a random one or the pixels themselves?

For each encoder, features of every --step-th FERPlus training face and every --valid-step-th
validation face (eval view, no augmentation) are standardised and fed to an L2-regularised
logistic regression (scikit-learn, C=--c); the score is its accuracy on those validation faces
(majority labels, 8 classes). Never the test split. Encoders:

- each --encoder path (a saved ViT encoder: `<stem>.safetensors` + `<stem>.json`);
- "random": a ViT of the first encoder's shape at a seeded random initialisation (the control);
- "pixels": the 48 px image, and the image average-pooled to 12 px (a floor any encoder must beat).

ViT features: the class token and the mean of the patch tokens of the last block (`pooled`),
and every patch token concatenated (`tokens`). Writes benchmarks/results/pll/encoder-probe.json.

    python benchmarks/encoder_probe.py --encoder benchmarks/results/pll/mim_hog/encoder
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import ROOT  # noqa: E402


def faces(split: str, step: int):
    from fer_edge.data import open_dataset
    from fer_edge.train.torch_data import TorchFaces

    ds = open_dataset("ferplus", split)
    sub = ds.subset(range(0, len(ds), step))
    tf = TorchFaces(sub, 48, "eval")
    return torch.stack([tf[i]["image"] for i in range(len(tf))]), np.asarray(tf.labels)


def vit_features(encoder, x: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        t = torch.cat([encoder.forward_features(x[i:i + 256])[-1] for i in range(0, len(x), 256)])
    return {"pooled": torch.cat([t[:, 0], t[:, 1:].mean(1)], 1).numpy(), "tokens": t[:, 1:].flatten(1).numpy()}


def probe(train: np.ndarray, ytr, valid: np.ndarray, yva, c: float) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs' iteration-limit warning: the score is what we report
        clf = LogisticRegression(max_iter=300, C=c).fit(scaler.transform(train), ytr)
    return float(clf.score(scaler.transform(valid), yva))


def main(argv=None):
    from fer_edge.models.encoder_io import load_encoder, read_encoder_meta
    from fer_edge.models.vit import ViT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", nargs="*", default=[])
    ap.add_argument("--step", type=int, default=5, help="every n-th training face")
    ap.add_argument("--valid-step", type=int, default=2, help="every n-th validation face")
    ap.add_argument("--c", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/pll/encoder-probe.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    xtr, ytr = faces("train", args.step)
    xva, yva = faces("valid", args.valid_step)
    rows = {}

    def record(name, tr, va):
        rows[name] = {"dim": int(tr.shape[1]), "valid_accuracy": round(probe(tr, ytr, va, yva, args.c), 4)}
        print(f"{name}: {rows[name]}", flush=True)

    record("pixels_48px", xtr.flatten(1).numpy(), xva.flatten(1).numpy())
    record("pixels_12px", F.avg_pool2d(xtr, 4).flatten(1).numpy(), F.avg_pool2d(xva, 4).flatten(1).numpy())
    shape = None
    for path in args.encoder:
        enc = load_encoder(path).eval()
        meta = read_encoder_meta(path)
        shape = shape or (meta.get("size", "tiny"), meta["patch"], meta["image_size"], meta["in_channels"], meta["depth"])
        a, b = vit_features(enc, xtr), vit_features(enc, xva)
        for kind in a:
            record(f"{path}:{kind}", a[kind], b[kind])
    torch.manual_seed(args.seed)
    size, patch, image_size, channels, depth = shape or ("tiny", 8, 48, 1, 6)
    rnd = ViT(size, patch, image_size, channels, 0.0, depth).eval()
    a, b = vit_features(rnd, xtr), vit_features(rnd, xva)
    for kind in a:
        record(f"random:{kind}", a[kind], b[kind])
    doc = {"benchmark": "linear probes of frozen encoders (FERPlus valid, majority labels)",
           "train_faces": len(ytr), "valid_faces": len(yva), "C": args.c, "seed": args.seed,
           "prior_accuracy": round(float((yva == np.bincount(ytr).argmax()).mean()), 4), "probes": rows,
           "seconds": round(time.time() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
