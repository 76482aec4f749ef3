#!/usr/bin/env bash
# AGLRLS FERPlus -> CK+48 ablation (issue 7). One shared stage 1, then four stage-2 variants of
# the same budget, each evaluated on FERPlus test and CK+48 with every decision rule (GLPC,
# averaging of the 7 heads, single heads). No checkpoint selection: every report uses last.pt.
#   bash benchmarks/aglrls_ablation.sh [runs/aglrls] [extra key=value overrides...]
# Then: python benchmarks/aglrls_table.py runs/aglrls  (writes benchmarks/results/aglrls/)
set -euo pipefail
OUT=${1:-runs/aglrls}
shift || true
CFG=configs/aglrls_ferplus_ckplus.yaml
STAGE2_EPOCHS=${STAGE2_EPOCHS:-10}
export FER_EDGE_PROGRESS=${FER_EDGE_PROGRESS:-0}

fer-edge train aglrls --config $CFG out_dir=$OUT/stage1 optim.epochs=3 aglrls.source_epochs=3 "$@" --no-report
fer-edge eval $OUT/stage1/last.pt --out $OUT/stage1

variant() {  # name, overrides...
  local name=$1
  shift
  fer-edge train aglrls --config $CFG out_dir=$OUT/$name aglrls.init_from=$OUT/stage1/last.pt \
    optim.epochs=$STAGE2_EPOCHS "$@"
}
variant full aglrls.align=global_local aglrls.pseudo_labels=true "$@"
variant source_only aglrls.align=none aglrls.pseudo_labels=false "$@"
variant global_local aglrls.align=global_local aglrls.pseudo_labels=false "$@"
variant global aglrls.align=global aglrls.pseudo_labels=false "$@"
