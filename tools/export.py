#!/usr/bin/env python3
"""Build deployable models from a checkpoint: a thin script over fer_edge.export.

    python tools/export.py runs/baseline_ferplus/best.pt --formats onnx:fp32 openvino:int8 tensorrt:fp16
    python tools/export.py --list
"""
import sys

from fer_edge.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
