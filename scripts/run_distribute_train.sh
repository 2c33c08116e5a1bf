#!/bin/bash
# Data-parallel training of CPC on several devices of this machine.
#   Ascend (HCCL rank table):
#     bash scripts/run_distribute_train.sh Ascend RANK_TABLE_FILE [CONFIG_PATH] [DATA_PATH] [train.py flags...]
#   GPU / CPU (msrun):
#     bash scripts/run_distribute_train.sh CPU|GPU [WORKER_NUM] [CONFIG_PATH] [DATA_PATH] [train.py flags...]
# DEVICE_TARGET, the first argument, tells the forms apart. RANK_TABLE_FILE: HCCL JSON (server_count,
# server_list[].device[] with device_id, device_ip, rank_id); the device count comes from it; with
# several servers set SERVER_INDEX (default 0) to this machine's entry. WORKER_NUM: default 2.
# CONFIG_PATH: default config/cpc_mnist64_color.yaml. DATA_PATH: MNIST IDX folder, "" = bundled digits.
# batch_size is per device: the global batch is batch_size x devices (docs/distributed.md: the
# learning rate is not scaled with it).
# Everything lands in runs/train_dist_<config>_<time>/, printed at start: rank 0 writes checkpoints,
# config.yaml, metrics.json and run_status.json there, rank k > 0 into its rank_k/ folder. Ascend: one folder
# device<DEVICE_ID>/ per process with env.log and train.log, which is also that process's working
# directory (as in the model zoo: CANN and MindSpore write kernel_meta/, rank_*/ and graph dumps
# into the working directory), so paths among the extra flags must be absolute; HCCL_CONNECT_TIMEOUT
# (seconds the ranks wait for each other to connect) defaults to 600. msrun: msrun_logs/worker_<k>.log.
# A failed job ends with one line naming the rank to look at, read from the ranks' run_status.json.
# MASTER_PORT (msrun's scheduler port, 1-65535) defaults to a free port. TRAIN_PYTHON (default $PYTHON) is the
# command that runs train.py on Ascend (the tests put a stub there that records its environment).
# Several machines (msrun): run the same command on each with NODE_NUM (machines), NODE_RANK (0 on
# the master), MASTER_ADDR (the master's IP or host name) and MASTER_PORT (both required then);
# WORKER_NUM is per machine. The run folder is --output_path among the flags, else RUN_DIR, else a
# new runs/ one (to continue a run: the same folder and --resume True).
# GLOG_v: MindSpore's log level, 2 (warnings) by default (scripts/common.sh).
set -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
USAGE="bash scripts/run_distribute_train.sh Ascend RANK_TABLE_FILE [CONFIG_PATH] [DATA_PATH] [flags...]
   or: bash scripts/run_distribute_train.sh CPU|GPU [WORKER_NUM] [CONFIG_PATH] [DATA_PATH] [flags...]"
handle_help "$1"
require_arg "$1" "DEVICE_TARGET (Ascend, GPU or CPU)"
case "$1" in
    Ascend|GPU|CPU) ;;
    *) [ -f "$1" ] && usage_die "the first argument is DEVICE_TARGET: bash scripts/run_distribute_train.sh Ascend $1 ..."
       usage_die "DEVICE_TARGET must be Ascend, GPU or CPU, got '$1' (the first argument)" ;;
esac

prepare() {  # prepare CONFIG_PATH DATA_PATH FLAGS...: check them, set CONFIG_PATH, DATA_PATH, RUN_DIR, FLAGS
    CONFIG_PATH="$(config_path_arg "$1")" || exit 2
    DATA_PATH="$(data_path_arg "${2:-}")" || exit 2
    run_folder "train_dist_$(basename "$CONFIG_PATH" .yaml)" "${@:3}"  # absolute: the Ascend ranks run in RUN_DIR/device<k>
}

check_master() {  # MASTER_ADDR and MASTER_PORT of an msrun job, checked before anything starts
    [ -z "${MASTER_PORT:-}" ] || { [[ "$MASTER_PORT" =~ ^[0-9]{1,5}$ ]] && [ "$MASTER_PORT" -ge 1 ] \
        && [ "$MASTER_PORT" -le 65535 ]; } || die "MASTER_PORT must be a port number from 1 to 65535, got '$MASTER_PORT'"
    [ -n "${MASTER_ADDR:-}" ] || return 0
    # msrun resolves a host name itself, but fails with a traceback: say it here
    "$PYTHON" -c 'import socket, sys; socket.getaddrinfo(sys.argv[1].strip("[]"), None)' "$MASTER_ADDR" 2> /dev/null \
        || die "MASTER_ADDR '$MASTER_ADDR' is neither an IP address nor a host name this machine can resolve"
}

check_nodes() {  # NODE_NUM, NODE_RANK, MASTER_ADDR, MASTER_PORT of a several-machine msrun job, checked; NODES_SAID
    NODE_NUM="${NODE_NUM:-1}" NODE_RANK="${NODE_RANK:-0}" NODES_SAID=""
    [[ "$NODE_NUM" =~ ^[1-9][0-9]*$ ]] || die "NODE_NUM must be a positive number, got '$NODE_NUM'"
    [[ "$NODE_RANK" =~ ^[0-9]+$ ]] && [ "$NODE_RANK" -lt "$NODE_NUM" ] \
        || die "NODE_RANK must be a number from 0 to NODE_NUM - 1 = $((NODE_NUM - 1)), got '$NODE_RANK'"
    check_master
    if [ "$NODE_NUM" -gt 1 ]; then  # every machine must name the same master: no default can be right
        [ -n "${MASTER_ADDR:-}" ] || die "NODE_NUM $NODE_NUM: set MASTER_ADDR, the master machine's (NODE_RANK 0) address, the same on every machine"
        [ -n "${MASTER_PORT:-}" ] || die "NODE_NUM $NODE_NUM: set MASTER_PORT, the same port on every machine"
        NODES_SAID=" on machine $NODE_RANK of $NODE_NUM, master $MASTER_ADDR:$MASTER_PORT"
    fi
    MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
}

if [ "$1" = "CPU" ] || [ "$1" = "GPU" ]; then
    DEVICE_TARGET="$1"
    WORKER_NUM="${2:-2}"
    [[ "$WORKER_NUM" =~ ^[1-9][0-9]*$ ]] || usage_die "WORKER_NUM must be a positive number, got '$WORKER_NUM'"
    MSRUN="${MSRUN:-msrun}"
    command -v "$MSRUN" > /dev/null || die "msrun not found on PATH (it comes with the mindspore wheel: pip install -r requirements.txt)"
    check_nodes
    prepare "$3" "$4" "${@:5}"
    PORT="${MASTER_PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
    NODE="" && [ "$NODE_NUM" -eq 1 ] || NODE="_node$NODE_RANK"  # each machine's own launcher files
    echo "run folder: $RUN_DIR ($WORKER_NUM $DEVICE_TARGET workers through msrun$NODES_SAID, logs in $RUN_DIR/msrun_logs)"
    cd "$REPO_ROOT" || exit 2
    env > "$RUN_DIR/env$NODE.log"
    LAUNCHED="$(date +%s)"  # run statuses older than this are of an earlier launch into the same folder
    # --cluster_time_out: how long the workers wait for each other to join (msrun's default is 600 s)
    "$MSRUN" --worker_num "$((WORKER_NUM * NODE_NUM))" --local_worker_num "$WORKER_NUM" \
        --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "$PORT" \
        --cluster_time_out "${CLUSTER_TIME_OUT:-600}" --log_dir "$RUN_DIR/msrun_logs" --join True \
        train.py --config_path "$CONFIG_PATH" --device_target "$DEVICE_TARGET" --data_path "$DATA_PATH" \
        --output_path "$RUN_DIR" "${FLAGS[@]}" 2>&1 | tee "$RUN_DIR/msrun$NODE.log"
    status=$?
    if [ "$status" -ne 0 ]; then  # one line: a rank of this machine lost, else the first cause, else the scheduler's
        explain_failure "$RUN_DIR" --since "$LAUNCHED" --msrun-log "$RUN_DIR/msrun$NODE.log" \
            --scheduler-log "$RUN_DIR/msrun_logs/scheduler.log" "$RUN_DIR"/msrun_logs/worker_*.log
    fi
    echo "run folder: $RUN_DIR (exit $status)"
    exit "$status"
fi

# Ascend: one process per device of this server, as listed in the rank table.
require_arg "$2" "RANK_TABLE_FILE"
RANK_TABLE_FILE="$(abs_path "$2")"
[ -f "$RANK_TABLE_FILE" ] || usage_die "RANK_TABLE_FILE not found: $2"
TABLE="$(cd "$REPO_ROOT" && "$PYTHON" -m tools.check_rank_table "$RANK_TABLE_FILE" \
    --server-index "${SERVER_INDEX:-0}")" || exit 2
RANK_SIZE="$(echo "$TABLE" | head -n 1)"
prepare "$3" "$4" "${@:5}"  # CONFIG_PATH and DATA_PATH relative to the current folder, as in the msrun form
export RANK_TABLE_FILE RANK_SIZE
export HCCL_CONNECT_TIMEOUT="${HCCL_CONNECT_TIMEOUT:-600}"
echo "run folder: $RUN_DIR (rank table $RANK_TABLE_FILE, RANK_SIZE $RANK_SIZE)"
LAUNCHED="$(date +%s)"
pids=()
while read -r DEVICE_ID RANK_ID; do
    dir="$RUN_DIR/device$DEVICE_ID"
    mkdir -p "$dir" || die "cannot create $dir"
    (
        export DEVICE_ID RANK_ID
        cd "$dir" || exit 2  # kernel_meta/, rank_*/ and graph dumps of this rank land here
        env > "$dir/env.log"
        exec ${TRAIN_PYTHON:-$PYTHON} "$REPO_ROOT/train.py" --config_path "$CONFIG_PATH" --device_target Ascend --data_path "$DATA_PATH" \
            --device_id "$DEVICE_ID" --output_path "$RUN_DIR" "${FLAGS[@]}" > "$dir/train.log" 2>&1
    ) &
    pids+=($!)
    echo "rank $RANK_ID on device $DEVICE_ID: log $dir/train.log"
done < <(echo "$TABLE" | tail -n +2)
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
[ "$status" -eq 0 ] || explain_failure "$RUN_DIR" --since "$LAUNCHED" "$RUN_DIR"/device*/train.log
echo "run folder: $RUN_DIR (exit $status; per-device logs in $RUN_DIR/device*/train.log)"
exit $status
