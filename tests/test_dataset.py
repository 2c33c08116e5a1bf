"""The sequence dataset: the published task's semantics, determinism, shapes, ranges, shards."""
import numpy as np
import pytest

from src.config import namespace
from src.data.dataset import build_source, create_dataset
from src.data.mnist import load_split


def _source(split="train", num_batches=50, **kw):
    cfg = namespace(**{"image_size": 28, "color": False, "padding": "same", "batch_size": 32, **kw})
    return build_source(cfg, split, num_batches)


@pytest.mark.parametrize("terms, predict_terms", [(4, 4), (2, 3), (1, 1)])
def test_positive_sorted_negative_random(terms, predict_terms):
    source = _source(terms=terms, predict_terms=predict_terms)
    for index in range(20):
        batch = source.make_batch(index)
        start = batch.digits[:, :1]
        ordered = (start + np.arange(terms + predict_terms)) % 10
        positive = batch.label[:, 0] == 1
        # context digits always count up; positives continue, negatives change every future digit
        np.testing.assert_array_equal(batch.digits[:, :terms], ordered[:, :terms])
        np.testing.assert_array_equal(batch.digits[positive], ordered[positive])
        assert np.all(batch.digits[~positive, terms:] != ordered[~positive, terms:])
        assert positive.sum() == len(positive) // 2  # exactly half of every batch is positive


def test_order_within_batch_is_shuffled_and_negatives_cover_digits():
    source = _source()
    labels = np.stack([source.make_batch(i).label[:, 0] for i in range(50)])
    assert len({tuple(row) for row in labels}) > 40  # positive slots move from batch to batch
    batches = [source.make_batch(i) for i in range(50)]
    negatives = np.concatenate([b.digits[b.label[:, 0] == 0, 4:].ravel() for b in batches])
    counts = np.bincount(negatives, minlength=10)
    assert counts.min() > 0.5 * counts.mean()  # random replacements reach every digit


@pytest.mark.slow
def test_images_show_their_digits():
    """28x28 grey pixels are the split's images of the sequence's digit classes, scaled to [-1, 1]."""
    images, labels = load_split("", "val")
    source = _source(split="val")
    batch = source.make_batch(3)
    pixels = np.concatenate([batch.x, batch.y], axis=1)          # [B, T+P, 1, 28, 28]
    restored = np.rint((pixels[:, :, 0] + 1) * 127.5).astype(np.uint8)
    lookup = {img.tobytes(): lab for img, lab in zip(images, labels)}
    for seq, digits in zip(restored, batch.digits):
        assert [lookup[img.tobytes()] for img in seq] == list(digits)


@pytest.mark.parametrize("size, color, padding, channels", [(28, False, "same", 1), (64, True, "valid", 3),
                                                           (40, False, "valid", 1)])
def test_shapes_and_ranges(size, color, padding, channels):
    source = _source(image_size=size, color=color, padding=padding, terms=3, predict_terms=2, batch_size=8)
    x, y, label = source[0]
    assert x.shape == (8, 3, channels, size, size) and y.shape == (8, 2, channels, size, size)
    assert x.dtype == y.dtype == label.dtype == np.float32 and label.shape == (8, 1)
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.2


@pytest.mark.slow
def test_pure_function_of_seed_split_index():
    a, b = _source(color=True, image_size=64, padding="valid"), _source(color=True, image_size=64,
                                                                         padding="valid")
    np.testing.assert_array_equal(a.make_batch(7).x, b.make_batch(7).x)
    np.testing.assert_array_equal(a[7][1], b.make_batch(7).y)
    assert not np.array_equal(a.make_batch(7).x, a.make_batch(8).x)
    other_seed = _source(seed=1, color=True, image_size=64, padding="valid")
    assert not np.array_equal(a.make_batch(7).digits, other_seed.make_batch(7).digits)
    other_split = _source(split="val")
    assert not np.array_equal(_source().make_batch(7).digits, other_split.make_batch(7).digits)
    shifted = build_source(namespace(image_size=28, color=False, padding="same"), "train", 5, start=7)
    np.testing.assert_array_equal(shifted[0][0], _source()[7][0])


def test_generator_dataset_rows_and_disjoint_shards():
    source = _source(num_batches=6, batch_size=4)
    rows = [tuple(t.asnumpy() for t in row) for row in create_dataset(source).create_tuple_iterator(num_epochs=1)]
    assert len(rows) == 6
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(row[0], source[i][0])
    shards = []
    for shard in range(2):
        ds = create_dataset(source, num_shards=2, shard_id=shard)
        shards.append([r[0].asnumpy().tobytes() for r in ds.create_tuple_iterator(num_epochs=1)])
    assert len(shards[0]) == len(shards[1]) == 3
    assert not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) == {r[0].tobytes() for r in rows}


def test_parallel_workers_give_the_same_rows():
    source = _source(num_batches=4, batch_size=4, color=True, image_size=64, padding="valid")
    one = [r[0].asnumpy() for r in create_dataset(source, 1).create_tuple_iterator(num_epochs=1)]
    two = [r[0].asnumpy() for r in create_dataset(source, 2).create_tuple_iterator(num_epochs=1)]
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
