"""Why a data-parallel job failed, in one line, for scripts/run_distribute_train.sh (through
`python -m tools.run_status why`): the rank to look at. It reads the ranks' run_status.json files
(src/utils/runstatus.py) written since the launch; a rank that failed before it could write one (bad
config or data: nothing is written then) speaks through the `error:` line of its log, the one line
every entry point ends a refusal with. In order:
1. the worker msrun saw end by a signal (killed, out of memory: it could write no end of its own),
   named by its rank through the status holding its pid;
2. the first rank that failed with an error of its own (a rank that stopped because a peer had
   stopped is a consequence, whatever the order they stopped in);
3. msrun's scheduler's error line (it saw ranks of other machines vanish);
4. else the first consequence.
"""
import glob
import os
import re
import signal
import socket

from src.utils import runstatus

# msrun's own report of the first worker of this machine that ended abnormally (negative: a signal)
MSRUN_WORKER_EXIT = re.compile(r"Worker process (\d+) exit with exception\. Error code: (-?\d+)\.")


def rank_statuses(run_dir, since=0.0):
    """The run statuses of rank 0 (run_dir) and ranks k > 0 (run_dir/rank_k) started at or after `since`."""
    found = []
    for folder in [run_dir] + sorted(glob.glob(os.path.join(run_dir, "rank_*"))):
        status = runstatus.read(folder, since)
        if status:
            found.append(dict(status, folder=folder))
    return found


def _seconds(iso):
    return runstatus.started_at({"started": iso})


def error_line(log):
    """The text of the first `error: ` line of a log file, or None."""
    try:
        with open(log, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("error: "):
                    return line[len("error: "):].rstrip("\n")
    except OSError:
        pass
    return None


def _where(status):
    stdout = status.get("stdout")
    return stdout if stdout and os.path.isfile(stdout) else os.path.join(status["folder"], runstatus.STATUS_NAME)


def lost_worker(msrun_log, statuses):
    """The line for the worker msrun reports ended by a signal, or None."""
    try:
        with open(msrun_log, encoding="utf-8", errors="replace") as handle:
            match = MSRUN_WORKER_EXIT.search(handle.read())
    except OSError:
        return None
    if not match or int(match.group(2)) >= 0:
        return None
    pid, signum = int(match.group(1)), -int(match.group(2))
    host = socket.gethostname()
    status = next((s for s in statuses if s.get("pid") == pid and s.get("host") == host), None)
    rank, log = (status["rank"], _where(status)) if status else ("?", "not found")
    try:
        name = f" ({signal.Signals(signum).name})"
    except ValueError:
        name = ""
    return (f"rank {rank} (pid {pid}, log {log}) was lost: it ended by signal {signum}{name} with no error of its "
            f"own (killed, out of memory, or its machine failed); the other ranks stopped after it")


def failures(statuses, logs):
    """[(is a cause, time, line)] of every failed rank: from its status, or, for a rank that has none
    (it failed before writing one), from its log's error line."""
    found = []
    for status in statuses:
        if status["state"] == "failed":
            rank = status.get("rank", "?")
            found.append((not status.get("peer_stopped"), _seconds(status.get("ended")),
                          f"first failing rank {rank} ({_where(status)}): {status.get('error')}"))
    spoken = {os.path.realpath(s["stdout"]) for s in statuses if s.get("stdout")}
    for log in logs:
        line = error_line(log) if os.path.realpath(log) not in spoken else None
        if line is not None:
            found.append((True, os.path.getmtime(log), f"first failing rank ({log}): {line}"))
    return found


def explain(run_dir, logs=(), since=0.0, msrun_log=None, scheduler_log=None):
    """The one line (without `error: `) that says why the job failed, or None."""
    statuses = rank_statuses(run_dir, since)
    lost = lost_worker(msrun_log, statuses) if msrun_log else None
    if lost:
        return lost
    found = failures(statuses, logs)
    causes = sorted((t, line) for cause, t, line in found if cause)
    if causes:
        return causes[0][1]
    scheduler = error_line(scheduler_log) if scheduler_log else None
    if scheduler:
        return scheduler
    consequences = sorted((t, line) for _, t, line in found)
    return consequences[0][1] if consequences else None

