#!/bin/bash
# Classifier latency on CPU, side by side: MindSpore Lite 2.0 C++, MindSpore's Python runner, onnxruntime.
#   bash scripts/run_infer_bench.sh [tools.infer_bench flags...]     e.g. --ckpt_path EVAL/classifier.ckpt
# Fetches the Lite wheel (scripts/fetch_lite.sh, cached), builds ascend310_infer against it, then runs
# python -m tools.infer_bench (it prints the latency table of docs/inference.md).
set -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_infer_bench.sh [tools.infer_bench flags...]"
handle_help "$1"
cd "$REPO_ROOT" || exit 2
MS_LITE_HOME="$(bash scripts/fetch_lite.sh)" || exit $?
export MS_LITE_HOME
bash ascend310_infer/build.sh >/dev/null || exit $?
exec "$PYTHON" -m tools.infer_bench "$@"
