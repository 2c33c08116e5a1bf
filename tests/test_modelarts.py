"""ModelArts jobs (src/utils/modelarts.py) with a stand-in moxing that copies between local folders:
data and an earlier job's checkpoints in before the run, the output folder out after it (also when
it fails), by the first device of each node only; without moxing, one line and nothing written."""
import json
import os
import sys

import pytest

from src.config import namespace
from src.utils import modelarts
from src.utils.errors import ConfigError, CPCError
from tests import fake_moxing
from tests.conftest import TINY, error_lines, fake_mnist, run_entry

RANK_VARIABLES = ("DEVICE_ID", "RANK_SIZE", "MS_WORKER_NUM", "MS_ROLE")


@pytest.fixture
def obs(tmp_path, monkeypatch):
    """The stand-in moxing imported, no launcher variables, and an 'OBS' with data and a checkpoint."""
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    calls = fake_moxing.install(monkeypatch, tmp_path / "site").calls
    (tmp_path / "obs" / "data").mkdir(parents=True)
    (tmp_path / "obs" / "data" / "digits.idx").write_bytes(b"digits")
    (tmp_path / "obs" / "job1").mkdir()
    (tmp_path / "obs" / "job1" / "cpc_e1_s5.ckpt").write_bytes(b"weights")
    return tmp_path, calls


def _cfg(tmp, **keys):
    return namespace(enable_modelarts=True, data_url=str(tmp / "obs" / "data"), train_url=str(tmp / "obs" / "out"),
                     checkpoint_url=str(tmp / "obs" / "job1"), data_path=str(tmp / "cache" / "data"),
                     output_path=str(tmp / "cache" / "train"), **keys)


def _write_results(cfg):
    """What a run writes: a log and a checkpoint in output_path, and one in a rank's subfolder."""
    os.makedirs(os.path.join(cfg.output_path, "rank_1"), exist_ok=True)
    for name in ("train.log", "cpc_best.ckpt", os.path.join("rank_1", "train.log")):
        with open(os.path.join(cfg.output_path, name), "w", encoding="utf-8") as handle:
            handle.write(name)


def test_first_device_copies_data_and_checkpoints_in_and_results_out(obs):
    tmp, calls = obs
    seen = {}

    @modelarts.synced
    def run(cfg):
        seen["data"] = sorted(os.listdir(cfg.data_path))
        seen["resumable"] = os.path.isfile(os.path.join(cfg.output_path, "cpc_e1_s5.ckpt"))
        _write_results(cfg)
        return "done"

    assert run(_cfg(tmp)) == "done"
    assert seen == {"data": ["digits.idx"], "resumable": True}
    out = tmp / "obs" / "out"
    assert (out / "train.log").read_text() == "train.log" and (out / "cpc_best.ckpt").is_file()
    assert (out / "rank_1" / "train.log").is_file()  # every rank's folder is inside output_path
    assert [dst for _, dst in calls] == [str(tmp / "cache" / "data"), str(tmp / "cache" / "train"), str(out)]


def test_results_are_copied_out_when_the_run_fails(obs):
    tmp, _ = obs

    @modelarts.synced
    def run(cfg):
        _write_results(cfg)
        raise CPCError("loss is NaN")

    with pytest.raises(CPCError, match="NaN"):
        run(_cfg(tmp))
    assert (tmp / "obs" / "out" / "train.log").is_file()


def test_other_ranks_of_a_node_wait_for_the_first_and_copy_nothing(obs, monkeypatch):
    tmp, calls = obs
    monkeypatch.setenv("RANK_SIZE", "2")
    monkeypatch.setenv("DEVICE_ID", "1")
    monkeypatch.setattr(modelarts, "SYNC_TIMEOUT", 0.2)
    monkeypatch.setattr(modelarts, "SYNC_POLL", 0.05)
    ran = []
    run = modelarts.synced(lambda cfg: ran.append(cfg.data_path))
    with pytest.raises(CPCError, match="did not finish copying"):  # the first device has not copied yet
        run(_cfg(tmp))
    for local in ("data", "train"):  # what the first device writes when its copy is done
        (tmp / "cache").mkdir(exist_ok=True)
        (tmp / "cache" / (local + modelarts.SYNC_SUFFIX)).write_text("")
    run(_cfg(tmp))
    assert ran == [str(tmp / "cache" / "data")] and calls == []
    assert not (tmp / "obs" / "out").exists()


@pytest.mark.parametrize("env, first", [
    ({}, True), ({"DEVICE_ID": "3", "RANK_SIZE": "16"}, False), ({"DEVICE_ID": "8", "RANK_SIZE": "16"}, True),
    ({"DEVICE_ID": "1", "MS_WORKER_NUM": "2", "MS_ROLE": "MS_WORKER"}, False),
    ({"MS_ROLE": "MS_SCHED"}, False), ({"DEVICE_ID": "5", "RANK_SIZE": "1"}, True)])
def test_first_device_of_node(env, first):
    assert modelarts.first_device_of_node(env) is first


def test_off_runs_as_is_without_moxing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "moxing", None)  # import moxing raises ImportError
    run = modelarts.synced(lambda cfg: "ran")
    assert run(namespace(output_path=str(tmp_path / "o"), data_url="obs://x")) == "ran"


def test_missing_moxing_or_train_url_is_refused_before_writing(tmp_path, monkeypatch, capsys):
    import train
    from src.utils.errors import run_main
    monkeypatch.setitem(sys.modules, "moxing", None)
    out = tmp_path / "out"
    for extra, message in ((["--train_url", "obs://bucket/out"], "needs the moxing package"),
                           ([], "needs train_url")):
        with pytest.raises(SystemExit) as stop:
            run_main(train.main, ["--config_path", TINY, "--output_path", str(out), "--enable_modelarts", "true",
                                  "--data_url", "obs://bucket/mnist"] + extra)
        assert stop.value.code == 2
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
        assert not out.exists()
    with pytest.raises(ConfigError, match="moxing"):
        modelarts.import_moxing()


@pytest.mark.slow
def test_train_py_on_modelarts_takes_data_in_and_puts_logs_and_checkpoints_out(tmp_path):
    data = tmp_path / "obs" / "mnist"
    fake_mnist(str(data), 10020)
    site, log = fake_moxing.write_package(str(tmp_path / "site")), tmp_path / "moxing.log"
    out, local = tmp_path / "obs" / "train", tmp_path / "cache"
    proc = run_entry(["train.py", "--config_path", TINY, "--epoch_size", "1", "--steps_per_epoch", "2",
                      "--val_steps", "1", "--repr_eval", "false", "--enable_modelarts", "true",
                      "--data_url", str(data), "--data_path", str(local / "data"), "--train_url", str(out),
                      "--output_path", str(local / "train")],
                     env={"PYTHONPATH": site, "FAKE_MOXING_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(local / "data")) == sorted(os.listdir(data))
    for name in ("train.log", "metrics.json", "config.yaml", "cpc_best.ckpt", "cpc_last.ckpt"):
        assert (out / name).is_file(), name
    with open(out / "metrics.json", encoding="utf-8") as handle:
        assert len(json.load(handle)["history"]) == 1
    assert log.read_text().splitlines() == [f"{data} -> {local / 'data'}", f"{local / 'train'} -> {out}"]


def test_a_failed_copy_is_one_error_naming_both_ends(obs):
    tmp, _ = obs
    cfg = _cfg(tmp)
    cfg.data_url, cfg.checkpoint_url = str(tmp / "obs" / "no_such_folder"), ""
    run = modelarts.synced(lambda cfg: pytest.fail("ran without its data"))
    with pytest.raises(CPCError, match=f"copying {cfg.data_url} -> .* failed: FileNotFoundError"):
        run(cfg)
