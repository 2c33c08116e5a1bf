#!/bin/bash
# Shared helpers of the run_*.sh scripts: paths, argument checks, run folders.
# Source it; it defines REPO_ROOT and the functions below.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
export GLOG_v="${GLOG_v:-3}"  # MindSpore C++ log level: 3 = errors only (set 2 to see warnings)

die() {  # die MESSAGE: one line on stderr, exit 2
    echo "error: $*" >&2
    exit 2
}

abs_path() {  # abs_path PATH: absolute form of PATH (which need not exist yet)
    case "$1" in
        /*) echo "$1" ;;
        *) echo "$(pwd)/$1" ;;
    esac
}

check_device_target() {  # check_device_target VALUE USAGE
    case "$1" in
        auto|Ascend|GPU|CPU) ;;
        *) echo "usage: $2" >&2; die "DEVICE_TARGET must be auto, Ascend, GPU or CPU, got '$1'" ;;
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

# what a rank that stops because another one is gone says (src/train/distributed.py collective_guard)
CONSEQUENCE='with the other ranks failed: a rank of the job stopped'

first_rank_error() {  # first_rank_error LOG...: the error line of the rank that failed first, on stderr
    # the rank that failed first stopped writing its log first; the others usually fail after it,
    # waiting for it (a lost peer), so their lines name a consequence, not the cause: a cause is
    # preferred to a consequence whatever their order (ONLY_CAUSES=1: never a consequence)
    local log line consequence=""
    while read -r log; do
        line="$(grep -m 1 '^error: ' "$log" 2> /dev/null)" || continue
        if [[ "$line" == *"$CONSEQUENCE"* ]]; then
            consequence="${consequence:-error: first failing rank ($log): ${line#error: }}"
            continue
        fi
        echo "error: first failing rank ($log): ${line#error: }" >&2
        return 0
    done < <(ls -1tr "$@" 2> /dev/null)
    [ -n "$consequence" ] && [ -z "${ONLY_CAUSES:-}" ] || return 1
    echo "$consequence" >&2
}

lost_rank() {  # lost_rank MSRUN_LOG WORKER_LOG...: name the worker msrun saw end by a signal, on stderr
    # msrun reports the first worker of this machine that ended abnormally by pid and exit code (a
    # negative code is a signal: killed, out of memory, no error line of its own); train.py's log
    # line "data parallel: rank R of N, ..., pid P" turns the pid into the rank
    local pid code log rank
    read -r pid code < <(sed -n 's/.*Worker process \([0-9]*\) exit with exception\. Error code: \(-\{0,1\}[0-9]*\)\..*/\1 \2/p' \
        "$1" 2> /dev/null | head -n 1)
    shift
    [ -n "$pid" ] && [ "$code" -lt 0 ] || return 1
    log="$(grep -l "data parallel: rank .*, pid $pid\$" "$@" 2> /dev/null | head -n 1)"
    rank="$(sed -n "s/.*data parallel: rank \([0-9]*\) of .*, pid $pid\$/\1/p" "$log" 2> /dev/null | head -n 1)"
    echo "error: rank ${rank:-?} (pid $pid, log ${log:-not found}) was lost: it ended by signal $((-code))" \
        "(SIG$(kill -l $((-code)) 2> /dev/null)) with no error of its own (killed, out of memory, or its machine" \
        "failed); the other ranks stopped after it" >&2
}

scheduler_error() {  # scheduler_error LOG: msrun's scheduler's line naming the ranks it lost, on stderr
    local line
    line="$(grep -m 1 "^error: msrun's scheduler: the job lost" "$1" 2> /dev/null)" || return 1
    echo "$line" >&2
}

logged_exit() {  # logged_exit LOG COMMAND...: run, copy its output to LOG, report the run folder, exit with its status
    local log="$1"
    shift
    "$@" 2>&1 | tee "$log"
    local status=$?
    echo "run folder: $RUN_DIR (exit $status)"
    exit $status
}
