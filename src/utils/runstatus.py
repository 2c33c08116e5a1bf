"""run_status.json: what a training process is doing or how it ended, for launchers to read.

Each rank writes its own file into its own output folder (rank k > 0: output_path/rank_k), so the
scripts read the state of a job from files, not from log text:

    {"state": "running" | "finished" | "failed" | "interrupted", "exit_code": null | int,
     "error": null | "the error line's text", "peer_stopped": false, "last_checkpoint": null | path,
     "run_dir": ..., "rank": 0, "group_size": 1, "pid": ..., "host": ..., "stdout": null | path,
     "started": "<UTC ISO time>", "ended": null | "<UTC ISO time>"}

It is written once the run holds its output folder (a run refused before that writes none) and
rewritten when the run ends, each time atomically; like the lock and train.log it is the account of
the last run that took the folder, so a run refused later (a resume of other settings) leaves its
refusal here too, and every output as it was. A process killed outright (SIGKILL, out of memory) cannot
write its end: its file stays "running" with a pid that no longer lives. "interrupted" is a stop by
a signal or Ctrl-C (exit code above 128, as a shell reports a signal); "peer_stopped" says a failed
rank stopped only because another rank of the job had stopped (the cause is in that rank's file).
"""
import json
import os
import socket
import sys
from contextlib import contextmanager
from datetime import datetime, timezone

from src.utils.atomic import atomic_write
from src.utils.errors import EXIT_USER_ERROR, CPCError, PeerStopped, first_line

STATUS_NAME = "run_status.json"
STATES = ("running", "finished", "failed", "interrupted")


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _stdout_file():
    """The file this process's stdout goes to (a launcher's per-rank log), or None (a terminal, a
    pipe, or no /proc): it ties a rank's status to the log a launcher keeps for it."""
    try:
        path = os.readlink(f"/proc/self/fd/{sys.stdout.fileno()}")
    except (OSError, ValueError, AttributeError):
        return None
    return path if os.path.isfile(path) else None


def write(folder, status):
    """Write `status` (a dict) as folder/run_status.json, atomically."""
    path = os.path.join(folder, STATUS_NAME)
    with atomic_write(path, "run status") as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(status, handle, indent=2)
    return path


def read(folder, since=0.0):
    """The status in folder/run_status.json of a run started at or after `since` (seconds since the
    epoch: a launcher's start, so an earlier launch's file is not taken for this one's), or None
    when there is none or it cannot be read."""
    try:
        with open(os.path.join(folder, STATUS_NAME), encoding="utf-8") as handle:
            status = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(status, dict) or status.get("state") not in STATES:
        return None
    return status if started_at(status) >= since else None


def started_at(status):
    """When the run of `status` started, in seconds since the epoch (0 if the file does not say)."""
    try:
        return datetime.fromisoformat(status.get("started")).timestamp()
    except (TypeError, ValueError):
        return 0.0


def ending(exc):
    """(state, exit code, error text, peer_stopped) of a run that ended with exception `exc` (None:
    it finished), with the exit codes train.py's run_main gives them."""
    if exc is None:
        return "finished", 0, None, False
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130, "interrupted", False
    if isinstance(exc, CPCError):
        code = getattr(exc, "exit_code", EXIT_USER_ERROR)
    else:
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
    state = "interrupted" if code > 128 else "failed"
    return state, code, first_line(exc), isinstance(exc, PeerStopped)


def start(folder, rank, size):
    """Write folder/run_status.json of this process as "running"; returns the status."""
    status = {"state": "running", "exit_code": None, "error": None, "peer_stopped": False,
              "last_checkpoint": None, "run_dir": os.path.abspath(folder), "rank": int(rank),
              "group_size": int(size), "pid": os.getpid(), "host": socket.gethostname(),
              "stdout": _stdout_file(), "started": _now(), "ended": None}
    write(folder, status)
    return status


def end(folder, status, exc, checkpoints=None):
    """Rewrite `status` as ended by exception `exc` (None: finished); checkpoints(folder) lists the
    resumable checkpoints, oldest first (the newest is recorded as last_checkpoint)."""
    state, code, error, peer = ending(exc)
    found = checkpoints(folder) if checkpoints else []
    status.update(state=state, exit_code=code, error=error, peer_stopped=peer, ended=_now(),
                  last_checkpoint=os.path.abspath(found[-1]) if found else None)
    write(folder, status)
    return status


@contextmanager
def run_status(folder, rank, size, checkpoints=None):
    """folder/run_status.json says "running" for the block, then how the block ended (the exception,
    if any, goes on)."""
    status = start(folder, rank, size)
    try:
        yield status
    except BaseException as exc:
        try:
            end(folder, status, exc, checkpoints)
        except CPCError:  # a full disk: the run's own error is the one to report, the file stays "running"
            pass
        raise
    end(folder, status, None, checkpoints)


def summary(status):
    """One line for a person: 'interrupted (exit 143): stopped by SIGTERM ...; last checkpoint P'."""
    line = f"{status['state']}" + (f" (exit {status['exit_code']})" if status["exit_code"] is not None else "")
    if status.get("error"):
        line += f": {status['error']}"
    if status.get("last_checkpoint"):
        line += f"; last checkpoint {status['last_checkpoint']}"
    return line

