"""tools/visualize.py: the batch grid shows the batch it names, and the training-curve plot."""
import numpy as np
import pytest
from PIL import Image

from src.config import parse_config
from src.data.dataset import build_source
from src.utils.errors import ConfigError
from src.utils.plots import plot_training_curves
from tests.conftest import TINY
from tools import visualize


def test_batch_grid_shows_the_named_batch(tmp_path, capsys):
    visualize.main(["--config_path", TINY, "--output_path", str(tmp_path), "--split", "val", "--index", "2",
                    "--rows", "3"])
    path = tmp_path / "batch_val_2.png"
    assert f"wrote {path}" in capsys.readouterr().out
    cfg = parse_config(["--config_path", TINY])
    batch = build_source(cfg, "val", 3).make_batch(2)
    gap, size, length = 4, 28, cfg.terms + cfg.predict_terms
    with Image.open(path) as image:
        assert image.size == (visualize.LABEL_WIDTH + length * (size + gap) + 2 * gap, 3 * (size + gap) + gap)
        pixels = np.asarray(image.convert("RGB"))
    for row in range(3):
        for t in range(length):  # every tile is that sequence's image; the future sits 2 gaps further right
            left = visualize.LABEL_WIDTH + t * (size + gap) + (2 * gap if t >= cfg.terms else 0)
            top = gap + row * (size + gap)
            image = batch.x[row, t] if t < cfg.terms else batch.y[row, t - cfg.terms]
            want = ((image[0] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
            np.testing.assert_array_equal(pixels[top:top + size, left:left + size, 0], want, err_msg=f"{row}, {t}")
    label_strip = pixels[:, :visualize.LABEL_WIDTH]
    assert (label_strip != 255).any()  # the labels are written


def test_batch_grid_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="--rows >= 1"):
        visualize.main(["--config_path", TINY, "--output_path", str(tmp_path / "out"), "--rows", "0"])
    assert not (tmp_path / "out").exists()


def test_training_curves_plot(tmp_path):
    history = [{"epoch": e, "loss": 0.7 - 0.1 * e, "val_loss": 0.72 - 0.1 * e, "val_accuracy": 0.5 + 0.1 * e}
               for e in (1, 2, 3)]
    path = tmp_path / "curves.png"
    plot_training_curves(history, 0.5, str(path))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (900, 350)
        assert len(image.convert("RGB").getcolors(1 << 16)) > 10  # drawn, not blank
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left
