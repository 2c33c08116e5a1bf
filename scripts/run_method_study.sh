#!/bin/bash
# Every pre-training method under the same budget, its frozen encoder judged by three heads, one table.
#   bash scripts/run_method_study.sh [DEVICE_TARGET] [OUTPUT_DIR] [SCALE]
# DEVICE_TARGET: auto (default) | Ascend | GPU | CPU
# OUTPUT_DIR:    default runs/method_study (a rerun continues it: a method with its downstream
#                metrics already there is skipped)
# SCALE:         a whole number (default 1) multiplying every method's epochs: the budget is SCALE x
#                about 3 minutes of pre-training on 2 quiet CPU cores (the steps below come from each
#                method's step time on an idle 2-core Intel Xeon, docs/methods.md)
# Per method: OUTPUT_DIR/<name>/run (train.py) and OUTPUT_DIR/<name>/eval (eval.py --eval_mode classify:
# linear, logistic and MLP heads on the frozen encoder, 1/10/100% labels, seeds 0-2); then
# OUTPUT_DIR/methods_table.md and methods_accuracy.png (tools/compare_methods.py).
set -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_method_study.sh [DEVICE_TARGET] [OUTPUT_DIR] [SCALE]"
handle_help "$1"
DEVICE_TARGET="${1:-auto}"
check_device_target "$DEVICE_TARGET" "$USAGE"
OUTPUT_DIR="$(abs_path "${2:-${RUNS_DIR:-$REPO_ROOT/runs}/method_study}")"
SCALE="${3:-1}"
[[ "$SCALE" =~ ^[1-9][0-9]*$ ]] || usage_die "SCALE must be a whole number >= 1, got '$SCALE'"

# name | config | train.py flags | epochs | steps per epoch | baselines evaluated beside the heads
METHODS=(
    "cpc_sequence|cpc_mnist64_color.yaml|--loss infonce|3|310|random_logistic,random_mlp"
    "cpc_image|cpc_image64_color.yaml||4|175|random_logistic,random_mlp"
    "cpc_image_views|cpc_image64_color.yaml|--view_ntxent_weight 0.5|3|180|"
    "simclr|simclr_mnist64_color.yaml||4|200|"
    "cmc|cmc_mnist64_color.yaml||4|320|"
    "supcon|supcon_mnist64_color.yaml||4|200|"
    "contrastive_margin|simclr_mnist64_color.yaml|--contrastive_loss margin|4|200|"
    "triplet|simclr_mnist64_color.yaml|--contrastive_loss triplet|4|200|"
)
HEADS="cpc_linear,cpc_logistic,cpc_mlp"

study() {  # study NAME CONFIG FLAGS EPOCHS STEPS BASELINES: pre-train, then the downstream study
    local dir="$OUTPUT_DIR/$1" config="$REPO_ROOT/config/$2" flags
    read -r -a flags <<< "$3"
    [ -f "$dir/eval/downstream_metrics.json" ] && { echo "$1: done before, kept"; return 0; }
    echo "$1: pre-training $(( $4 * SCALE )) x $5 steps"
    "$PYTHON" train.py --config_path "$config" --device_target "$DEVICE_TARGET" "${flags[@]}" \
        --epoch_size "$(( $4 * SCALE ))" --steps_per_epoch "$5" --output_path "$dir/run" || return
    "$PYTHON" eval.py --eval_mode classify --config_path "$config" --device_target "$DEVICE_TARGET" \
        --ckpt_path "$dir/run/cpc_last.ckpt" --methods "$HEADS${6:+,$6}" --seeds 0,1,2 --tsne_points 0 \
        --output_path "$dir/eval"
}

mkdir -p "$OUTPUT_DIR" || die "cannot create $OUTPUT_DIR"
cd "$REPO_ROOT" || exit 2
STUDIES=()
for row in "${METHODS[@]}"; do
    IFS="|" read -r name config flags epochs steps baselines <<< "$row"
    study "$name" "$config" "$flags" "$epochs" "$steps" "$baselines" || die "$name failed (its logs: $OUTPUT_DIR/$name)"
    STUDIES+=(--study "$name=$OUTPUT_DIR/$name/eval")
done
"$PYTHON" -m tools.compare_methods "${STUDIES[@]}" --output_path "$OUTPUT_DIR"
