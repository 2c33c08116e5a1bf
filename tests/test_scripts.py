"""What every scripts/run_*.sh shares (slow tier: each test starts bash): DEVICE_TARGET as the first
argument, MindSpore's log level as a setting (GLOG_v, default 2: warnings shown), and a resume through
run_standalone_train.sh that stays in the run it continues, with train.py's run_status.json there."""
import glob
import json
import os
import stat
import subprocess

import pytest

from src.utils import runstatus
from tests.conftest import REPO, TINY, error_lines, run_entry

pytestmark = pytest.mark.slow

# each script that takes a device, with arguments after DEVICE_TARGET that would otherwise be accepted
DEVICE_SCRIPTS = {
    "run_standalone_train.sh": [TINY],
    "run_eval.sh": [TINY],  # any existing file stands for CKPT_PATH: DEVICE_TARGET is checked first
    "run_ablation.sh": [TINY],
    "run_benchmark.sh": [TINY],
    "run_device_check.sh": [],
    "run_distribute_train.sh": ["2", TINY],
    "run_infer_310.sh": [TINY],
    "run_method_study.sh": [],
}
NO_DEVICE = {"run_infer_bench.sh"}  # CPU only, nothing to choose


def test_every_script_is_in_the_table():
    scripts = {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "scripts", "run_*.sh"))}
    assert scripts == set(DEVICE_SCRIPTS) | NO_DEVICE


@pytest.mark.parametrize("script", sorted(DEVICE_SCRIPTS))
def test_device_target_is_the_first_argument(tmp_path, script):
    path = f"scripts/{script}"
    usage = run_entry(["bash", path, "--help"]).stdout
    assert usage.startswith(f"usage: bash {path} ") and usage.split()[3].strip("[]") in (
        "DEVICE_TARGET", "Ascend"), usage
    runs = tmp_path / "runs"
    proc = run_entry(["bash", path, "TPU", *DEVICE_SCRIPTS[script]], env={"RUNS_DIR": str(runs)})
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and lines[-1].startswith("error: DEVICE_TARGET must be "), lines
    assert lines[-1].endswith("got 'TPU' (the first argument)") and not runs.exists()


def _recording_python(tmp_path):
    """A stand-in for python: records its environment and arguments when it is asked to run train.py."""
    record = tmp_path / "python.env"
    stub = tmp_path / "python"
    stub.write_text(f'#!/bin/bash\n[ "$1" != train.py ] || {{ env; echo "ARGS=$*"; }} > "{record}"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return str(stub), record


def _script(args, env):
    """bash with exactly `env` over this environment minus GLOG_v (run_entry would set it)."""
    base = {k: v for k, v in os.environ.items() if k != "GLOG_v"}
    return subprocess.run(["bash", *args], cwd=REPO, env=dict(base, **env), capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("given, seen", [(None, "2"), ("1", "1"), ("3", "3")])
def test_mindspore_log_level_defaults_to_warnings_and_is_a_setting(tmp_path, given, seen):
    stub, record = _recording_python(tmp_path)
    env = {"PYTHON": stub, "RUNS_DIR": str(tmp_path / "runs"), **({"GLOG_v": given} if given else {})}
    proc = _script(["scripts/run_standalone_train.sh", "CPU", TINY], env)
    assert proc.returncode == 0, proc.stderr
    recorded = dict(line.split("=", 1) for line in record.read_text().splitlines() if "=" in line)
    assert recorded["GLOG_v"] == seen and recorded["ARGS"].startswith("train.py ")


@pytest.mark.parametrize("value", ["5", "warning", "-1"])
def test_a_bad_log_level_is_refused_before_anything(tmp_path, value):
    stub, record = _recording_python(tmp_path)
    runs = tmp_path / "runs"
    proc = _script(["scripts/run_standalone_train.sh", "CPU", TINY], {"PYTHON": stub, "RUNS_DIR": str(runs),
                                                                     "GLOG_v": value})
    assert proc.returncode == 2 and error_lines(proc.stderr) == [
        f"error: GLOG_v (MindSpore's log level) must be 0 (debug), 1 (info), 2 (warnings), 3 (errors) or 4 "
        f"(critical), got '{value}'"]
    assert not runs.exists() and not record.exists()


def test_two_names_for_the_run_folder_are_refused(tmp_path):
    stub, record = _recording_python(tmp_path)
    proc = run_entry(["bash", "scripts/run_standalone_train.sh", "CPU", TINY, "", "0", "--output_path",
                      str(tmp_path / "a")], env={"PYTHON": stub, "RUN_DIR": str(tmp_path / "b")})
    assert proc.returncode == 2 and "name two run folders" in error_lines(proc.stderr)[-1]
    assert not record.exists() and not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


SHORT = ["--steps_per_epoch", "10", "--val_steps", "2", "--log_interval", "5", "--repr_eval", "false"]


def test_a_resume_through_the_script_stays_in_its_run(tmp_path):
    runs = tmp_path / "runs"
    script = ["bash", "scripts/run_standalone_train.sh", "CPU", TINY, "", "0"]
    first = run_entry(script + SHORT + ["--epoch_size", "1"], env={"RUNS_DIR": str(runs)})
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    (run_dir,) = runs.iterdir()
    status = runstatus.read(str(run_dir))
    assert (status["state"], status["exit_code"], status["rank"]) == ("finished", 0, 0)
    assert status["run_dir"] == str(run_dir)
    assert os.path.dirname(status["last_checkpoint"]) == str(run_dir)

    # a resume refused inside training (other settings than the checkpoint's): its status says so
    refused = run_entry(script + SHORT + ["--epoch_size", "2", "--resume", "True", "--batch_size", "8",
                                          "--output_path", str(run_dir)], env={"RUNS_DIR": str(runs)})
    status = runstatus.read(str(run_dir))
    assert refused.returncode == 2 and (status["state"], status["exit_code"]) == ("failed", 2)
    said = [line for line in refused.stdout.splitlines() if line.startswith("error: ")]  # the script tees stderr
    assert said == [f"error: {status['error']}"] and "other settings" in status["error"]
    summary = f"run status: failed (exit 2): {status['error']}; last checkpoint {status['last_checkpoint']}"
    assert summary in refused.stdout

    relative = os.path.relpath(run_dir, tmp_path)  # the flag as a user types it, from where they are
    again = subprocess.run(["bash", os.path.join(REPO, script[1])] + script[2:] + SHORT
                           + ["--epoch_size", "2", "--resume", "True", f"--output_path={relative}"],
                           cwd=tmp_path, env=dict(os.environ, GLOG_v="3", RUNS_DIR=str(runs)),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert list(runs.iterdir()) == [run_dir] and f"run folder: {run_dir} (exit 0)" in again.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["resumed_from"].startswith(str(run_dir))
    status = runstatus.read(str(run_dir))
    assert f"run status: finished (exit 0); last checkpoint {status['last_checkpoint']}\n" in again.stdout
    log = (run_dir / "stdout.log").read_text()  # every launch's output, in order
    assert log.count("done: val_acc") == 2 and log.index("other settings") < log.rindex("done: val_acc")
    assert (run_dir / "env.log").read_text().count("RUNS_DIR=") == 3


def test_the_method_study_runs_every_method_under_one_budget_then_the_table(tmp_path):
    """A stand-in python records the commands: each method trains for its epochs x SCALE, its last
    checkpoint is studied with the three heads over three seeds, and one table gathers them all."""
    log = tmp_path / "commands"
    stub = tmp_path / "python"
    stub.write_text(f'#!/bin/bash\necho "$*" >> "{log}"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "study"
    proc = _script(["scripts/run_method_study.sh", "CPU", str(out), "2"], {"PYTHON": str(stub)})
    assert proc.returncode == 0, proc.stderr
    commands = log.read_text().splitlines()
    trains = [c for c in commands if c.startswith("train.py")]
    evals = [c for c in commands if c.startswith("eval.py")]
    assert len(trains) == len(evals) == 8 and commands[-1].startswith("-m tools.compare_methods")
    assert all("--epoch_size 6 " in c or "--epoch_size 8 " in c for c in trains), trains
    for train, evaluation in zip(trains, evals):
        run = train.split("--output_path ")[1]
        assert f"--ckpt_path {run}/cpc_last.ckpt" in evaluation
        assert "--methods cpc_linear,cpc_logistic,cpc_mlp" in evaluation and "--seeds 0,1,2" in evaluation
    assert commands[-1].count("--study ") == 8


def test_the_method_study_refuses_a_bad_scale_before_anything(tmp_path):
    proc = _script(["scripts/run_method_study.sh", "CPU", str(tmp_path / "study"), "0.5"], {})
    assert proc.returncode == 2
    assert error_lines(proc.stderr)[-1] == "error: SCALE must be a whole number >= 1, got '0.5'"
    assert not (tmp_path / "study").exists()
