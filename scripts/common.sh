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
