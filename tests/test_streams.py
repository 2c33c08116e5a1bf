"""The named random streams: each stream's seed layout is fixed (every published figure depends on it)."""
import numpy as np
import pytest

from src.utils.streams import STREAMS, stream_rng, stream_seed


def test_every_stream_keeps_its_seed_layout():
    # the layouts the data and evaluation code used before the table existed, written out by hand
    assert stream_seed("sequence_batch", 7, split=1, index=12) == [7, 1, 12]
    assert stream_seed("render", 7, split=2, chunk=3) == [7, 2, 1, 3]
    assert stream_seed("patch_batch", 7, split=0, index=5) == [7, 0, 2, 5]
    assert stream_seed("label_subset", 7) == [7, 2]
    assert stream_seed("head_batches", 7, count=350) == [7, 3, 350]
    assert stream_seed("fixed_subset", 7, split=1) == [7, 4, 1]
    assert stream_seed("twoview_batch", 7, split=1, index=5) == [7, 1, 5, 5]
    assert len(STREAMS) == 7  # a new stream adds its own line above


def test_a_stream_is_numpy_seeded_with_its_list():
    expected = np.random.default_rng([3, 0, 2, 9]).random(4)
    np.testing.assert_array_equal(stream_rng("patch_batch", 3, split=0, index=9).random(4), expected)


@pytest.mark.parametrize("name, parts", [("bogus", {}), ("render", {"split": 0}), ("label_subset", {"count": 1})])
def test_unknown_streams_and_parts_are_refused(name, parts):
    with pytest.raises(ValueError, match="random stream"):
        stream_seed(name, 0, **parts)
