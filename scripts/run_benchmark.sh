#!/bin/bash
# Benchmark the CPC training step (and the PyTorch reference, when torch is installed).
#   bash scripts/run_benchmark.sh [CONFIG_PATH] [DEVICE_TARGET] [benchmark flags...]
# CONFIG_PATH:   default config/cpc_mnist64_color.yaml
# DEVICE_TARGET: auto (default) | Ascend | GPU | CPU
# Prints one JSON line for this port; if `import torch` works and the reference script exists
# (TORCH_REFERENCE, default ../shared/bench/torch_reference.py), a second line for PyTorch with the
# same image size, batch and terms, measured in the same run.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_benchmark.sh [CONFIG_PATH] [DEVICE_TARGET] [benchmark flags...]"
handle_help "$1"
CONFIG_PATH="$(abs_path "${1:-$REPO_ROOT/config/cpc_mnist64_color.yaml}")"
DEVICE_TARGET="${2:-auto}"
check_file "$CONFIG_PATH" "CONFIG_PATH"
check_device_target "$DEVICE_TARGET" "$USAGE"
cd "$REPO_ROOT" || exit 2
"$PYTHON" -m src.benchmark --config_path "$CONFIG_PATH" --device_target "$DEVICE_TARGET" "${@:3}" \
    | grep '^{' || die "benchmark failed"
REFERENCE="${TORCH_REFERENCE:-$REPO_ROOT/../shared/bench/torch_reference.py}"
if [ -f "$REFERENCE" ] && "$PYTHON" -c "import torch" 2>/dev/null; then
    read -r SIZE BATCH TERMS PREDICT CODE < <("$PYTHON" -c "
from src.config import parse_config
c = parse_config(['--config_path', '$CONFIG_PATH'])
print(c.image_size, c.batch_size, c.terms, c.predict_terms, c.code_size)")
    "$PYTHON" "$REFERENCE" --image-size "$SIZE" --batch-size "$BATCH" --terms "$TERMS" \
        --predict-terms "$PREDICT" --code-size "$CODE" --steps 30
fi
