#!/bin/bash
# Shared helpers of the run_*.sh scripts: paths, argument checks, run folders.
# Source it; it defines REPO_ROOT and the functions below. Every run_*.sh that takes a device takes
# DEVICE_TARGET as its first argument.
# GLOG_v: MindSpore's own log level (its lines on stderr), as MindSpore reads it: 0 debug, 1 info,
# 2 warnings and errors (the default, as MindSpore's), 3 errors only, 4 critical only.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"

die() {  # die MESSAGE: one line on stderr, exit 2
    echo "error: $*" >&2
    exit 2
}

export GLOG_v="${GLOG_v:-2}"
# MindSpore refuses any other value with a traceback at import, after the run folder was made
[[ "$GLOG_v" =~ ^[0-4]$ ]] || die "GLOG_v (MindSpore's log level) must be 0 (debug), 1 (info), 2 (warnings)," \
    "3 (errors) or 4 (critical), got '$GLOG_v'"

abs_path() {  # abs_path PATH: absolute form of PATH (which need not exist yet)
    case "$1" in
        /*) echo "$1" ;;
        *) echo "$(pwd)/$1" ;;
    esac
}

check_device_target() {  # check_device_target VALUE USAGE
    case "$1" in
        auto|Ascend|GPU|CPU) ;;
        *) echo "usage: $2" >&2; die "DEVICE_TARGET must be auto, Ascend, GPU or CPU, got '$1' (the first argument)" ;;
    esac
}

check_file() {  # check_file PATH WHAT
    [ -f "$1" ] || die "$2 not found: $1"
}

check_dir_or_empty() {  # check_dir_or_empty PATH WHAT: empty means 'not given'
    [ -z "$1" ] || [ -d "$1" ] || die "$2 is not a folder: $1"
}

make_run_dir() {  # make_run_dir NAME: create and print runs/NAME_<timestamp>
    local dir="${RUNS_DIR:-$REPO_ROOT/runs}/$1_$(date +%Y%m%d_%H%M%S)"
    mkdir -p "$dir" || die "cannot create run folder $dir"
    echo "$dir"
}

# The usage line of the calling script is USAGE (set it before using the helpers below).
usage_die() {  # usage_die MESSAGE: the usage line, then die MESSAGE
    echo "usage: $USAGE" >&2
    die "$*"
}

handle_help() {  # handle_help "$1": print the usage line and exit 0 on -h/--help
    case "$1" in -h|--help) echo "usage: $USAGE"; exit 0 ;; esac
}

require_arg() {  # require_arg VALUE NAME: usage and error unless VALUE is given
    [ -n "$1" ] || usage_die "$2 is required"
}

file_arg() {  # file_arg VALUE NAME: a required file argument, checked; print it absolute
    require_arg "$1" "$2"
    local path
    path="$(abs_path "$1")"
    check_file "$path" "$2"
    echo "$path"
}

check_device_id() {  # check_device_id VALUE
    [[ "$1" =~ ^[0-9]+$ ]] || usage_die "DEVICE_ID must be a number, got '$1'"
}

config_path_arg() {  # config_path_arg VALUE: check the config file (default: the published one); print it absolute
    local path
    path="$(abs_path "${1:-$REPO_ROOT/config/cpc_mnist64_color.yaml}")"
    check_file "$path" "CONFIG_PATH"
    echo "$path"
}

data_path_arg() {  # data_path_arg VALUE: check an optional data folder; print it absolute ("" stays "")
    check_dir_or_empty "$1" "DATA_PATH"
    [ -z "$1" ] || abs_path "$1"
}

check_lite_home() {  # check_lite_home HINT...: MS_LITE_HOME is a MindSpore Lite package and the build tools exist
    [ -n "$MS_LITE_HOME" ] || die "MS_LITE_HOME is not set: point it at an unpacked MindSpore Lite package $*"
    [ -f "$MS_LITE_HOME/runtime/include/api/model.h" ] || [ -f "$MS_LITE_HOME/mindspore_lite/include/api/model.h" ] \
        || die "MS_LITE_HOME=$MS_LITE_HOME is not a MindSpore Lite package (no runtime/include/api/model.h" \
               "nor mindspore_lite/include/api/model.h)"
    local tool
    for tool in cmake make g++; do
        command -v "$tool" >/dev/null || die "$tool is not installed (needed to build ascend310_infer)"
    done
}

explain_failure() {  # explain_failure RUN_DIR [--since T] [--msrun-log F] [--scheduler-log F] [LOG...]
    # one line on stderr naming the rank that made a data-parallel job fail, from the ranks' run
    # status files (the logs only for ranks that failed before writing one): src/utils/jobstatus.py
    (cd "$REPO_ROOT" && "$PYTHON" -m tools.run_status why "$@")
}

take_output_path() {  # take_output_path FLAGS...: set FLAGS (without --output_path) and OUTPUT_FLAG (its value)
    FLAGS=() OUTPUT_FLAG=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --output_path) [ $# -ge 2 ] || usage_die "--output_path needs a value"; OUTPUT_FLAG="$2"; shift 2 ;;
            --output_path=*) OUTPUT_FLAG="${1#--output_path=}"; shift ;;
            *) FLAGS+=("$1"); shift ;;
        esac
    done
}

run_folder() {  # run_folder NAME FLAGS...: set RUN_DIR (absolute, created) and FLAGS (without --output_path)
    # the run folder is --output_path among the flags, else RUN_DIR, else a new runs/NAME_<time>:
    # the flag or RUN_DIR names a run to continue (--resume True), and everything goes there only
    take_output_path "${@:2}"
    if [ -n "$OUTPUT_FLAG" ] && [ -n "${RUN_DIR:-}" ] && [ "$(abs_path "$OUTPUT_FLAG")" != "$(abs_path "$RUN_DIR")" ]; then
        die "RUN_DIR=$RUN_DIR and --output_path $OUTPUT_FLAG name two run folders: give one"
    fi
    RUN_DIR="${OUTPUT_FLAG:-${RUN_DIR:-}}"
    if [ -z "$RUN_DIR" ]; then
        RUN_DIR="$(make_run_dir "$1")" || exit 2
        return 0
    fi
    RUN_DIR="$(abs_path "$RUN_DIR")"
    [ ! -e "$RUN_DIR" ] || [ -d "$RUN_DIR" ] || die "run folder $RUN_DIR is an existing file, not a folder"
    mkdir -p "$RUN_DIR" || die "cannot create run folder $RUN_DIR"
}

logged_exit() {  # logged_exit LOG COMMAND...: run, add its output to LOG, report the run folder, exit with its status
    local log="$1" since
    shift
    since="$(date +%s)"
    "$@" 2>&1 | tee -a "$log"  # a continued run adds to its log
    local status=$?
    echo "run folder: $RUN_DIR (exit $status)"
    # a training run's own account (train.py's run_status.json of this launch): state, last checkpoint
    (cd "$REPO_ROOT" && "$PYTHON" -m tools.run_status summary "$RUN_DIR" --since "$since" 2> /dev/null)
    exit $status
}
