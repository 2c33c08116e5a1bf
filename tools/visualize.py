"""Write a PNG grid of one sequence batch, one row per sequence, labelled, as the model sees it.

    python -m tools.visualize --config_path config/cpc_mnist64_color.yaml --output_path OUT \
        [--split train --index 0 --rows 8]
"""
import os

import numpy as np
from PIL import Image, ImageDraw

from src.config import parse_config
from src.data.dataset import build_source
from src.utils.atomic import atomic_write
from src.utils.errors import ConfigError, run_main
from src.utils.runlog import prepare_output

LABEL_WIDTH = 150


def batch_grid(batch, rows, terms, gap=4):
    """An RGB uint8 image: each row shows a sequence's context, a gap, its future, and its label."""
    images = np.concatenate([batch.x, batch.y], axis=1)[:rows]          # [R, T+P, C, S, S]
    size = images.shape[-1]
    pixels = ((images + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    length = images.shape[1]
    width = LABEL_WIDTH + length * (size + gap) + 2 * gap
    canvas = Image.new("RGB", (width, len(images) * (size + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(pixels):
        top = gap + r * (size + gap)
        positive = batch.label[r, 0] > 0.5
        text = f"{'sorted' if positive else 'random'}: " + " ".join(map(str, batch.digits[r]))
        draw.text((4, top + size // 2 - 6), text, fill=(0, 110, 0) if positive else (170, 0, 0))
        for t, image in enumerate(row):
            left = LABEL_WIDTH + t * (size + gap) + (2 * gap if t >= terms else 0)
            canvas.paste(Image.fromarray(image.transpose(1, 2, 0)), (left, top))
    return canvas


def _extra(parser):
    parser.add_argument("--split", default="train", choices=["train", "val", "test"], help="data split")
    parser.add_argument("--index", type=int, default=0, help="batch index (same index -> same batch)")
    parser.add_argument("--rows", type=int, default=8, help="sequences shown")


def main(argv=None):
    cfg = parse_config(argv, description="Write a PNG grid of a CPC sequence batch", extra_args=_extra)
    if cfg.index < 0 or cfg.rows < 1:
        raise ConfigError(f"--index must be >= 0 and --rows >= 1, got {cfg.index} and {cfg.rows}")
    if cfg.task != "sequence":  # it would draw the sequence task's batch, which this config never trains on
        raise ConfigError(f"tools.visualize draws sequence batches; {cfg.config_path} is task: {cfg.task}")
    prepare_output(cfg.output_path)
    batch = build_source(cfg, cfg.split, cfg.index + 1).make_batch(cfg.index)
    path = os.path.join(cfg.output_path, f"batch_{cfg.split}_{cfg.index}.png")
    with atomic_write(path, "image", suffix=".png") as tmp:
        batch_grid(batch, cfg.rows, cfg.terms).save(tmp)
    print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)
