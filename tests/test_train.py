"""Training learns, writes what it promises; checkpoint -> eval round trip; checkpoint errors."""
import errno
import json
import logging
import math
import os

import mindspore as ms
import numpy as np
import pytest

from src import checkpoint
from src.config import model_hparams, namespace, parse_config
from src.data.dataset import build_source
from src.eval.evaluate import evaluate
from src.model.build import build_cpc
from src.train.engine import train
from src.utils.atomic import WriteError
from src.utils.runlog import write_json
from tests.conftest import TINY, bare_checkpoint, error_lines, export_embedded_test_split, run_entry


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_tiny_config_learns_on_several_seeds(ms_cpu, tmp_path, seed):
    """The 0.693 trap: the loss must fall clearly below ln 2 within a few CPU seconds."""
    cfg = parse_config(["--config_path", TINY, "--seed", str(seed), "--output_path", str(tmp_path)])
    ms.set_seed(seed)
    metrics = train(cfg, "CPU")
    last = metrics["history"][-1]
    assert last["loss"] < 0.8 * math.log(2), metrics["history"]
    assert last["val_accuracy"] > 0.7, metrics["history"]


def test_run_writes_config_metrics_and_checkpoints(tiny_run):
    out, metrics = tiny_run
    cfg = parse_config(["--config_path", TINY])
    for name in ("config.yaml", "train.log", "metrics.json", "cpc_last.ckpt", "cpc_best.ckpt",
                 "encoder_best.ckpt", "training_curves.png"):
        assert (out / name).is_file(), name
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (metrics["dataset_sink_mode"], metrics["sink_size"], metrics["amp_level"]) == (False, 1, "O0")
    assert not [n for n in os.listdir(out) if "tmp" in n]  # no half-written file left behind
    assert metrics["steps"] == cfg.epoch_size * cfg.steps_per_epoch
    assert metrics["epochs"] == len(metrics["history"]) == cfg.epoch_size
    assert metrics["chance_accuracy"] == 0.5 and 0.5 < metrics["val_accuracy"] <= 1
    assert metrics["train_seconds"] > 0 and metrics["samples_per_second"] > 0
    params, meta = checkpoint.load(str(out / "cpc_best.ckpt"))
    assert meta["kind"] == "cpc" and meta["hparams"] == model_hparams(cfg)
    assert "moment1.encoder.dense.weight" in params  # optimizer state travels with the net
    enc_params, enc_meta = checkpoint.load(str(out / "encoder_best.ckpt"))
    assert enc_meta["kind"] == "encoder"
    assert all(name.startswith("encoder.") for name in enc_params)


def test_eval_round_trip_matches_in_process(ms_cpu, tiny_run, tmp_path):
    out, _ = tiny_run
    proc = run_entry(["eval.py", "--config_path", TINY, "--ckpt_path", str(out / "cpc_best.ckpt"),
                      "--output_path", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert set(result) >= {"test_accuracy", "chance_accuracy", "num_sequences"}
    cfg = parse_config(["--config_path", TINY])
    assert result["num_sequences"] == cfg.test_steps * cfg.batch_size
    net = build_cpc(model_hparams(cfg), "cpu")
    params, _ = checkpoint.load(str(out / "cpc_best.ckpt"))
    checkpoint.load_into(net, params, "cpc_best.ckpt")
    expected = evaluate(net, build_source(cfg, "test", cfg.test_steps))
    assert result["test_accuracy"] == pytest.approx(expected["accuracy"])
    assert len(result["test_accuracy_per_step"]) == len(result["test_loss_per_step"]) == cfg.predict_terms
    assert result["test_accuracy_per_step"] == pytest.approx(expected["accuracy_per_step"])
    assert result["test_accuracy"] > 0.6


def test_eval_on_t10k_only_folder(tiny_run, tmp_path):
    data = export_embedded_test_split(str(tmp_path / "mnist"))
    out, _ = tiny_run
    proc = run_entry(["eval.py", "--config_path", TINY, "--ckpt_path", str(out / "cpc_best.ckpt"),
                      "--data_path", data, "--output_path", str(tmp_path / "eval")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())
    assert result["data"] == data and result["test_accuracy"] > 0.6


def test_eval_rejects_bad_checkpoints(ms_cpu, tiny_run, tmp_path):
    out, _ = tiny_run
    bare = bare_checkpoint(tmp_path / "bare.ckpt")  # no hyper-parameters: the net is built from the config
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(os.urandom(2000))
    cases = [(bare, "does not fit the configured network .*encoder.embedding.weight \\(16, 256\\) != "
                    "net \\(32, 256\\)"),
             (str(corrupt), "cannot read checkpoint"),
             (str(out / "encoder_best.ckpt"), "holds only the encoder"),
             (str(tmp_path / "missing.ckpt"), "checkpoint not found")]
    for path, message in cases:
        proc = run_entry(["eval.py", "--config_path", TINY, "--ckpt_path", path,
                          "--output_path", str(tmp_path / "eval")])
        lines = error_lines(proc.stderr)
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
        assert __import__("re").search(message, lines[0]), lines[0]
        assert "Traceback" not in proc.stderr


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                   RuntimeError("Failed to save the checkpoint file")])
def test_a_full_disk_keeps_the_last_good_checkpoint(ms_cpu, tmp_path, monkeypatch, error):
    """A write that fails half way: one line, no temporary file, the earlier file intact and loadable."""
    net = build_cpc(model_hparams(namespace(image_size=28, color=False, padding="same")), "cpu")
    path = tmp_path / "cpc.ckpt"
    checkpoint.save(net, str(path), {"kind": "cpc", "epoch": 1})
    good = path.read_bytes()
    real = ms.save_checkpoint

    def broken(obj, tmp, **kwargs):
        real(obj, tmp, **kwargs)
        with open(tmp, "r+b") as handle:
            handle.truncate(1000)  # what a full disk leaves
        raise error

    monkeypatch.setattr(ms, "save_checkpoint", broken)
    with pytest.raises(WriteError) as err:
        checkpoint.save(net, str(path), {"kind": "cpc", "epoch": 2})
    assert str(err.value).startswith(f"cannot write checkpoint {path}: ") and "\n" not in str(err.value)
    assert os.listdir(tmp_path) == ["cpc.ckpt"] and path.read_bytes() == good
    assert checkpoint.load(str(path))[1]["epoch"] == 1


def test_a_full_disk_keeps_the_last_good_json(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(str(path), {"epochs": 1})
    monkeypatch.setattr(json, "dump", _disk_full)
    with pytest.raises(WriteError, match="cannot write JSON file .*metrics.json: No space left on device"):
        write_json(str(path), {"epochs": 2})
    assert os.listdir(tmp_path) == ["metrics.json"] and json.loads(path.read_text()) == {"epochs": 1}


@pytest.mark.slow  # starts a process
def test_training_on_a_full_disk_stops_with_one_line_and_resumes(ms_cpu, tmp_path, monkeypatch, capsys):
    """The disk fills while the third rolling checkpoint is written: exit 2, one line naming the
    file and the cause, no temporary file; the earlier checkpoints load and --resume continues."""
    import train
    from src.utils.errors import run_main
    flags = ["--config_path", TINY, "--device_target", "CPU", "--epoch_size", "1", "--steps_per_epoch", "20",
             "--save_checkpoint_steps", "5", "--val_steps", "1", "--output_path", str(tmp_path)]
    real, calls = ms.save_checkpoint, []

    def fills_up(obj, tmp, **kwargs):
        calls.append(tmp)
        real(obj, tmp, **kwargs)
        if len(calls) == 3:
            _disk_full()

    monkeypatch.setattr(ms, "save_checkpoint", fills_up)
    logging.getLogger("cpc").handlers.clear()
    with pytest.raises(SystemExit) as stop:
        run_main(train.main, flags)
    logging.getLogger("cpc").handlers.clear()
    lines = error_lines(capsys.readouterr().err)
    assert stop.value.code == 2 and lines == [
        f"error: cannot write checkpoint {tmp_path / 'cpc_e1_s15.ckpt'}: No space left on device"]
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["cpc_e1_s10.ckpt", "cpc_e1_s5.ckpt"]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    monkeypatch.setattr(ms, "save_checkpoint", real)
    proc = run_entry(["train.py"] + flags + ["--resume", "True"])
    assert proc.returncode == 0 and "resuming from " + str(tmp_path / "cpc_e1_s10.ckpt") in proc.stdout, \
        proc.stderr[-2000:]


def test_scripts(tiny_run, tmp_path):
    env = {"RUNS_DIR": str(tmp_path)}
    bad = run_entry(["bash", "scripts/run_standalone_train.sh", "TPU"], env=env)
    assert bad.returncode == 2 and "usage:" in bad.stderr and "DEVICE_TARGET" in bad.stderr
    missing = run_entry(["bash", "scripts/run_eval.sh", "CPU"], env=env)
    assert missing.returncode == 2 and "CKPT_PATH is required" in missing.stderr
    proc = run_entry(["bash", "scripts/run_standalone_train.sh", "CPU", "config/cpc_tiny.yaml", "", "0",
                      "--epoch_size", "1", "--steps_per_epoch", "3"], env=env)
    assert proc.returncode == 0, proc.stdout[-2000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("train_cpc_tiny_")]
    assert f"run folder: {run_dir}" in proc.stdout
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 3
    assert (run_dir / "cpc_best.ckpt").is_file() and f"run folder: {run_dir} (exit 0)" in proc.stdout
    ckpt = tiny_run[0] / "cpc_best.ckpt"  # a trained checkpoint: its accuracy says the script evaluated it
    proc = run_entry(["bash", "scripts/run_eval.sh", "CPU", str(ckpt), "config/cpc_tiny.yaml", ""], env=env)
    assert proc.returncode == 0, proc.stdout[-2000:]
    (eval_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("eval_")]
    result = json.loads((eval_dir / "eval_metrics.json").read_text())
    assert result["ckpt_path"] == str(ckpt) and result["test_accuracy"] > 0.6  # chance is 0.5
    assert f"run folder: {eval_dir} (exit 0)" in proc.stdout


@pytest.mark.parametrize("entry, message", [
    ("train.py", "MNIST file train-images-idx3-ubyte\\[.gz\\] not found in"),
    ("eval.py", "MNIST file t10k-images-idx3-ubyte\\[.gz\\] not found in"),
])
def test_bad_data_path_fails_before_writing(tiny_run, tmp_path, entry, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    out, _ = tiny_run
    args = [entry, "--config_path", TINY, "--data_path", str(empty), "--output_path", str(tmp_path / "o")]
    if entry == "eval.py":
        args += ["--ckpt_path", str(out / "cpc_best.ckpt")]
    proc = run_entry(args)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1])
def test_tiny_colour_task_learns_with_input_contrast(ms_cpu, tmp_path, seed):
    """The colour task (digits as inverted, colour-shifted background) learns within 300 steps."""
    cfg = parse_config(["--config_path", TINY, "--seed", str(seed), "--output_path", str(tmp_path),
                        "--image_size", "32", "--color", "true", "--padding", "valid",
                        "--input_contrast", "true"])
    ms.set_seed(seed)
    history = train(cfg, "CPU")["history"]
    assert history[-1]["loss"] < 0.85 * math.log(2), history
    assert max(h["val_accuracy"] for h in history) > 0.7, history


@pytest.mark.slow
def test_learning_rate_change_reaches_the_compiled_step(ms_cpu):
    """The plateau schedule sets optimizer.learning_rate between epochs: the graph must see it."""
    from src.train.trainer import build_train_cell
    cfg = parse_config(["--config_path", TINY])
    net = build_cpc(model_hparams(cfg), "cpu")
    cell, optimizer = build_train_cell(net, cfg, "CPU")
    cell.set_train()
    x, y, label = (ms.Tensor(a) for a in build_source(cfg, "train", 1)[0])
    cell(x, y, label)  # compiled with lr 1e-3
    optimizer.learning_rate.set_data(ms.Tensor(0.0, ms.float32))
    before = net.predictor.weight.asnumpy().copy()
    cell(x, y, label)
    np.testing.assert_array_equal(net.predictor.weight.asnumpy(), before)  # lr 0: nothing moves
    optimizer.learning_rate.set_data(ms.Tensor(1e-3, ms.float32))
    cell(x, y, label)
    assert not np.array_equal(net.predictor.weight.asnumpy(), before)


def test_pynative_mode_takes_the_same_steps_as_graph_mode(tiny_run, tmp_path):
    """--mode pynative (eager, for debugging) trains the same network on the same data: its first
    step losses are tiny_run's (graph mode, same seed) up to float rounding."""
    _, graph = tiny_run
    proc = run_entry(["train.py", "--config_path", TINY, "--mode", "pynative", "--epoch_size", "1",
                      "--steps_per_epoch", "3", "--val_steps", "1", "--output_path", str(tmp_path),
                      "--repr_eval", "False"])  # the steps are compared, not the codes
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["mode"] == "pynative" and metrics["steps"] == 3
    assert "(pynative mode, per-step feeding)" in (tmp_path / "train.log").read_text()
    np.testing.assert_allclose(metrics["step_losses"], graph["step_losses"][:3], rtol=0, atol=1e-4)


# 100 InfoNCE steps of the tiny config reach 0.33-0.36 test accuracy (seeds 0-2; chance about 0.07)
INFONCE_STEPS, INFONCE_MIN_ACCURACY = 100, 0.2


@pytest.mark.slow  # starts a process
def test_infonce_through_the_command_line(tmp_path):
    """train.py --loss infonce, then eval.py on its checkpoint with the (binary) tiny config: the
    loss travels in the checkpoint, and the accuracy is InfoNCE's (chance: 1 in the valid candidates,
    at least 1 in num_negatives + 1), well above chance."""
    run = tmp_path / "run"
    proc = run_entry(["train.py", "--config_path", TINY, "--loss", "infonce", "--epoch_size", "1",
                      "--steps_per_epoch", str(INFONCE_STEPS), "--val_steps", "2", "--output_path", str(run),
                      "--repr_eval", "False"])  # the contrastive figures are compared, not the codes
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["loss"] == "infonce" and 1 / 16 <= metrics["chance_accuracy"] < 0.1
    proc = run_entry(["eval.py", "--config_path", TINY, "--ckpt_path", str(run / "cpc_best.ckpt"),
                      "--test_steps", "4", "--output_path", str(tmp_path / "eval")])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())
    assert result["loss"] == "infonce" and 1 / 16 <= result["chance_accuracy"] < 0.1
    assert result["test_accuracy"] > INFONCE_MIN_ACCURACY, result
