"""The .bin file layout shared by preprocess.py, the inference programs and postprocess.py.

Model zoo layout, one file per exported batch (the batch size is baked into the MINDIR):

    PRE/00_data/digits_00000.bin   input 0 of batch 0: float32, C order, the MINDIR's input shape
    PRE/01_data/...                input 1 (only for nets with two inputs, e.g. --net cpc)
    PRE/labels.npy                 int64 [N]: the true digit of each of the N images, in file order
    PRE/preprocess.json            batch_size, num_images, image_shape, seed, data, mindir_path
    RES/digits_00000_0.bin         output 0 of batch 0 as the program wrote it (float32)
    RES/latency.json               per-batch predict latency summary

The last batch is padded with zero images; postprocess.py keeps the first N rows. Inputs come from
the MINDIR file itself (mindir_inputs), so no model flag has to be repeated.
"""
import os

import numpy as np

from src.utils.atomic import atomic_write
from src.utils.errors import CPCError, DataError
from src.utils.paths import require_file

LABELS = "labels.npy"
INFO = "preprocess.json"
LATENCY = "latency.json"
STEM = "digits"
FLOAT32 = 1  # mind_ir.proto TensorProto.DataType FLOAT
NUM_CLASSES = 10  # digit logits per image (src.model.classifier.NUM_CLASSES, without importing MindSpore)


def input_dir(root, index):
    """PRE/00_data for input 0, PRE/01_data for input 1, ..."""
    return os.path.join(root, f"{index:02d}_data")


def batch_name(index):
    return f"{STEM}_{index:05d}.bin"


def result_name(name, output_index):
    """digits_00000.bin, output 0 -> digits_00000_0.bin (the C++ program's naming)."""
    return f"{os.path.splitext(name)[0]}_{output_index}.bin"


def batch_names(root):
    """Sorted names of the .bin files of input 0; DataError if there are none."""
    folder = input_dir(root, 0)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".bin")) if os.path.isdir(folder) else []
    if not names:
        raise DataError(f"no .bin input files in {folder}: run preprocess.py first")
    return names


def mindir_inputs(path):
    """Input shapes [[N, C, S, S], ...] of a MINDIR file (float32 inputs only); CPCError if unreadable."""
    from mindspore.train import mind_ir_pb2  # imported only here: postprocess.py needs no MindSpore
    path = require_file(path, "MINDIR file")
    model = mind_ir_pb2.ModelProto()
    try:
        with open(path, "rb") as handle:
            model.ParseFromString(handle.read())
    except Exception as exc:  # protobuf's DecodeError and friends
        raise CPCError(f"{path} is not a MINDIR file ({type(exc).__name__})") from None
    shapes = []
    for item in model.graph.input:
        if len(item.tensor) != 1 or item.tensor[0].data_type != FLOAT32:
            raise CPCError(f"MINDIR file {path}: input {item.name} is not one float32 tensor")
        shapes.append([int(d) for d in item.tensor[0].dims])
    if not shapes:
        raise CPCError(f"MINDIR file {path} has no inputs (is it a MINDIR written by export.py?)")
    return shapes


def write_bin(path, array):
    """Write an array's raw bytes (float32 C order as given) under a temporary name, then rename."""
    with atomic_write(path, "result file") as tmp:
        np.ascontiguousarray(array).tofile(tmp)


def read_bin(path, shape=None, dtype=np.float32):
    """A .bin file as an array (of `shape` when given); DataError if missing or of the wrong size."""
    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}")
    data = np.fromfile(path, dtype=dtype)
    if shape is not None:
        if data.size != int(np.prod(shape)):
            raise DataError(f"{path} holds {data.size} values; the model input {list(shape)} needs "
                            f"{int(np.prod(shape))}")
        data = data.reshape(shape)
    return data
