"""Write a PNG grid of one sequence batch, one row per sequence, labelled, as the model sees it.

    python -m src.visualize --config_path config/cpc_mnist64_color.yaml --output_path OUT [--split train --index 0 --rows 8]
"""
import os

import numpy as np
from PIL import Image, ImageDraw

from src.atomic import atomic_write
from src.config import parse_config
from src.dataset import build_source
from src.errors import ConfigError, run_main
from src.runlog import prepare_output

LABEL_WIDTH = 150


def save_figure(fig, path, dpi=100):
    """Save a matplotlib figure as PNG atomically (see src.atomic), then close it."""
    from matplotlib import pyplot as plt
    try:
        with atomic_write(path, "plot", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)


def plot_training_curves(history, chance, path):
    """PNG of training loss and validation accuracy per epoch (with the chance line), written under
    a temporary name and renamed. history: metrics.json's per-epoch records."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [r["loss"] for r in history], "o-", label="training loss")
    left.plot(epochs, [r["val_loss"] for r in history], "s--", label="validation loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, [r["val_accuracy"] for r in history], "o-", label="validation accuracy")
    right.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:.2f})")
    right.set_ylim(0, 1.02)
    right.set_xlabel("epoch")
    right.set_ylabel("contrastive accuracy")
    right.legend(loc="lower right")
    for axis in (left, right):
        axis.set_xticks(epochs)
    fig.tight_layout()
    save_figure(fig, path)


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
    prepare_output(cfg.output_path)
    batch = build_source(cfg, cfg.split, cfg.index + 1).make_batch(cfg.index)
    path = os.path.join(cfg.output_path, f"batch_{cfg.split}_{cfg.index}.png")
    with atomic_write(path, "image", suffix=".png") as tmp:
        batch_grid(batch, cfg.rows, cfg.terms).save(tmp)
    print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)
