"""Refusals made before anything is written or computed: keys that would silently change or be ignored
(patch jitter, the other task's keys, data and validation keys on resume), tools asked for what they do
not do for a task, and every value a tool needs checked up front (seed lists, profiler paths, grids)."""
import logging
import os

import pytest

from src.config import REPO_ROOT, namespace, parse_config
from src.utils.errors import ConfigError, CPCError, run_main
from tests.conftest import TINY

IMAGE28 = os.path.join(REPO_ROOT, "config", "cpc_image28_gray.yaml")
IMAGE64 = os.path.join(REPO_ROOT, "config", "cpc_image64_color.yaml")


def _refused(main, argv, capsys):
    """The one error line of main(argv) run as its command runs it (exit 2)."""
    logging.getLogger("cpc").handlers.clear()
    with pytest.raises(SystemExit) as stop:
        run_main(main, argv)
    logging.getLogger("cpc").handlers.clear()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# --- patch jitter ---

@pytest.mark.parametrize("config, jitter, limit", [(IMAGE28, "8", 7), (IMAGE64, "16", 15), (IMAGE64, "200", 15)])
def test_patch_jitter_beyond_the_patch_is_refused_naming_the_key(config, jitter, limit):
    with pytest.raises(ConfigError, match=rf"config key 'patch_jitter' must be <= {limit} .*got {jitter}$"):
        parse_config(["--config_path", config, "--patch_jitter", jitter])
    assert parse_config(["--config_path", config, "--patch_jitter", str(limit)]).patch_jitter == limit


def test_patch_jitter_beyond_the_image_is_refused():
    """A 24-pixel patch in a 28-pixel image has 4 pixels of room: a larger shift pins windows to the edge."""
    flags = ["--config_path", IMAGE28, "--patch_size", "24", "--patch_stride", "1", "--min_row_offset", "1",
             "--pool_grid", "1", "--encoder_layers", "3"]
    with pytest.raises(ConfigError, match=r"'patch_jitter' must be <= 4 .*image_size - patch_size = 4"):
        parse_config(flags + ["--patch_jitter", "5"])
    assert parse_config(flags + ["--patch_jitter", "4"]).patch_jitter == 4


def test_patch_source_refuses_a_jitter_the_config_would_refuse():
    from src.data.mnist import load_split
    from src.data.patches import PatchSource
    with pytest.raises(ValueError, match="jitter 8 exceeds 7"):
        PatchSource(*load_split("", "train"), split="train", seed=0, num_batches=1, batch_size=2, image_size=28,
                    color=False, patch_size=8, patch_stride=4, contrast=False, jitter=8)


# --- a key of the other task ---

@pytest.mark.parametrize("config, flags, key, task", [
    (TINY, ["--patch_jitter", "2"], "patch_jitter", "image"),
    (TINY, ["--norm", "batch"], "norm", "image"),
    (TINY, ["--color_drop", "0.5"], "color_drop", "image"),
    (IMAGE28, ["--terms", "3"], "terms", "sequence"),
    (IMAGE28, ["--loss", "infonce"], "loss", "sequence"),
])
def test_a_key_of_the_other_task_is_refused_naming_it(config, flags, key, task):
    with pytest.raises(ConfigError, match=rf"config key '{key}' \(.*\) is read by the {task} task only"):
        parse_config(["--config_path", config] + flags)


def test_a_key_of_the_other_task_in_a_yaml_is_refused(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(open(TINY, encoding="utf-8").read() + "patch_size: 8\n")
    with pytest.raises(ConfigError, match=r"config key 'patch_size' \(8\) is read by the image task only"):
        parse_config(["--config_path", str(path)])


def test_a_saved_run_config_restating_every_key_passes(tmp_path):
    """OUT/config.yaml holds every key, the other task's at their defaults: it is not a mistake."""
    from src.config import save_config
    for config in (TINY, IMAGE64):
        save_config(parse_config(["--config_path", config]), str(tmp_path / "config.yaml"))
        assert parse_config(["--config_path", str(tmp_path / "config.yaml")]).config_path


# --- resume with a key that changes the data or the validation ---

def _state(**keys):
    from src.config import model_hparams
    from src.train.resume import RunState
    from src.train.schedule import PlateauLR
    cfg = namespace(**keys)
    return RunState(cfg, model_hparams(cfg), PlateauLR(1e-3, 1 / 3, 2, 1e-4), None)


IMAGE_KEYS = dict(task="image", image_size=28, color=False, input_contrast=False, patch_size=8, patch_stride=4,
                  padding="same", encoder_layers=3)


@pytest.mark.parametrize("changed", [dict(patch_jitter=1), dict(color_drop=0.5), dict(val_steps=3),
                                     dict(precise_bn_batches=0), dict(knn_k=5)])
def test_resume_with_a_changed_data_or_validation_key_is_refused_naming_it(changed):
    saved = _state(**IMAGE_KEYS).meta()
    (key, value), = changed.items()
    with pytest.raises(CPCError, match=rf"cannot resume from ck: it was trained with other settings \(checkpoint "
                                       rf"vs config: {key} .* != {value!r}\)"):
        _state(**IMAGE_KEYS, **changed).restore(saved, "ck")


def test_resume_from_a_checkpoint_that_predates_the_data_keys_is_not_refused_on_them():
    from src.train.resume import DATA_KEYS
    saved = _state(**IMAGE_KEYS).meta()
    saved["run"] = {k: v for k, v in saved["run"].items() if k not in DATA_KEYS}
    state = _state(**IMAGE_KEYS, patch_jitter=1)
    state.restore(saved, "ck")
    assert state.epoch == saved["epoch"]


# --- tools asked for something they do not do for this task ---

def test_visualize_refuses_an_image_config(tmp_path, capsys):
    from tools import visualize
    line = _refused(visualize.main, ["--config_path", IMAGE28, "--output_path", str(tmp_path / "v")], capsys)
    assert "tools.visualize draws sequence batches" in line and "task: image" in line
    assert not (tmp_path / "v").exists()


def test_contrastive_eval_names_a_classifier_checkpoint_by_its_kind(ms_cpu, tmp_path, capsys):
    import eval as eval_entry
    from src import checkpoint
    from src.config import model_hparams
    from src.model.classifier import build_classifier
    hparams = model_hparams(parse_config(["--config_path", TINY]))
    path = str(tmp_path / "classifier.ckpt")
    meta = {"kind": "classifier", "hparams": hparams, "head": "mlp"}
    checkpoint.save(build_classifier(hparams, "mlp", "cpu"), path, meta)
    line = _refused(eval_entry.main, ["--config_path", TINY, "--ckpt_path", path, "--output_path",
                                      str(tmp_path / "e")], capsys)
    assert "holds a digit classifier" in line and "(kind 'classifier')" in line and "--eval_mode classify" in line
    assert "missing" not in line and not (tmp_path / "e").exists()


# --- values a tool needs, checked before it writes or computes ---

def test_feature_layers_refuses_a_seed_beyond_mindspores_range_before_writing(tmp_path, capsys):
    from tools import feature_layers
    line = _refused(feature_layers.main, ["--config_path", IMAGE28, "--seeds", f"0,{2 ** 32}", "--ckpt_path",
                                          str(tmp_path / "none.ckpt"), "--output_path", str(tmp_path / "o")], capsys)
    assert f"--seeds must be distinct comma-separated integers in [0, {2 ** 32 - 1}]" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("where", ["file", "inside a file"])
def test_benchmark_refuses_a_profile_path_it_cannot_make_before_timing(ms_cpu, tmp_path, capsys, monkeypatch, where):
    from tools import benchmark
    (tmp_path / "taken").write_text("a user's file")
    path = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "prof"
    monkeypatch.setattr(benchmark, "measure", lambda *a: pytest.fail("timed before the check"))
    line = _refused(benchmark.main, ["--config_path", TINY, "--device_target", "CPU", "--profile_path", str(path)],
                    capsys)
    assert "--profile_path" in line and "taken" in line


def test_torch_reference_refuses_a_loss_it_does_not_time(capsys):
    pytest.importorskip("torch")  # an optional dependency of this tool only
    from tools import torch_reference
    line = _refused(torch_reference.main, ["--config_path", TINY, "--loss", "infonce"], capsys)
    assert "binary loss only; got loss: infonce" in line
