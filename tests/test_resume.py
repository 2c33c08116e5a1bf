"""Exact resume after kill -9, rolling checkpoints, determinism and the NaN stop."""
import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO, TINY, checkpoint_arrays, error_lines, run_entry

# No representation monitor: these tests compare training, which it never changes (tests/test_represent.py);
# its figures across a resume are compared by tests/test_multinode.py (whole per-epoch history).
FLAGS = ["--config_path", TINY, "--device_target", "CPU", "--epoch_size", "2", "--steps_per_epoch", "20",
         "--save_checkpoint_steps", "5", "--val_steps", "2", "--keep_checkpoint_max", "3", "--repr_eval", "False"]


def _metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    proc = run_entry(["train.py"] + FLAGS + ["--output_path", str(out)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


@pytest.mark.slow
def test_rolling_checkpoints_keep_the_newest(uninterrupted):
    names = sorted(p.name for p in uninterrupted.iterdir() if p.name.endswith(".ckpt"))
    # 2 epochs x 20 steps, saved every 5 steps and after each validation: the newest 3 remain
    assert names == ["cpc_best.ckpt", "cpc_e2_s35.ckpt", "cpc_e2_s40.ckpt", "cpc_e3_s40.ckpt",
                     "cpc_last.ckpt", "encoder_best.ckpt"]
    _, meta = checkpoint_arrays(uninterrupted / "cpc_e2_s35.ckpt")
    assert (meta["epoch"], meta["step"], meta["global_step"]) == (2, 15, 35)
    assert len(meta["history"]) == 1 and len(meta["epoch_losses"]) == 15 and len(meta["step_losses"]) == 35
    assert not [p for p in uninterrupted.iterdir() if ".tmp" in p.name]


@pytest.mark.slow  # starts a process
def test_kill_9_mid_epoch_then_resume_equals_uninterrupted(uninterrupted, tmp_path):
    args = [sys.executable, "train.py"] + FLAGS + ["--output_path", str(tmp_path)]
    proc = subprocess.Popen(args, cwd=REPO, env=dict(os.environ, GLOG_v="3"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = tmp_path / "cpc_e2_s25.ckpt"  # epoch 2, step 5 of 20
    deadline = time.monotonic() + 300
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.exists() and not (tmp_path / "metrics.json").exists(), "the run was not killed mid-epoch 2"

    resumed = run_entry(["train.py"] + FLAGS + ["--output_path", str(tmp_path), "--resume", "True"])
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout and "epoch 2, step" in resumed.stdout
    assert "epoch 1/2 step" not in resumed.stdout  # epoch 1 is not trained again
    whole, _ = checkpoint_arrays(uninterrupted / "cpc_last.ckpt")
    again, meta = checkpoint_arrays(tmp_path / "cpc_last.ckpt")
    assert whole.keys() == again.keys() and any(k.startswith("moment1.") for k in whole)
    for name in whole:  # weights, Adam moments, beta powers, global_step, learning rate
        np.testing.assert_array_equal(whole[name], again[name], err_msg=name)
    expected, got = _metrics(uninterrupted), _metrics(tmp_path)
    assert got["epochs"] == 2 and len(got["history"]) == 2 and got["resumed_from"]
    assert got["step_losses"] == expected["step_losses"]
    for before, after in zip(expected["history"], got["history"]):
        assert (before["loss"], before["val_loss"], before["val_accuracy"]) == \
               (after["loss"], after["val_loss"], after["val_accuracy"])


@pytest.mark.slow  # starts a process
def test_resume_without_checkpoint_starts_fresh_and_mismatch_is_refused(uninterrupted, tmp_path):
    proc = run_entry(["train.py", "--config_path", TINY, "--device_target", "CPU", "--epoch_size", "1",
                      "--steps_per_epoch", "2", "--val_steps", "1", "--output_path", str(tmp_path),
                      "--resume", "True"])
    assert proc.returncode == 0 and "no checkpoint to resume from" in proc.stdout, proc.stderr[-2000:]
    assert _metrics(tmp_path)["resumed_from"] is None
    proc = run_entry(["train.py"] + FLAGS + ["--output_path", str(tmp_path), "--resume", "True",
                      "--code_size", "16"])
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: cannot resume from") and "code_size 32 != 16" in lines[0]
    assert "steps_per_epoch 2 != 20" in lines[0]


def _losses(ms_cpu, tmp_path, seed):
    import mindspore as ms

    from src.config import parse_config
    from src.train.engine import train
    cfg = parse_config(["--config_path", TINY, "--seed", str(seed), "--output_path", str(tmp_path / str(seed)),
                        "--epoch_size", "1", "--steps_per_epoch", "20", "--val_steps", "1"])
    os.makedirs(cfg.output_path, exist_ok=True)
    ms.set_seed(seed)
    return train(cfg, "CPU")["step_losses"], checkpoint_arrays(os.path.join(cfg.output_path, "cpc_last.ckpt"))[0]


@pytest.mark.slow
def test_same_seed_same_losses_other_seed_other_losses(ms_cpu, tmp_path):
    """Also the premise of the exact-resume test: two runs end with bit-identical parameters."""
    first, params = _losses(ms_cpu, tmp_path / "a", 0)
    assert len(first) == 20 and all(np.isfinite(first))
    again, params_again = _losses(ms_cpu, tmp_path / "b", 0)
    assert again == first and params.keys() == params_again.keys()
    for name in params:  # weights and Adam state
        np.testing.assert_array_equal(params[name], params_again[name], err_msg=name)
    other, _ = _losses(ms_cpu, tmp_path / "c", 1)
    assert len(other) == 20 and other != first


@pytest.mark.slow
@pytest.mark.parametrize("bad_step, kept", [(7, "cpc_e1_s5.ckpt"), (3, None)])
def test_nan_loss_stops_naming_the_step_and_the_last_checkpoint(ms_cpu, tmp_path, monkeypatch, capsys,
                                                                 bad_step, kept):
    import train
    from src.train import callbacks
    from src.utils.errors import run_main
    real, calls = callbacks.take_loss, []

    def poisoned(loss_sum):
        calls.append(1)
        value = real(loss_sum)  # read (and clear) the device-side sum as training does
        return float("nan") if len(calls) == bad_step else value

    monkeypatch.setattr(callbacks, "take_loss", poisoned)
    logging.getLogger("cpc").handlers.clear()
    with pytest.raises(SystemExit) as stop:
        run_main(train.main, ["--config_path", TINY, "--device_target", "CPU", "--epoch_size", "1",
                              "--steps_per_epoch", "10", "--save_checkpoint_steps", "5", "--val_steps", "1",
                              "--output_path", str(tmp_path)])
    logging.getLogger("cpc").handlers.clear()  # they write to pytest's captured streams
    lines = error_lines(capsys.readouterr().err)
    assert stop.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: loss became nan at epoch 1 step {bad_step}; ")
    if kept:
        assert lines[0].endswith(f"the last good checkpoint is {tmp_path / kept}") and (tmp_path / kept).is_file()
    else:
        assert lines[0].endswith("no checkpoint was written before it")
        assert not list(tmp_path.glob("*.ckpt"))


@pytest.mark.slow  # starts a process
def test_resume_after_an_epochs_last_step_validates_it_and_trains_nothing_more(uninterrupted, tmp_path):
    """cpc_e2_s40 is written after epoch 2's last step, before its validation: resuming from it
    validates epoch 2 and ends, with the uninterrupted run's history (no extra epoch of steps)."""
    for name in ("cpc_e2_s35.ckpt", "cpc_e2_s40.ckpt"):
        (tmp_path / name).write_bytes((uninterrupted / name).read_bytes())
    resumed = run_entry(["train.py"] + FLAGS + ["--output_path", str(tmp_path), "--resume", "True"])
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "epoch 2's steps are done: validating it" in resumed.stdout
    assert "epoch 2/2 step" not in resumed.stdout and "epoch 3/2" not in resumed.stdout  # no step trained
    expected, got = _metrics(uninterrupted), _metrics(tmp_path)
    assert got["step_losses"] == expected["step_losses"] and len(got["step_losses"]) == 40
    assert [h["val_accuracy"] for h in got["history"]] == [h["val_accuracy"] for h in expected["history"]]
    assert got["history"][1]["loss"] == expected["history"][1]["loss"]
    whole, _ = checkpoint_arrays(uninterrupted / "cpc_last.ckpt")
    again, _ = checkpoint_arrays(tmp_path / "cpc_last.ckpt")
    for name in whole:
        np.testing.assert_array_equal(whole[name], again[name], err_msg=name)


@pytest.mark.slow  # starts a process
def test_resume_off_a_sink_boundary_is_refused(uninterrupted, tmp_path):
    """cpc_e2_s35 is epoch 2, step 15; with save_checkpoint_steps 10 the sink size is 10."""
    (tmp_path / "cpc_e2_s35.ckpt").write_bytes((uninterrupted / "cpc_e2_s35.ckpt").read_bytes())
    proc = run_entry(["train.py"] + FLAGS + ["--output_path", str(tmp_path), "--resume", "True",
                                             "--save_checkpoint_steps", "10"])
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "saved at step 15 of an epoch, which is not a multiple of the sink size 10" in lines[0]


def _start(tmp_path, *extra):
    args = [sys.executable, "train.py"] + FLAGS + ["--output_path", str(tmp_path), *extra]
    return subprocess.Popen(args, cwd=REPO, env=dict(os.environ, GLOG_v="3"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, seconds=300):
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.exists(), "the run did not get that far"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow  # starts a process
def test_stop_signal_saves_then_resume_equals_uninterrupted(uninterrupted, tmp_path, sig):
    """A scheduler's SIGTERM (or Ctrl-C's SIGINT) mid-epoch 2: a rolling checkpoint at the end of the
    current pass (sink size 5 here), one line with the resume command, exit 128 + signal; resuming
    ends bit-identical to the uninterrupted run."""
    proc = _start(tmp_path)
    _wait_for(tmp_path / "cpc_e2_s25.ckpt", proc)
    os.kill(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=300)
    lines = error_lines(stderr)
    # MindSpore's runtime turns a SIGINT that arrives while a graph runs into SIGTERM (most of a step)
    seen = {signal.SIGINT: (signal.SIGINT, signal.SIGTERM), signal.SIGTERM: (signal.SIGTERM,)}[sig]
    assert proc.returncode in [128 + s for s in seen] and len(lines) == 1, stderr[-2000:]
    name = signal.Signals(proc.returncode - 128).name
    assert lines[0].startswith(f"error: stopped by {name} at epoch 2 step ") and "--resume True" in lines[0]
    step = int(lines[0].split(" step ")[1].split(";")[0])
    saved = tmp_path / f"cpc_e2_s{20 + step}.ckpt"
    assert step % 5 == 0 and 5 <= step <= 20 and saved.is_file(), lines[0]
    assert f"checkpoint {saved}; to continue: python train.py " in stdout and stdout.rstrip().endswith("--resume True")
    assert not (tmp_path / "metrics.json").exists() and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]

    resumed = run_entry(["train.py"] + FLAGS + ["--output_path", str(tmp_path), "--resume", "True"])
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resuming from {saved}" in resumed.stdout
    whole, _ = checkpoint_arrays(uninterrupted / "cpc_last.ckpt")
    again, _ = checkpoint_arrays(tmp_path / "cpc_last.ckpt")
    for name in whole:
        np.testing.assert_array_equal(whole[name], again[name], err_msg=name)
    assert _metrics(tmp_path)["step_losses"] == _metrics(uninterrupted)["step_losses"]


@pytest.mark.slow
def test_second_signal_stops_at_once(tmp_path):
    """Passes of 200 steps (seconds on CPU): the second SIGTERM comes long before the pass ends."""
    proc = _start(tmp_path, "--steps_per_epoch", "200", "--log_interval", "200", "--save_checkpoint_steps", "0")
    log = tmp_path / "train.log"
    _wait_for(log, proc)
    while "training sequence CPC (binary loss)" not in log.read_text() and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.5)  # two signals sent back to back would arrive as one
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    lines = error_lines(stderr)
    assert proc.returncode == 128 + signal.SIGTERM and len(lines) == 1, stderr[-2000:]
    assert lines[0].startswith("error: SIGTERM again: stopped at once; the last checkpoint is ")


@pytest.mark.slow  # starts a process
def test_second_run_into_a_busy_folder_is_refused_and_a_killed_run_leaves_no_lock(tmp_path):
    long = ["--steps_per_epoch", "200"]  # still training when the second run gets to its lock
    first = _start(tmp_path, *long)
    _wait_for(tmp_path / "cpc_e1_s5.ckpt", first)
    config_before = (tmp_path / "config.yaml").read_bytes()
    second = run_entry(["train.py"] + FLAGS + long + ["--output_path", str(tmp_path), "--seed", "7"])
    assert first.poll() is None, "the first run ended before the second one started"
    lines = error_lines(second.stderr)
    assert second.returncode == 2 and len(lines) == 1, second.stderr[-2000:]
    assert lines[0] == (f"error: output_path {tmp_path} is in use by another training run (pid {first.pid}); "
                        f"wait for it to end, or choose another output_path")
    assert (tmp_path / "config.yaml").read_bytes() == config_before  # the second run wrote nothing
    first.kill()  # kill -9: its lock goes with it
    first.communicate()
    third = run_entry(["train.py"] + FLAGS + long + ["--output_path", str(tmp_path), "--resume", "True",
                                                     "--epoch_size", "1"])
    assert third.returncode == 0 and "resuming from" in third.stdout, third.stderr[-2000:]


# ------------------------------------------------ nothing lost or silently changed on re-runs

def _copy(uninterrupted, tmp_path):
    """A copy of the finished 2-epoch run (the module's fixture stays as it is)."""
    import shutil
    return shutil.copytree(uninterrupted, tmp_path / "run")


def _snapshot(folder):
    """Every file's bytes but the log, the lock and the run status (which say how the last run that took
    the folder went: its pid, its refusal)."""
    return {p.name: p.read_bytes() for p in folder.iterdir()
            if p.is_file() and p.name not in ("train.log", ".train.lock", "run_status.json")}


def _refused(args):
    proc = run_entry(["train.py"] + FLAGS + args)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("extra, message", [
    (["--resume", "True", "--code_size", "16"], "cannot resume from .*code_size 32 != 16"),
    (["--resume", "True", "--epoch_size", "1"],
     r"cannot resume from .*cpc_e3_s40\.ckpt: it has trained 2 epochs, more than epoch_size 1; "
     r"resume with --epoch_size 2 or more$"),
    ([], r"output_path .*run holds 3 rolling checkpoints of an earlier run \(newest cpc_e3_s40\.ckpt\): "
         r"continue it with --resume True"),
])
def test_a_refused_rerun_writes_nothing(uninterrupted, tmp_path, extra, message):
    """A changed model key, an epoch_size below the epochs done, a fresh run over a resumable state:
    one line, and config.yaml, metrics.json and every checkpoint exactly as they were."""
    import re
    run = _copy(uninterrupted, tmp_path)
    before = _snapshot(run)
    line = _refused(["--output_path", str(run)] + extra)
    assert re.search(message, line), line
    assert _snapshot(run) == before


@pytest.mark.slow
def test_resume_with_a_new_learning_rate_applies_and_logs_it(uninterrupted, tmp_path):
    """The NaN advice (docs/troubleshooting.md): --resume True --learning_rate LOWER continues at LOWER."""
    run = _copy(uninterrupted, tmp_path)
    for name in ("cpc_e2_s40.ckpt", "cpc_e3_s40.ckpt"):  # back to epoch 2, step 15
        os.remove(run / name)
    proc = run_entry(["train.py"] + FLAGS + ["--output_path", str(run), "--resume", "True",
                                             "--learning_rate", "5e-4"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "learning_rate 5.00e-04 given (the run started at 1.00e-03): continuing at 5.00e-04" in proc.stdout
    assert "resuming from " + str(run / "cpc_e2_s35.ckpt") in proc.stdout and "lr 5.00e-04" in proc.stdout
    history = _metrics(run)["history"]
    assert [h["learning_rate"] for h in history] == [1e-3, 5e-4]
    params, _ = checkpoint_arrays(run / "cpc_last.ckpt")
    assert np.float32(params["learning_rate"]) == np.float32(5e-4)


def test_a_new_learning_rate_is_told_from_the_scheduled_one():
    """Only a rate other than the run's starting rate replaces the checkpoint's scheduled rate (a
    plateau reduction is kept); a checkpoint from before the starting rate was stored gives epoch 1's."""
    from src.config import namespace
    from src.train.resume import _apply_new_learning_rate
    from src.train.schedule import PlateauLR
    for meta in ({"learning_rate": 1e-3, "history": []}, {"history": [{"learning_rate": 1e-3}]}):
        kept = PlateauLR(1e-3 / 3, 1 / 3, 2, 1e-4)
        _apply_new_learning_rate(namespace(learning_rate=1e-3), meta, kept)
        assert kept.lr == 1e-3 / 3
        lowered = PlateauLR(1e-3 / 3, 1 / 3, 2, 1e-4)
        _apply_new_learning_rate(namespace(learning_rate=2e-4), meta, lowered)
        assert lowered.lr == 2e-4


def _resume_with(folder, newest_common):
    """resume.start on `folder` as rank k of a data-parallel job whose ranks agree on newest_common(mine)."""
    from src.config import model_hparams, parse_config
    from src.model.build import build_cpc
    from src.train import resume
    from src.train.schedule import PlateauLR
    from src.train.trainer import build_train_cell
    cfg = parse_config(FLAGS + ["--output_path", str(folder), "--resume", "True"])
    hparams = model_hparams(cfg)
    train_cell, optimizer = build_train_cell(build_cpc(hparams, "cpu"), cfg, "CPU")
    schedule = PlateauLR(cfg.learning_rate, cfg.lr_factor, cfg.lr_patience, cfg.lr_min)
    return resume.start(cfg, hparams, schedule, train_cell, optimizer, newest_common)


@pytest.mark.slow
def test_data_parallel_resume_takes_the_newest_step_every_rank_holds(ms_cpu, uninterrupted, tmp_path):
    """A worker killed during a save holds one checkpoint fewer than the others: every rank must
    resume from the newest step all of them hold, or the ranks diverge."""
    from src.utils.errors import CPCError
    folder = _copy(uninterrupted, tmp_path)
    asked = []
    state = _resume_with(folder, lambda steps: asked.append(steps) or 35)  # another rank's newest is step 35
    assert asked == [[40, 40, 35]] and state.global_step == 35 and state.resumed_from.endswith("cpc_e2_s35.ckpt")
    assert _resume_with(folder, lambda steps: max(steps)).resumed_from.endswith("cpc_e3_s40.ckpt")  # all agree
    for common, message in ((30, "the ranks agreed on global step 30"),
                            (-1, "no checkpoint step is held by every rank")):
        with pytest.raises(CPCError, match=message):
            _resume_with(folder, lambda steps, common=common: common)
