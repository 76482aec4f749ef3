#!/usr/bin/env python3
"""Deployed AGLRLS vs its PyTorch checkpoint on CK+48, through the whole Recognizer pipeline
(YuNet detection, alignment, landmarks mapped into the crop, GLPC from the metadata).

    python benchmarks/aglrls_deploy_check.py runs/aglrls/full/last.pt exports/aglrls.xml [more models] \\
        --out benchmarks/results/aglrls/deploy_check.json

CK+ labels are used only to report accuracy; contempt faces (not in the 7 classes) are left out.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fer_edge import Recognizer
from fer_edge.data.folder import ckplus


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="the PyTorch reference (.pt)")
    ap.add_argument("models", nargs="+", help="exported models (.onnx, .xml, .engine)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/aglrls/deploy_check.json"))
    args = ap.parse_args()
    ds = ckplus(num_classes=7)
    files = [str(s.path) for s in ds.samples]
    truth = [ds.classes[s.label] for s in ds.samples]
    report = {"dataset": f"CK+48, {len(files)} faces of the 7-class view", "models": {}}
    reference = None
    for name in [args.checkpoint, *args.models]:
        t = time.perf_counter()
        results = Recognizer(name).predict(files)
        seconds = time.perf_counter() - t
        labels = [r[0].label if r else None for r in results]
        reference = labels if reference is None else reference
        row = {"faces_found": sum(1 for r in results if r), "accuracy": float(np.mean([a == b for a, b in zip(labels, truth)])),
               "agreement_with_pytorch_glpc": float(np.mean([a == b for a, b in zip(labels, reference)])),
               "seconds": round(seconds, 2)}
        report["models"][name] = row
        print(f"{name:45s} faces {row['faces_found']}/{len(files)}  accuracy {row['accuracy']:.4f}  "
              f"agreement with PyTorch+GLPC {row['agreement_with_pytorch_glpc']:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
