"""run_status.json (src/utils/runstatus.py) as train.py writes it, and the launchers' one line about a
failed job read from those files (src/utils/jobstatus.py, tools/run_status.py): in process, fast tier."""
import json
import os
import re
import signal

import pytest

from src.utils import jobstatus, runstatus
from src.utils.errors import CPCError, PeerStopped
from tools import run_status


class _Stopped(CPCError):
    """Stands in for a stop on SIGTERM (exit code 128 + 15, as train.py's stop request has)."""
    exit_code = 128 + signal.SIGTERM


def _ended(folder, exc=None, rank=0, size=1, checkpoints=None, **fields):
    """The status a run in `folder` leaves when its block ends with `exc` (fields set while it ran)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with runstatus.run_status(str(folder), rank, size, checkpoints) as status:
            assert runstatus.read(str(folder))["state"] == "running"
            status.update(fields)
            if exc is not None:
                raise exc
    except BaseException as raised:  # the block's exception goes on unchanged
        assert raised is exc
    return runstatus.read(str(folder))


def test_a_finished_run_and_its_last_checkpoint(tmp_path):
    rolling = [str(tmp_path / "cpc_e1_s10.ckpt"), str(tmp_path / "cpc_e2_s20.ckpt")]
    status = _ended(tmp_path, checkpoints=lambda folder: rolling if folder == str(tmp_path) else [])
    assert status["state"] == "finished" and status["exit_code"] == 0 and status["error"] is None
    assert status["last_checkpoint"] == rolling[-1] and status["pid"] == os.getpid()
    assert status["run_dir"] == str(tmp_path) and (status["rank"], status["group_size"]) == (0, 1)
    assert status["started"] <= status["ended"]
    assert sorted(os.listdir(tmp_path)) == [runstatus.STATUS_NAME]  # written atomically: nothing beside it


@pytest.mark.parametrize("exc, state, code, peer", [
    (CPCError("config key 'seed' must be an integer\nsecond line"), "failed", 2, False),
    (_Stopped("stopped by SIGTERM at epoch 1 step 5"), "interrupted", 143, False),
    (KeyboardInterrupt(), "interrupted", 130, False),
    (RuntimeError("a framework error"), "failed", 1, False),
    (PeerStopped("rank 1 of 2: AllReduce with the other ranks failed"), "failed", 2, True),
])
def test_how_a_run_ended(tmp_path, exc, state, code, peer):
    status = _ended(tmp_path, exc)
    assert (status["state"], status["exit_code"], status["peer_stopped"]) == (state, code, peer)
    if isinstance(exc, CPCError):
        assert status["error"] == str(exc).splitlines()[0]


def test_a_lost_peer_in_training_is_recorded_as_a_consequence(tmp_path):
    """The real guard around training's collectives raises what the status marks peer_stopped."""
    from src.train.distributed import collective_guard
    kernel = RuntimeError("Launch kernel failed: Default/AllReduce-op0")
    folder = tmp_path / "rank_1"
    folder.mkdir()
    with pytest.raises(CPCError):
        with runstatus.run_status(str(folder), 1, 2), collective_guard(1, 2):
            raise kernel
    status = runstatus.read(str(folder))
    assert status["state"] == "failed" and status["peer_stopped"] and status["error"].startswith("rank 1 of 2:")


def test_an_unreadable_status_is_no_status(tmp_path):
    assert runstatus.read(str(tmp_path)) is None
    (tmp_path / runstatus.STATUS_NAME).write_text("{half")
    assert runstatus.read(str(tmp_path)) is None


def _job(tmp_path):
    """A run folder of a 3-rank job: rank 0 stopped because a peer had (first), rank 1 failed with its
    own error, rank 2 was killed (its status stays running); each rank with its launcher's log."""
    run = tmp_path / "run"
    logs = tmp_path / "msrun_logs"
    logs.mkdir()
    for rank in range(3):
        (logs / f"worker_{rank}.log").write_text("")
    _ended(run, PeerStopped("rank 0 of 3: AllReduce with the other ranks failed"), 0, 3,
           stdout=str(logs / "worker_0.log"))
    _ended(run / "rank_1", CPCError("loss became nan at epoch 1 step 4"), 1, 3, stdout=str(logs / "worker_1.log"))
    (run / "rank_2").mkdir()
    killed = runstatus.start(str(run / "rank_2"), 2, 3)
    runstatus.write(str(run / "rank_2"), dict(killed, pid=4711, stdout=str(logs / "worker_2.log")))
    return run, sorted(str(p) for p in logs.iterdir())


def _msrun_line(pid, code):
    """msrun's own report of a worker that ended abnormally, from the f-string in msrun's source."""
    import mindspore.parallel.cluster.process_entity._api as api
    with open(api.__file__, encoding="utf-8") as handle:
        template = re.search(r'f"(Worker process \{p\.pid\} exit with exception\. Error code: \{ret_code\}\.)"',
                             handle.read()).group(1)
    return template.replace("{p.pid}", str(pid)).replace("{ret_code}", str(code))


def test_a_worker_msrun_saw_killed_is_named_by_its_rank(tmp_path):
    run, logs = _job(tmp_path)
    msrun_log = tmp_path / "msrun.log"
    msrun_log.write_text(f"[ERROR] ME(1:2,MainProcess) [_api.py:365] {_msrun_line(4711, -9)}\n")
    line = jobstatus.explain(str(run), logs, msrun_log=str(msrun_log))
    assert line.startswith(f"rank 2 (pid 4711, log {logs[2]}) was lost: it ended by signal 9 (SIGKILL)")
    msrun_log.write_text(_msrun_line(4711, 2) + "\n")  # an exit code of its own: not a loss
    assert jobstatus.lost_worker(str(msrun_log), jobstatus.rank_statuses(str(run))) is None


def test_a_cause_is_named_before_a_consequence_that_stopped_first(tmp_path):
    run, logs = _job(tmp_path)
    statuses = {s["rank"]: s for s in jobstatus.rank_statuses(str(run))}
    assert statuses[0]["ended"] < statuses[1]["ended"]  # the consequence stopped first
    assert jobstatus.explain(str(run), logs) == f"first failing rank 1 ({logs[1]}): loss became nan at epoch 1 step 4"


def test_the_scheduler_speaks_before_a_consequence(tmp_path):
    run, logs = _job(tmp_path)
    os.remove(run / "rank_1" / runstatus.STATUS_NAME)  # the cause was on another machine
    scheduler = tmp_path / "scheduler.log"
    scheduler.write_text("[WARNING] a MindSpore line\nerror: msrun's scheduler: the job lost rank(s) 1\n")
    said = jobstatus.explain(str(run), logs, scheduler_log=str(scheduler))
    assert said == "msrun's scheduler: the job lost rank(s) 1"
    consequence = jobstatus.explain(str(run), logs)
    assert consequence == f"first failing rank 0 ({logs[0]}): rank 0 of 3: AllReduce with the other ranks failed"


def test_a_rank_that_failed_before_writing_a_status_speaks_through_its_log(tmp_path):
    """A bad config fails every rank before it writes anything: their logs' error lines, first stopped
    first; the log of a rank that has a status is never read (its status says it)."""
    run, logs = _job(tmp_path)
    early = tmp_path / "worker_3.log"
    early.write_text("[WARNING] noise\nerror: config key 'seed' must be <= 4294967295\n")
    later = tmp_path / "worker_4.log"
    later.write_text("error: MNIST file not found\n")
    os.utime(early, (1, 1))
    with open(logs[0], "w", encoding="utf-8") as handle:  # rank 0's own line: its status speaks for it
        handle.write("error: rank 0 of 3: AllReduce with the other ranks failed\n")
    os.utime(logs[0], (0, 0))
    os.remove(run / "rank_1" / runstatus.STATUS_NAME)
    assert jobstatus.explain(str(run), [str(later), logs[0], str(early)]) == (
        f"first failing rank ({early}): config key 'seed' must be <= 4294967295")


def test_statuses_of_an_earlier_launch_are_not_read(tmp_path, capsys):
    run, logs = _job(tmp_path)
    since = max(s["started"] for s in jobstatus.rank_statuses(str(run)))
    later = jobstatus._seconds(since) + 1
    assert jobstatus.rank_statuses(str(run), later) == []
    assert run_status.main(["why", str(run), "--since", str(later)]) == 1 and capsys.readouterr().err == ""
    assert run_status.main(["why", str(run), "--since", "0", *logs]) == 0
    assert capsys.readouterr().err == f"error: first failing rank 1 ({logs[1]}): loss became nan at epoch 1 step 4\n"


def test_the_status_file_is_json_a_shell_can_read(tmp_path):
    status = _ended(tmp_path, CPCError("bad"))
    with open(tmp_path / runstatus.STATUS_NAME, encoding="utf-8") as handle:
        assert json.load(handle) == status
    assert set(status) >= {"state", "exit_code", "error", "last_checkpoint", "run_dir", "rank", "pid", "host"}


def test_the_summary_a_script_prints_is_of_this_launch_only(tmp_path, capsys):
    status = _ended(tmp_path, _Stopped("stopped by SIGTERM at epoch 1 step 5"),
                    checkpoints=lambda folder: [os.path.join(folder, "cpc_e1_s5.ckpt")])
    assert run_status.main(["summary", str(tmp_path)]) == 0
    assert capsys.readouterr().out == (f"run status: interrupted (exit 143): stopped by SIGTERM at epoch 1 step 5; "
                                       f"last checkpoint {tmp_path / 'cpc_e1_s5.ckpt'}\n")
    later = jobstatus._seconds(status["started"]) + 1  # a launch that failed before writing its own
    assert run_status.main(["summary", str(tmp_path), "--since", str(later)]) == 1 and capsys.readouterr().out == ""
    assert run_status.main(["summary", str(tmp_path / "none")]) == 1
