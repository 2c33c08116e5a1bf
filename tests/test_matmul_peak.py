"""tools/matmul_peak.py: one JSON line with a rate for every shape; bad counts refused in one line."""
import json

import pytest

from tools import matmul_peak


def test_prints_every_shape_with_its_flop_and_rates(ms_cpu, capsys):
    matmul_peak.main(["--repeats", "2", "--batch_size", "1"])
    line = json.loads(capsys.readouterr().out)
    shapes = matmul_peak.image_step_shapes(1)
    assert [s["name"] for s in line["shapes"]] == list(shapes) and line["processor"]
    for row in line["shapes"]:
        assert (row["m"], row["k"], row["n"]) == shapes[row["name"]]
        assert row["gflop"] == round(2.0 * row["m"] * row["k"] * row["n"] / 1e9, 3)
        assert 0 < row["gflops_median"] <= row["gflops_best"]


def test_image_step_shapes_follow_the_batch():
    one, many = matmul_peak.image_step_shapes(1), matmul_peak.image_step_shapes(32)
    assert many["conv_block1_forward"][0] == 32 * one["conv_block1_forward"][0] == 32 * 49 * 16
    assert many["patch_logits"] == (32 * 105, 128, 32 * 49)  # 105 predictions an image: 7 x (5+4+3+2+1)
    assert many["square_2048"] == one["square_2048"]


@pytest.mark.parametrize("flags", [["--repeats", "0"], ["--batch_size", "0"], ["--repeats", "x"]])
def test_bad_counts_are_refused(flags):
    from src.utils.errors import ConfigError
    with pytest.raises(ConfigError):
        matmul_peak.main(flags)
