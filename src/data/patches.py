"""Batches of patch grids for the image task, as a random-access source for GeneratorDataset.

One item is one whole batch, a pure function of (seed, split, index): its numpy generator is the
stream "patch_batch" (src/utils/streams.py). A batch holds batch_size digits drawn
at random from the split, rendered as the sequence task renders them (src/data/dataset.py
DigitRenderer: 28x28 grey or 64x64 colour on a texture), passed through the input contrast (as
src/model/cpc.py InputContrast, on the whole image) when the config asks for it, and cut into the
grid of overlapping patches the ImageEncoder cuts (src/model/image_cpc.py PatchGrid).

Augmentation (training batches only, per patch, CPC v2): patch_jitter shifts each patch's window by
a random number of pixels per axis (kept inside the image); color_drop replaces, with that
probability, all channels of a patch by one of them chosen at random.
"""
import numpy as np

from src.config import max_patch_jitter
from src.data.dataset import DigitRenderer
from src.data.mnist import SPLITS, load_split
from src.utils.geometry import border_mean_weights, patch_origins
from src.utils.streams import stream_rng

COLUMNS = ("patches",)


def input_contrast(images):
    """numpy InputContrast: |x - mean of the border frame| - 1 per image and channel, [M, C, S, S]."""
    m, c, s, _ = images.shape
    flat = images.reshape(m * c, s * s)
    background = flat @ border_mean_weights(s)
    return (np.abs(flat - background) - 1.0).reshape(images.shape).astype(np.float32)


def cut_patches(images, patch_size, stride, rng=None, jitter=0):
    """Images [M, C, S, S] -> patches [M, G*G, C, P, P], grid row-major; with jitter > 0 each patch's
    window moves by a random shift in [-jitter, jitter] per axis, clipped to the image."""
    m, c, s, _ = images.shape
    origins = patch_origins(s, patch_size, stride)
    grid = len(origins)
    top = np.broadcast_to(origins[:, None], (m, grid, grid))
    left = np.broadcast_to(origins[None, :], (m, grid, grid))
    if jitter:
        top = np.clip(top + rng.integers(-jitter, jitter + 1, size=top.shape), 0, s - patch_size)
        left = np.clip(left + rng.integers(-jitter, jitter + 1, size=left.shape), 0, s - patch_size)
    inner = np.arange(patch_size)
    rows = top.reshape(m, -1)[:, :, None, None] + inner[None, None, :, None]      # [M, N, P, 1]
    cols = left.reshape(m, -1)[:, :, None, None] + inner[None, None, None, :]     # [M, N, 1, P]
    picked = images[np.arange(m)[:, None, None, None], :, rows, cols]             # [M, N, P, P, C]
    return np.ascontiguousarray(picked.transpose(0, 1, 4, 2, 3))


def drop_colour(patches, rng, probability):
    """With `probability` per patch, every channel of the patch becomes one random channel of it."""
    m, n, c = patches.shape[:3]
    keep = rng.integers(0, c, size=(m, n))
    dropped = np.take_along_axis(patches, keep[:, :, None, None, None], 2)
    chosen = rng.random((m, n)) < probability
    return np.where(chosen[:, :, None, None, None], dropped, patches)


class PatchSource:
    """Random-access source of patch-grid batches: item i is batch (start + i) of this split and seed."""

    columns = COLUMNS

    def __init__(self, images, labels, *, split, seed, num_batches, batch_size, image_size, color, patch_size,
                 patch_stride, contrast, start=0, jitter=0, color_drop=0.0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}")
        if jitter > max_patch_jitter(image_size, patch_size):  # the config refuses it first, naming the key
            raise ValueError(f"jitter {jitter} exceeds {max_patch_jitter(image_size, patch_size)} for "
                             f"{patch_size}-pixel patches of {image_size}-pixel images")
        self.images, self.labels = images, labels
        self.split_id, self.seed = SPLITS.index(split), seed
        self.num_batches, self.start, self.batch_size = num_batches, start, batch_size
        self.patch_size, self.patch_stride, self.contrast = patch_size, patch_stride, contrast
        self.jitter, self.color_drop = jitter, color_drop
        self.render = DigitRenderer(image_size, color)

    def __len__(self):
        return self.num_batches

    def __getitem__(self, index):
        return (self.make_batch(self.start + int(index))[0],)

    def make_batch(self, index):
        """(patches float32 [B, G*G, C, P, P], digit labels [B]) of the batch at absolute `index`."""
        rng = stream_rng("patch_batch", self.seed, split=self.split_id, index=index)
        pick = rng.integers(0, len(self.images), size=self.batch_size)
        pixels = self.render(self.images[pick], rng)
        if self.contrast:
            pixels = input_contrast(pixels)
        patches = cut_patches(pixels, self.patch_size, self.patch_stride, rng, self.jitter)
        if self.color_drop and patches.shape[2] > 1:
            patches = drop_colour(patches, rng, self.color_drop)
        return patches.astype(np.float32), self.labels[pick]


def build_patch_source(cfg, split, num_batches, start=0, data=None):
    """A PatchSource for `split` with the config's keys; training batches are augmented as configured,
    validation and test batches never.

    data: optional (images, labels) already loaded for this split."""
    images, labels = data if data is not None else load_split(cfg.data_path, split)
    augment = split == "train"
    return PatchSource(images, labels, split=split, seed=cfg.seed, num_batches=num_batches,
                       batch_size=cfg.batch_size, image_size=cfg.image_size, color=cfg.color,
                       patch_size=cfg.patch_size, patch_stride=cfg.patch_stride, contrast=cfg.input_contrast,
                       start=start, jitter=cfg.patch_jitter if augment else 0,
                       color_drop=cfg.color_drop if augment else 0.0)
