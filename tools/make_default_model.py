#!/usr/bin/env python3
"""Reproduces the model shipped in fer_edge/assets/ with one command:

    python tools/make_default_model.py            # trains if runs/baseline_ferplus/best.pt is missing

1. trains the FERPlus baseline (configs/baseline_ferplus.yaml, seed 0) unless its checkpoint exists;
2. exports it (ONNX FP32 and INT8, OpenVINO FP32/FP16/INT8), each verified on FERPlus-valid;
3. ships the ONNX FP32 model (exact, and faster in ONNX Runtime on x86 CPUs than the Q/DQ INT8
   file, which is TensorRT's input) and the OpenVINO INT8 model when it keeps accuracy within
   1 point of FP32 on FERPlus-valid (the Recognizer uses it when OpenVINO is installed);
4. writes fer_edge/assets/default.onnx, default.int8.xml/.bin and MODEL_CARD.md (test numbers come
   from the run's final.json: FERPlus test and CK+48, evaluated once, after selection on valid).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "baseline_ferplus.yaml"
RUN = ROOT / "runs" / "baseline_ferplus"
EXPORTS = ROOT / "exports"
ASSETS = ROOT / "fer_edge" / "assets"


def main() -> int:
    if not (RUN / "final.json").is_file():
        subprocess.run([sys.executable, "-m", "fer_edge.cli", "train", "baseline", "--config", str(CONFIG)], check=True, cwd=ROOT)
    from fer_edge.export import export

    report = export(RUN / "best.pt", ["onnx:fp32", "onnx:int8", "openvino:fp32", "openvino:fp16", "openvino:int8"],
                    EXPORTS, name="baseline_ferplus")
    rows = {(r["format"], r["precision"]): r for r in report["artifacts"]}
    fp32, ov_int8 = rows[("onnx", "fp32")], rows[("openvino", "int8")]
    ASSETS.mkdir(parents=True, exist_ok=True)
    shutil.copy(fp32["file"], ASSETS / "default.onnx")
    for old in ASSETS.glob("default.int8.*"):
        old.unlink()
    if fp32["accuracy"] - ov_int8["accuracy"] <= 0.01:
        shutil.copy(ov_int8["file"], ASSETS / "default.int8.xml")
        shutil.copy(Path(ov_int8["file"]).with_suffix(".bin"), ASSETS / "default.int8.bin")
    chosen = fp32
    final = json.loads((RUN / "final.json").read_text())
    card = card_text(final, report, chosen)
    (ASSETS / "MODEL_CARD.md").write_text(card)
    print(card)
    return 0


def card_text(final: dict, report: dict, chosen: dict) -> str:
    cfg = json.loads((RUN / "config.json").read_text())
    history = [json.loads(l) for l in (RUN / "metrics.jsonl").read_text().splitlines()]
    fp = final["sets"]["ferplus:test"]
    ck = final["sets"]["ckplus"]
    lines = [
        "# fer_edge default model: FERPlus baseline",
        "",
        f"- **Model**: {cfg['model']['backbone']} x{cfg['model']['width']} ({cfg['model']['stem']} stem), "
        f"{cfg['data']['image_size']}x{cfg['data']['image_size']} {cfg['data']['color']}, 8 classes "
        "(neutral, happiness, surprise, sadness, anger, disgust, fear, contempt); shipped as "
        f"ONNX FP32 ({chosen['size_mb']:.2f} MB, `default.onnx`) and, when within 1 point, OpenVINO INT8 "
        "(`default.int8.xml`, used by `Recognizer()` when OpenVINO is installed).",
        f"- **Data**: FERPlus train ({cfg['data']['label_mode']} targets from the 10 votes), augmentation "
        f"{cfg['data']['augment']} + random erasing {cfg['data']['random_erasing']}; no pretrained weights.",
        f"- **Training**: {cfg['optim']['epochs']} epochs, {cfg['optim']['optimizer']} lr {cfg['optim']['lr']}, "
        f"batch {cfg['data']['batch_size']}, seed {cfg['seed']}, {sum(h['seconds'] for h in history) / 60:.0f} min on a 2-core x86 CPU.",
        f"- **Selection**: best FERPlus-valid accuracy (epoch {final['best_epoch']}: {final['val_acc']:.4f}); "
        "test sets were evaluated once, afterwards.",
        "",
        "| set | accuracy | mean class accuracy |",
        "|---|---|---|",
        f"| FERPlus test (official majority protocol, {fp['count']} faces) | {fp['accuracy']:.4f} | {fp['mean_class_accuracy']:.4f} |",
        f"| CK+48 ({ck['count']} faces; 8-way) | {ck['accuracy']:.4f} | {ck['mean_class_accuracy']:.4f} |",
        f"| CK+48, restricted to its 7 classes | {ck['accuracy_shared_classes']:.4f} | |",
        "",
        "Exports verified on FERPlus-valid (torch FP32 accuracy "
        f"{report['torch_accuracy']:.4f}):",
        "",
        "| format | precision | MB | accuracy | agreement with FP32 | ms/face (batch 1) |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["artifacts"]:
        if "skipped" not in r:
            lines.append(f"| {r['format']} | {r['precision']} | {r['size_mb']:.2f} | {r['accuracy']:.4f} | "
                         f"{r['agreement_with_torch']:.4f} | {r['latency_ms_batch1']:.3f} |")
    lines += ["", "Reproduce: `python tools/make_default_model.py` (see its docstring). Faces are aligned at run time "
              "onto the `fer2013` template (the framing of FERPlus crops).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
