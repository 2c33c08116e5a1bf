"""Fuzz the IDX reader: any bytes, and any truncation of a valid file, either load or raise DataError."""
import gzip

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from src.data.mnist import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from src.utils.errors import DataError
from tests.conftest import write_idx

FUZZ = settings(max_examples=150, deadline=None)


def _read(path, magic):
    """read_idx's result, or None for a DataError; any other exception fails the test."""
    try:
        return read_idx(str(path), magic)
    except DataError:
        return None


@FUZZ
@given(data=st.binary(max_size=3200), magic=st.sampled_from([IMAGES_MAGIC, LABELS_MAGIC]),
       gz=st.booleans())
def test_random_bytes(tmp_path_factory, data, magic, gz):
    path = tmp_path_factory.mktemp("fuzz") / ("x.gz" if gz else "x")
    path.write_bytes(data)
    result = _read(path, magic)
    if result is not None:  # only a well-formed file loads, and then exactly its header's shape
        assert gz or int.from_bytes(data[:4], "big") == magic
        assert result.dtype == np.uint8 and result.ndim == (magic & 0xFF)


@FUZZ
@given(count=st.integers(0, 4), cut=st.integers(0, 10_000), flips=st.lists(st.integers(0, 10_000), max_size=3),
       gz=st.booleans(), labels=st.booleans())
def test_truncated_or_flipped_valid_file(tmp_path_factory, count, cut, flips, gz, labels):
    array = (np.arange(count) % 10).astype(np.uint8) if labels else \
        np.random.default_rng(count).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    magic = LABELS_MAGIC if labels else IMAGES_MAGIC
    path = tmp_path_factory.mktemp("fuzz") / "x"
    write_idx(str(path), array)
    raw = bytearray(path.read_bytes())
    whole = len(raw)
    raw = raw[:cut % (whole + 1)]
    for at in flips:
        if raw:
            raw[at % len(raw)] ^= 0xFF
    data = gzip.compress(bytes(raw)) if gz else bytes(raw)
    target = path.with_name("y.gz" if gz else "y")
    target.write_bytes(data)
    result = _read(target, magic)
    if len(raw) == whole and not flips:
        np.testing.assert_array_equal(result, array)  # the untouched file loads exactly
    elif len(raw) < whole and not flips:
        assert result is None  # every truncation is caught
    header = 4 + 4 * (magic & 0xFF)
    if len(raw) == whole and all(at % whole >= header for at in flips):
        assert result is not None  # flipped pixels or labels are still a well-formed file
    if result is not None:  # whatever loads is exactly what the file's header and payload say
        assert int.from_bytes(raw[:4], "big") == magic
        assert result.shape == tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(magic & 0xFF))
        assert result.tobytes() == bytes(raw[header:])
