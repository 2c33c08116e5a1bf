"""Training batches of the image task with its view term (config key view_ntxent_weight > 0): the
patch grids of two augmented views of each digit, as a random-access source for GeneratorDataset.

A batch draws its digits and renders them exactly as the patch task's batch of the same index
(src/data/patches.py, stream "patch_batch"), then makes two views of each rendered image
(src/data/views.py augment), each put through the patch pipeline (input contrast, patch grid with
jitter, colour drop). Row: (patches of view 1, patches of view 2); view 1 feeds the patch InfoNCE,
both feed the NT-Xent between pooled codes (src/model/twoview.py PatchViewsLoss). Validation and
test batches stay the patch task's (build_patch_source), so their figures compare with it.
"""
import numpy as np

from src.data.patches import build_patch_source, cut_patches, drop_colour, input_contrast
from src.data.views import augment
from src.utils.streams import stream_rng


class PatchViewSource:
    """Item i: (patches of view 1, patches of view 2) [B, G*G, C, P, P] of batch start + i, made with
    the keys and augmentation of `patches`, the patch task's training source it wraps."""

    columns = ("patches", "patches2")

    def __init__(self, patches):
        self.patches = patches
        self.batch_size, self.start = patches.batch_size, patches.start

    def __len__(self):
        return len(self.patches)

    def __getitem__(self, index):
        return self.make_views(self.start + int(index))

    def cut(self, pixels, rng):
        """The patch pipeline on one view's images."""
        base = self.patches
        if base.contrast:
            pixels = input_contrast(pixels)
        patches = cut_patches(pixels, base.patch_size, base.patch_stride, rng, base.jitter)
        if base.color_drop and patches.shape[2] > 1:
            patches = drop_colour(patches, rng, base.color_drop)
        return patches.astype(np.float32)

    def make_views(self, index):
        base = self.patches
        rng = stream_rng("patch_batch", base.seed, split=base.split_id, index=index)
        pick = rng.integers(0, len(base.images), size=base.batch_size)
        pixels = base.render(base.images[pick], rng)
        return tuple(self.cut(augment(pixels, rng), rng) for _ in range(2))


def build_image_source(cfg, split, num_batches, start=0, data=None):
    """The image task's source: two-view patch batches for training when view_ntxent_weight > 0,
    the patch task's batches otherwise (and always for validation and test)."""
    source = build_patch_source(cfg, split, num_batches, start, data)
    return PatchViewSource(source) if split == "train" and cfg.view_ntxent_weight else source
