"""Where a trained CAFE model's class information sits: in the frozen encoder's features F(x) or in
the image-dependent mask M(x). On FERPlus valid (never test), each checkpoint is scored as trained
(fc(F * M)), with F replaced by its mean over the valid faces (fc(mean F * M): the mask alone carries
the face), and with M replaced by its mean (fc(F * mean M): the encoder alone carries it). With
cafe.mask_from=encoder, M is itself computed from F, so "mean F" there only removes F as the
multiplicand.

    python benchmarks/cafe_mask_probe.py runs/cafe/full/seed0/best.pt runs/cafe/pixel_encoder/seed0/best.pt \
        runs/cafe/random_encoder/seed0/best.pt --out benchmarks/results/cafe/mask-probe.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

os.environ.setdefault("FER_EDGE_PROGRESS", "0")


def probe(checkpoint: str, split: str = "valid") -> dict:
    from fer_edge.data import open_dataset
    from fer_edge.export.api import load_for_export
    from fer_edge.train.data_roles import eval_loader
    from fer_edge.train.torch_data import TorchFaces

    model, _, cfg, _ = load_for_export(checkpoint)
    if cfg.method != "cafe" or getattr(model, "encoder", None) is None:
        raise SystemExit(f"{checkpoint}: a CAFE checkpoint with a frozen encoder is needed (method {cfg.method!r}, "
                         f"encoder {getattr(cfg.method_config, 'encoder', None)!r}); the plain baseline has no mask to probe")
    faces = TorchFaces(open_dataset(cfg.data.dataset, split), cfg.data.image_size, "eval")
    feats, masks, labels = [], [], []
    with torch.no_grad():
        for batch in eval_loader(faces):
            f, m = model.encoder_and_mask(batch["image"])
            feats.append(f)
            masks.append(m)
            labels.append(batch["label"])
        f, m, y = torch.cat(feats), torch.cat(masks), torch.cat(labels)

        def acc(features):
            return round(float((model.fc(features).argmax(1) == y).float().mean()) * 100, 2)

        return {"checkpoint": checkpoint, "encoder": cfg.method_config.encoder,
                "mask_from": getattr(cfg.method_config, "mask_from", "image"), "faces": len(y),
                "as_trained": acc(f * m), "mask_alone_mean_F": acc(f.mean(0, keepdim=True) * m),
                "encoder_alone_mean_M": acc(f * m.mean(0, keepdim=True))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for c in args.checkpoints:
        rows.append(probe(c))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"split": "ferplus valid", "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
