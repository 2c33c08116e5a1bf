#!/bin/bash
# Benchmark the CPC training step (and the PyTorch reference, when torch is installed).
#   bash scripts/run_benchmark.sh [DEVICE_TARGET] [CONFIG_PATH] [benchmark flags...]
# DEVICE_TARGET: auto (default) | Ascend | GPU | CPU
# CONFIG_PATH:   default config/cpc_mnist64_color.yaml
# Prints one JSON line for this port; if `import torch` works, a second line for the PyTorch
# reference of the same network and step (tools/torch_reference.py, or TORCH_REFERENCE; the same
# config and flags, --profile_path DIR passed as its --profile: a torch.profiler table on stderr)
# and a third with the ratios, all from this one run.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_benchmark.sh [DEVICE_TARGET] [CONFIG_PATH] [benchmark flags...]"
handle_help "$1"
DEVICE_TARGET="${1:-auto}"
check_device_target "$DEVICE_TARGET" "$USAGE"
CONFIG_PATH="$(abs_path "${2:-$REPO_ROOT/config/cpc_mnist64_color.yaml}")"
check_file "$CONFIG_PATH" "CONFIG_PATH"
cd "$REPO_ROOT" || exit 2
MINDSPORE_LINE="$("$PYTHON" -m tools.benchmark --config_path "$CONFIG_PATH" --device_target "$DEVICE_TARGET" "${@:3}" \
    | grep '^{')" || die "benchmark failed"
echo "$MINDSPORE_LINE"
REFERENCE="${TORCH_REFERENCE:-$REPO_ROOT/tools/torch_reference.py}"
if [ -f "$REFERENCE" ] && "$PYTHON" -c "import torch" 2>/dev/null; then
    REFERENCE_ARGS=()
    SKIP=0
    for ARG in "${@:3}"; do   # the same flags; MindSpore's profiler folder becomes torch.profiler's table
        if [ "$SKIP" = 1 ]; then SKIP=0; continue; fi
        case "$ARG" in
            --profile_path) SKIP=1; REFERENCE_ARGS+=(--profile) ;;
            --profile_path=*) REFERENCE_ARGS+=(--profile) ;;
            *) REFERENCE_ARGS+=("$ARG") ;;
        esac
    done
    TORCH_LINE="$("$PYTHON" "$REFERENCE" --config_path "$CONFIG_PATH" "${REFERENCE_ARGS[@]}" | grep '^{')" \
        || die "PyTorch reference failed"
    echo "$TORCH_LINE"
    "$PYTHON" -c "
import json, sys
ms, pt = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ratios = {'comparison': 'mindspore / torch', 'step_ms_median_ratio': round(ms['step_ms_median'] / pt['step_ms_median'], 3)}
for key in ('images_per_s', 'images_per_s_best', 'images_per_s_fresh', 'images_per_s_fresh_best'):
    ratios['encoder_' + key + '_ratio'] = round(ms[key] / pt[key], 3)
print(json.dumps(ratios))" \
        "$MINDSPORE_LINE" "$TORCH_LINE"
fi
