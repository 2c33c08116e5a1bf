"""Configuration: YAML + flags, validation with one clear line naming the key."""
import pytest

from src.config import SCHEMA, namespace, parse_config, read_yaml
from src.utils.errors import ConfigError
from src.utils.geometry import encoder_output_size
from tests.conftest import REPO, TINY

CONFIGS = ["cpc_mnist64_color.yaml", "cpc_mnist28_gray.yaml", "cpc_tiny.yaml"]


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_hold_only_their_differences_each_commented(name):
    """SCHEMA is the one home of every default: a YAML that restated one could drift from it."""
    path = f"{REPO}/config/{name}"
    values = read_yaml(path)
    restated = sorted(k for k, v in values.items() if v == SCHEMA[k].default)
    assert not restated, f"{name} restates the defaults of {restated} (they live in src/config.py SCHEMA)"
    for line in open(path, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            assert "#" in line, f"uncommented key in {name}: {line.strip()}"
    parse_config(["--config_path", path])


def test_every_default_has_its_reason_and_is_valid():
    for name, key in SCHEMA.items():
        assert key.doc.strip(), name
    # the default config file adds nothing but its output folder
    defaults, parsed = vars(namespace()), vars(parse_config([]))
    assert {k: v for k, v in parsed.items() if k in SCHEMA and k != "output_path"} == \
        {k: v for k, v in defaults.items() if k != "output_path"}


def test_published_experiment_values():
    cfg = parse_config([])  # the default config: the published 64x64 colour experiment
    assert (cfg.image_size, cfg.color, cfg.terms, cfg.predict_terms) == (64, True, 4, 4)
    assert (cfg.code_size, cfg.hidden_size, cfg.batch_size) == (128, 256, 32)
    assert (cfg.learning_rate, cfg.epoch_size, cfg.steps_per_epoch) == (1e-3, 10, 390)


def test_flags_override_yaml():
    cfg = parse_config(["--config_path", TINY, "--epoch_size", "5", "--color", "true",
                        "--learning_rate", "0.01", "--data_path", "/x"])
    assert (cfg.epoch_size, cfg.color, cfg.learning_rate, cfg.data_path) == (5, True, 0.01, "/x")


@pytest.mark.parametrize("flags, key", [
    (["--terms", "0"], "terms"),
    (["--predict_terms", "-1"], "predict_terms"),
    (["--batch_size", "0"], "batch_size"),
    (["--batch_size", "7"], "batch_size"),
    (["--image_size", "20", "--padding", "valid"], "image_size"),
    (["--image_size", "1000"], "image_size"),
    (["--learning_rate", "0"], "learning_rate"),
    (["--learning_rate", "nan"], "learning_rate"),
    (["--lr_min", "0.5"], "lr_min"),
    (["--device_target", "TPU"], "device_target"),
    (["--epoch_size", "two"], "epoch_size"),
    (["--color", "maybe"], "color"),
    (["--terms", "2.5"], "terms"),
    (["--prefetch_size", "0"], "prefetch_size"),
    (["--prefetch_size", "65"], "prefetch_size"),
    (["--mmap_threshold_mb", "-1"], "mmap_threshold_mb"),
    (["--mmap_threshold_mb", "33"], "mmap_threshold_mb"),
])
def test_bad_values_name_the_key(flags, key):
    with pytest.raises(ConfigError, match=key):
        parse_config(["--config_path", TINY] + flags)


def test_unknown_flag_and_yaml_key(tmp_path):
    with pytest.raises(ConfigError, match="unrecognized arguments: --termz"):
        parse_config(["--config_path", TINY, "--termz", "3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("terms: 4\nbatchsize: 32\n")
    with pytest.raises(ConfigError, match="unknown config key 'batchsize'"):
        parse_config(["--config_path", str(bad)])
    bad.write_text("terms: four\n")
    with pytest.raises(ConfigError, match="'terms' must be of type int"):
        parse_config(["--config_path", str(bad)])
    with pytest.raises(ConfigError, match="config file not found"):
        parse_config(["--config_path", str(tmp_path / "missing.yaml")])


def test_encoder_output_size():
    assert encoder_output_size(64, "valid") == 3
    assert encoder_output_size(28, "same") == 2
    assert encoder_output_size(28, "valid") == 0
    assert encoder_output_size(31, "valid") == 1


def test_ascend_target_refuses_a_gru_size_not_multiple_of_16():

    from src.device import check_for_target
    cfg = namespace(hidden_size=100)
    with pytest.raises(ConfigError) as info:
        check_for_target(cfg, "Ascend")
    message = str(info.value)
    assert "\n" not in message and "hidden_size 100 is not a multiple of 16" in message
    assert "96 or 112" in message
    for target in ("CPU", "GPU"):  # only Ascend's float16 DynamicGRUV2 has the constraint
        check_for_target(cfg, target)
    check_for_target(namespace(hidden_size=256), "Ascend")
    # a checkpoint's hyper-parameters (eval.py, export.py) override the config's
    check_for_target(cfg, "Ascend", {"hidden_size": 128})
    with pytest.raises(ConfigError, match="hidden_size 8 is not a multiple of 16.*e.g. 16\\)"):
        check_for_target(namespace(hidden_size=256), "Ascend", {"hidden_size": 8})


def test_ascend_gru_refusal_is_one_error_line(monkeypatch, capsys):
    """Through run_main as train.py does: one 'error:' line and exit 2."""

    from src.device import check_for_target
    from src.utils.errors import run_main
    with pytest.raises(SystemExit) as info:
        run_main(lambda argv: check_for_target(namespace(hidden_size=100), "Ascend"))
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: hidden_size 100 is not a multiple of 16")


def test_first_line_of_an_exception():
    from src.utils.errors import first_line
    assert first_line(ValueError("  bad value\nsecond line\n")) == "bad value"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError(""), fallback="") == ""


def test_key_help_replaces_a_keys_help_text(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--help"], key_help={"batch_size": "batch baked into the graph"})
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch_size BATCH_SIZE batch baked into the graph" in text
    assert "sequences per step" not in text


def test_num_negatives_is_bounded_by_the_batch():
    base = ["--config_path", TINY, "--loss", "infonce", "--batch_size", "16"]
    assert parse_config(base + ["--num_negatives", "15"]).num_negatives == 15  # every other sequence
    with pytest.raises(ConfigError, match=r"'num_negatives' must be <= 15 \(the other sequences of a batch of 16\), "
                                          r"got 16"):
        parse_config(base + ["--num_negatives", "16"])
    across = base + ["--negatives_across_steps", "true", "--predict_terms", "2"]
    assert parse_config(across + ["--num_negatives", "31"]).num_negatives == 31  # other future images too
    with pytest.raises(ConfigError, match=r"'num_negatives' must be <= 31 \(the other future images"):
        parse_config(across + ["--num_negatives", "32"])
    assert parse_config(base[:2] + ["--loss", "binary", "--num_negatives", "99"]).num_negatives == 99  # unused


def test_tilde_expands_in_every_path_key_from_yaml_and_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "my.yaml").write_text("data_path: ~/mnist\nckpt_path: ~/runs/cpc_best.ckpt\n")
    cfg = parse_config(["--config_path", "~/my.yaml", "--output_path", "~/out"])
    assert cfg.config_path == str(tmp_path / "my.yaml")
    assert (cfg.data_path, cfg.ckpt_path, cfg.output_path) == (
        str(tmp_path / "mnist"), str(tmp_path / "runs" / "cpc_best.ckpt"), str(tmp_path / "out"))
    assert [name for name, key in SCHEMA.items() if key.path] == ["data_path", "output_path", "ckpt_path"]


def test_a_run_folders_saved_config_is_accepted_back(tmp_path):
    """OUT/config.yaml (config_path key and all) given as --config_path resolves to the same run."""
    from src.config import config_dict, save_config
    cfg = parse_config(["--config_path", TINY, "--seed", "7", "--output_path", str(tmp_path / "run")])
    save_config(cfg, str(tmp_path / "config.yaml"))
    again = parse_config(["--config_path", str(tmp_path / "config.yaml")])
    first, second = config_dict(cfg), config_dict(again)
    assert second.pop("config_path") == str(tmp_path / "config.yaml") and first.pop("config_path") == TINY
    assert second == first


def test_seed_range_is_mindspores():
    assert namespace(seed=2 ** 32 - 1).seed == 2 ** 32 - 1
    with pytest.raises(ConfigError, match="config key 'seed' must be <= 4294967295, got 4294967296"):
        namespace(seed=2 ** 32)
