#!/usr/bin/env bash
# One-shot check on a machine with an NVIDIA GPU (issue 19), about 10 minutes:
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (FER_EDGE_DATA: the data folder, for the model check)
# 1. builds fer_edge with CUDA for this GPU's architecture into the Python that has a CUDA build of
#    torch (PYTHON, default python3; nothing is downloaded: --no-build-isolation --no-deps);
# 2. runs the CUDA tests with FER_EDGE_REQUIRE_CUDA=1, so that a missing GPU fails instead of skipping;
# 3. runs the kernel benchmark on the GPU (ours vs the torch anchors, side by side);
# 4. where TensorRT and cuda-python import, builds FP16 engines of the shipped ONNX model and compares
#    them with ONNX Runtime on real faces (benchmarks/gpu_models.py);
# 5. writes OUT_DIR/gpu_check.json with every step's status and where its log is.
# Written for the lent H200 image (torch, nvcc, cmake, pybind11, scikit-build-core, onnxruntime, pytest);
# not yet run on a GPU at the time of writing: read its JSON before trusting a green line.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu_check}}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
status() { echo "$1=$2" >> "$OUT/steps.txt"; }
: > "$OUT/steps.txt"

arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
export FER_EDGE_CUDA=ON FER_EDGE_CUDA_ARCHS=${FER_EDGE_CUDA_ARCHS:-${arch:-90}}
timeout 300 "$PY" -m pip install --no-build-isolation --no-deps -v . > "$OUT/build.log" 2>&1
status build $?
(cd "$OUT" && "$PY" -c "import fer_edge, json; print(json.dumps(fer_edge.build_info()))") > "$OUT/build_info.json" 2>> "$OUT/build.log"

FER_EDGE_REQUIRE_CUDA=1 FER_EDGE_PROGRESS=0 timeout 240 "$PY" -m pytest -q -m cuda tests/ops \
    --junitxml="$OUT/cuda_tests.xml" > "$OUT/cuda_tests.log" 2>&1
status cuda_tests $?

timeout 150 "$PY" benchmarks/kernels.py --device cuda --repeats 7 --out "$OUT" > "$OUT/kernels.log" 2>&1
status kernel_benchmark $?

if "$PY" -c "import tensorrt; from cuda.bindings import runtime" 2> /dev/null; then
  timeout 180 "$PY" benchmarks/gpu_models.py --out "$OUT" > "$OUT/models.log" 2>&1
  status tensorrt_models $?
else
  status tensorrt_models skipped_no_tensorrt
fi

"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
steps = dict(line.strip().split("=", 1) for line in (out / "steps.txt").read_text().splitlines() if "=" in line)
info = out / "build_info.json"
report = {"steps": {k: ("ok" if v == "0" else v if not v.isdigit() else f"failed (exit {v})") for k, v in steps.items()},
          "build_info": json.loads(info.read_text()) if info.is_file() and info.read_text().strip() else None,
          "logs": sorted(p.name for p in out.glob("*.log")),
          "kernels": sorted(p.name for p in out.glob("kernels-*.json"))}
(out / "gpu_check.json").write_text(json.dumps(report, indent=2))
print(json.dumps(report["steps"], indent=2))
PY
