"""Configuration: YAML + flags, validation with one clear line naming the key."""
import pytest

from src.config import SCHEMA, encoder_output_size, parse_config, read_yaml
from src.errors import ConfigError
from tests.conftest import REPO, TINY

CONFIGS = ["cpc_mnist64_color.yaml", "cpc_mnist28_gray.yaml", "cpc_tiny.yaml"]


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_are_complete_and_commented(name):
    path = f"{REPO}/config/{name}"
    values = read_yaml(path)
    assert set(values) >= set(SCHEMA) - {"device_id"}, set(SCHEMA) - set(values)
    for line in open(path, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            assert "#" in line, f"uncommented key in {name}: {line.strip()}"
    parse_config(["--config_path", path])


def test_published_experiment_values():
    cfg = parse_config(["--config_path", f"{REPO}/config/cpc_mnist64_color.yaml"])
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
