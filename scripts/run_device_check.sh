#!/bin/bash
# Device check: train a few hundred steps on Ascend/GPU (data sinking, amp_level O2), compare the loss
# curve with a CPU run of the same seed, export the encoder to MINDIR and run it next to the Cell.
#   bash scripts/run_device_check.sh [DEVICE_TARGET] [tools.device_check flags...]
# DEVICE_TARGET: auto (default), Ascend, GPU or CPU. Where no device is found (or with CPU) both runs
# are on CPU with amp_level O0: a dry run of the script itself, which it says.
# Everything lands in runs/device_check_<target>_<time>/ (step logs *.log, both runs, encoder.mindir).
# Prints a small table and, last, one line: PASS or "FAIL: reason" (exit 0 / 1; bad input: exit 2).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_device_check.sh [DEVICE_TARGET] [tools.device_check flags...]"
handle_help "${1:-}"
DEVICE_TARGET="${1:-auto}"
check_device_target "$DEVICE_TARGET" "$USAGE"
RUN_DIR="$(make_run_dir "device_check_$DEVICE_TARGET")" || exit 2
echo "run folder: $RUN_DIR"
cd "$REPO_ROOT" || exit 2
"$PYTHON" -m tools.device_check --device_target "$DEVICE_TARGET" --work_dir "$RUN_DIR" "${@:2}"
