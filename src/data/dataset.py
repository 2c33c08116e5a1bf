"""Sequences of MNIST digits for CPC, as a random-access source wrapped in GeneratorDataset.

One item of the source is one whole batch, a pure function of (seed, split, index): its numpy
generator is the stream "sequence_batch" (src/utils/streams.py). A batch holds batch_size sequences of
terms + predict_terms digits. Every sequence counts up mod 10 from a random start
(2,3,4,5 -> 6,7,8,9); in the negative half of the batch each predicted digit is replaced by a
random *different* digit; positives and negatives are shuffled within the batch. Each digit is
drawn at random from the split's images of that class and rendered as 28x28 grey, or resized,
binarised and inverted over a random crop of a colour-shifted background texture (the original's
64x64 colour task; the texture is generated here, not the Lena photograph). Pixels are in [-1, 1].

Making whole batches (instead of single sequences) keeps generation vectorised and guarantees the
half/half balance in every batch, also when GeneratorDataset shards the indices over devices.

For the InfoNCE loss every sequence is positive (sorted), and each batch also carries, for every
sequence b and future step k, `num_negatives` indices into the batch's B * predict_terms future
images (other sequences at step k, or at any step with negatives_across_steps) and a mask that is 0
where the negative shows the same digit as the positive (a collision the loss must not count).
"""
from collections import namedtuple

import numpy as np

from src.data.mnist import SPLITS, load_split
from src.utils.streams import stream_rng

TEXTURE_SIZE = 256
TEXTURE_SEED = 7  # the background texture is part of the task definition, not of the run's seed
INK_THRESHOLD = 0.5  # the original binarises the resized [0, 1] digit at 0.5
COLUMNS = {"binary": ("x", "y", "label"), "infonce": ("x", "y", "negatives", "valid")}

Batch = namedtuple("Batch", "x y label digits negatives valid", defaults=(None, None))
Batch.__doc__ = """x: float32 [B, terms, C, H, W] context images; y: float32 [B, predict_terms, C, H, W]
future images; label: float32 [B, 1], 1 = sorted (positive); digits: int64 [B, terms + predict_terms];
InfoNCE only: negatives int32 [B, predict_terms, M] indices into y flattened to [B * predict_terms],
valid float32 [B, predict_terms, M], 0 where the negative shows the positive's digit."""


def sample_negatives(rng, future_digits, num_negatives, across_steps):
    """(negatives, valid) for InfoNCE: for each (b, k), `num_negatives` distinct indices into the
    flattened future images [B * K] other than b * K + k itself, drawn from sequences b' != b at the
    same step k (or from every other (b', k') with across_steps); valid = 0 where the negative shows
    the same digit as the positive."""
    size, steps = future_digits.shape
    flat_digits = future_digits.reshape(-1)
    if across_steps:
        pool = size * steps - 1
        pick = rng.random((size, steps, pool)).argsort(-1)[..., :num_negatives]
        own = (np.arange(size)[:, None] * steps + np.arange(steps))[..., None]
        negatives = pick + (pick >= own)                       # skip the positive itself
    else:
        pick = rng.random((size, steps, size - 1)).argsort(-1)[..., :num_negatives]
        other = pick + (pick >= np.arange(size)[:, None, None])  # sequence b' != b
        negatives = other * steps + np.arange(steps)[None, :, None]
    valid = flat_digits[negatives] != future_digits[..., None]
    return negatives.astype(np.int32), valid.astype(np.float32)


def resize_matrix(src, dst):
    """Bilinear interpolation matrix [dst, src] with half-pixel centres (as PIL/OpenCV resize)."""
    pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, src - 1)
    frac = (pos - lo).astype(np.float32)
    mat = np.zeros((dst, src), np.float32)
    np.add.at(mat, (np.arange(dst), lo), 1 - frac)
    np.add.at(mat, (np.arange(dst), hi), frac)
    return mat


def make_texture(size=TEXTURE_SIZE, seed=TEXTURE_SEED):
    """A colourful multi-scale value-noise texture, float32 [3, size, size] in [0, 1]."""
    rng = np.random.default_rng(seed)
    tex = np.zeros((3, size, size), np.float32)
    for cells, amplitude in ((3, 1.0), (6, 0.6), (12, 0.35), (24, 0.2), (48, 0.12), (96, 0.07)):
        up = resize_matrix(cells, size)
        noise = rng.random((3, cells, cells), dtype=np.float32)
        tex += amplitude * (up @ noise @ up.T)
    lo = tex.min(axis=(1, 2), keepdims=True)
    hi = tex.max(axis=(1, 2), keepdims=True)
    return (tex - lo) / (hi - lo)


class DigitRenderer:
    """Turns uint8 [M, 28, 28] digits into float32 [M, C, S, S] model inputs in [-1, 1]."""

    def __init__(self, image_size, color):
        self.image_size, self.color = image_size, color
        self.channels = 3 if color else 1
        self.resize = None if image_size == 28 else resize_matrix(28, image_size)
        if color:
            if image_size > TEXTURE_SIZE:
                raise ValueError(f"image_size {image_size} exceeds the background texture ({TEXTURE_SIZE})")
            # every S x S crop of the texture as a view: crops[:, y, x] is the crop at (y, x)
            self.crops = np.lib.stride_tricks.sliding_window_view(
                make_texture(), (image_size, image_size), axis=(1, 2))

    def __call__(self, digits, rng):
        img = digits.astype(np.float32) * (1.0 / 255.0)
        if self.resize is not None:
            img = self.resize @ img @ self.resize.T
        img = img[:, None]                                      # [M, 1, S, S]
        if not self.color:
            return img * 2.0 - 1.0
        count, span = len(img), self.crops.shape[1]
        top, left = rng.integers(0, span, size=(2, count))
        background = self.crops[:, top, left].transpose(1, 0, 2, 3)         # [M, 3, S, S]
        shift = rng.random((count, 3, 1, 1), dtype=np.float32)
        background = (background + shift) * 0.5                 # random colour shift per channel
        ink = (img >= INK_THRESHOLD).astype(np.float32)         # binarised digit
        pixels = background + ink * (1.0 - 2.0 * background)    # invert the background under the ink
        return pixels * 2.0 - 1.0


class SequenceSource:
    """Random-access source of CPC batches: item i is batch (start + i) of this split and seed."""

    def __init__(self, images, labels, *, split, seed, num_batches, batch_size, terms, predict_terms,
                 image_size, color, start=0, objective="binary", num_negatives=0, negatives_across_steps=False):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}")
        if objective not in COLUMNS:
            raise ValueError(f"objective must be one of {tuple(COLUMNS)}")
        self.objective, self.columns = objective, COLUMNS[objective]
        self.num_negatives, self.negatives_across_steps = num_negatives, negatives_across_steps
        order = np.argsort(labels, kind="stable")
        self.images = np.ascontiguousarray(images[order])
        self.counts = np.bincount(labels, minlength=10)
        self.offsets = np.cumsum(self.counts) - self.counts
        self.split_id, self.seed = SPLITS.index(split), seed
        self.num_batches, self.start = num_batches, start
        self.batch_size, self.terms, self.predict_terms = batch_size, terms, predict_terms
        self.render = DigitRenderer(image_size, color)

    def __len__(self):
        return self.num_batches

    def __getitem__(self, index):
        batch = self.make_batch(self.start + int(index))
        return tuple(getattr(batch, name) for name in self.columns)

    def sequence_digits(self, rng):
        """Digit classes [B, terms + predict_terms] and positive flags [B] of one batch."""
        size, length = self.batch_size, self.terms + self.predict_terms
        positive = rng.permutation(size) < size // 2
        digits = (rng.integers(0, 10, size=(size, 1)) + np.arange(length)) % 10
        other = (digits[:, self.terms:] + rng.integers(1, 10, size=(size, self.predict_terms))) % 10
        digits[:, self.terms:] = np.where(positive[:, None], digits[:, self.terms:], other)
        return digits, positive

    def make_batch(self, index):
        """The batch at absolute index `index` (independent of start, workers and shards)."""
        rng = stream_rng("sequence_batch", self.seed, split=self.split_id, index=index)
        digits, positive = self.sequence_digits(rng)
        if self.objective == "infonce":  # every sequence sorted: the in-batch futures are the negatives
            digits = (digits[:, :1] + np.arange(digits.shape[1])) % 10
            positive = np.ones_like(positive)
        flat = digits.reshape(-1)
        pick = self.offsets[flat] + (rng.random(flat.size) * self.counts[flat]).astype(np.int64)
        pixels = self.render(self.images[pick], rng)
        pixels = pixels.reshape(self.batch_size, -1, *pixels.shape[1:])
        label = positive.astype(np.float32)[:, None]
        if self.objective == "infonce":
            negatives, valid = sample_negatives(rng, digits[:, self.terms:], self.num_negatives,
                                                self.negatives_across_steps)
            return Batch(pixels[:, :self.terms], pixels[:, self.terms:], label, digits, negatives, valid)
        return Batch(pixels[:, :self.terms], pixels[:, self.terms:], label, digits)


RENDER_CHUNK = 1000  # digits rendered per random stream in render_digits


def render_digits(images, image_size, color, seed, split):
    """Single digits as model inputs, float32 [M, C, S, S] in [-1, 1] (the classifier's data).

    A pure function of (images, seed, split): digits are rendered in chunks of RENDER_CHUNK, chunk j
    with the stream "render" (src/utils/streams.py). The same digit therefore always gets the same
    background."""
    render = DigitRenderer(image_size, color)
    out = np.empty((len(images), render.channels, image_size, image_size), np.float32)
    for j, lo in enumerate(range(0, len(images), RENDER_CHUNK)):
        rng = stream_rng("render", seed, split=SPLITS.index(split), chunk=j)
        out[lo:lo + RENDER_CHUNK] = render(images[lo:lo + RENDER_CHUNK], rng)
    return out


def build_source(cfg, split, num_batches, start=0, data=None):
    """A SequenceSource for `split` with the config's data and model keys.

    data: optional (images, labels) already loaded for this split."""
    images, labels = data if data is not None else load_split(cfg.data_path, split)
    return SequenceSource(images, labels, split=split, seed=cfg.seed, num_batches=num_batches,
                          batch_size=cfg.batch_size, terms=cfg.terms, predict_terms=cfg.predict_terms,
                          image_size=cfg.image_size, color=cfg.color, start=start, objective=cfg.loss,
                          num_negatives=cfg.num_negatives, negatives_across_steps=cfg.negatives_across_steps)


def chunk_sampler(chunk, passes, rank=0, size=1):
    """A sampler giving the training rows in chunks, one chunk per pass (a pass = one epoch of
    mindspore.train.Model = one sink on a device): pass p yields the source rows of global batches
    p * chunk ... (p + 1) * chunk - 1, for data parallelism batch b's row b * size + rank; there is
    nothing after the last pass. GeneratorDataset calls a mindspore.dataset.Sampler once per pass, so
    Model.train(passes, dataset, dataset_sink_mode=True, sink_size=chunk) reads the same batches in
    the same order whether a device sinks them or (CPU) they are fed step by step."""
    import mindspore.dataset as ds

    class ChunkSampler(ds.Sampler):
        def __init__(self):
            self.done = 0
            super().__init__()

        def __iter__(self):
            first, self.done = self.done * chunk, self.done + 1
            if first >= passes * chunk:
                return iter(())
            return iter(range(first * size + rank, (first + chunk) * size, size))

        def __len__(self):
            return chunk

    return ChunkSampler()


def create_train_dataset(source, chunk, rank=0, size=1, num_parallel_workers=1):
    """GeneratorDataset over `source` (rows = batches, rank-interleaved for data parallelism) that
    yields `chunk` batches per pass; see chunk_sampler."""
    import mindspore.dataset as ds
    passes = len(source) // (chunk * size)
    if passes < 1 or passes * chunk * size != len(source):
        raise ValueError(f"{len(source)} rows are not whole passes of {chunk} batches x {size} ranks")
    sampler = chunk_sampler(chunk, passes, rank, size)
    workers = max(1, min(num_parallel_workers, chunk))
    return ds.GeneratorDataset(source, column_names=list(source.columns), sampler=sampler,
                               num_parallel_workers=workers, python_multiprocessing=workers > 1)


def create_dataset(source, num_parallel_workers=1, num_shards=None, shard_id=None):
    """Wrap a SequenceSource in mindspore.dataset.GeneratorDataset (one row = one batch; columns
    x, y, label for the binary loss, x, y, negatives, valid for InfoNCE)."""
    import mindspore.dataset as ds
    workers = max(1, min(num_parallel_workers, len(source)))
    return ds.GeneratorDataset(source, column_names=list(source.columns), shuffle=False,
                               num_parallel_workers=workers, python_multiprocessing=workers > 1,
                               num_shards=num_shards, shard_id=shard_id)
