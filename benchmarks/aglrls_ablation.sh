#!/usr/bin/env bash
# AGLRLS FERPlus -> CK+48 ablation (issue 7). One shared stage 1, then four stage-2 variants of
# the same budget, each evaluated on FERPlus test and CK+48 with every decision rule (GLPC,
# averaging of the 7 heads, single heads). No checkpoint selection: every report uses last.pt.
#   bash benchmarks/aglrls_ablation.sh [runs/aglrls] [extra key=value overrides...]
#   env: STAGE1_EPOCHS (12), STAGE2_EPOCHS (30: the authors' transfer epochs), VARIANTS ("full source_only global_local global"),
#        STAGE1_DIR (reuse the finished stage 1 in this folder instead of training one)
# Then: python benchmarks/aglrls_table.py runs/aglrls  (writes benchmarks/results/aglrls/)
set -euo pipefail
OUT=${1:-runs/aglrls}
shift || true
CFG=configs/aglrls_ferplus_ckplus.yaml
STAGE1_EPOCHS=${STAGE1_EPOCHS:-12}
STAGE2_EPOCHS=${STAGE2_EPOCHS:-30}
VARIANTS=${VARIANTS:-"full source_only global_local global"}
export FER_EDGE_PROGRESS=${FER_EDGE_PROGRESS:-0}

STAGE1_DIR=${STAGE1_DIR:-}
if [ -z "$STAGE1_DIR" ]; then
  STAGE1_DIR=$OUT/stage1
  fer-edge train aglrls --config $CFG out_dir=$STAGE1_DIR optim.epochs=$STAGE1_EPOCHS aglrls.source_epochs=$STAGE1_EPOCHS "$@" --no-report
  fer-edge eval $STAGE1_DIR/last.pt --out $STAGE1_DIR
fi

variant() {  # name, overrides...
  local name=$1
  shift
  fer-edge train aglrls --config $CFG out_dir=$OUT/$name aglrls.init_from=$STAGE1_DIR/last.pt \
    optim.epochs=$STAGE2_EPOCHS "$@"
}
for v in $VARIANTS; do
  case $v in
    full) variant full aglrls.align=global_local aglrls.pseudo_labels=true "$@" ;;
    source_only) variant source_only aglrls.align=none aglrls.pseudo_labels=false "$@" ;;
    global_local) variant global_local aglrls.align=global_local aglrls.pseudo_labels=false "$@" ;;
    global) variant global aglrls.align=global aglrls.pseudo_labels=false "$@" ;;
    *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
done
