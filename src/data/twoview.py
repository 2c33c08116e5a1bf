"""Batches of augmented digit images for the two-view methods, as a random-access source for GeneratorDataset.

One item is one whole batch, a pure function of (seed, split, index): its numpy generator is the
stream "twoview_batch" (src/utils/streams.py), which is what resume needs. A batch holds
batch_size digits drawn at random from the split, rendered as the sequence task renders them
(src/data/dataset.py DigitRenderer: 28x28 grey or 64x64 colour on a texture), then augmented by
src/data/views.py (random resized crop, colour jitter, random grey).

views=2 (task twoview: SimCLR, SupCon, the pairwise losses): rows (view1, view2, labels), two
independent views of each digit. views=1 (task cmc): rows (images, labels), one view of each digit;
the net splits it into L and ab itself (src/model/twoview.py LabSplit), so that its encoder, like
every method's, maps whole images to the codes eval.py and export.py use. Validation and test
batches are augmented too (with their own streams): the contrastive score asks whether two views
of one digit find each other, which unaugmented copies would make trivial.
"""
import numpy as np

from src.data.dataset import DigitRenderer
from src.data.mnist import SPLITS, load_split
from src.data.views import ViewSpec, augment
from src.utils.streams import stream_rng

COLUMNS = {2: ("view1", "view2", "labels"), 1: ("images", "labels")}


class TwoViewSource:
    """Random-access source of augmented batches: item i is batch (start + i) of this split and seed."""

    def __init__(self, images, labels, *, split, seed, num_batches, batch_size, image_size, color, start=0,
                 views=2, spec=ViewSpec()):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}")
        if views not in COLUMNS:
            raise ValueError(f"views must be 1 or 2, got {views}")
        self.images, self.labels = images, labels
        self.split_id, self.seed = SPLITS.index(split), seed
        self.num_batches, self.start, self.batch_size = num_batches, start, batch_size
        self.views, self.columns, self.spec = views, COLUMNS[views], spec
        self.render = DigitRenderer(image_size, color)

    def __len__(self):
        return self.num_batches

    def __getitem__(self, index):
        return self.make_batch(self.start + int(index))

    def make_batch(self, index):
        """(view1, view2, labels int32 [B]) or (images, labels) of the batch at absolute `index`;
        views float32 [B, C, S, S] in [-1, 1]."""
        rng = stream_rng("twoview_batch", self.seed, split=self.split_id, index=index)
        pick = rng.integers(0, len(self.images), size=self.batch_size)
        pixels = self.render(self.images[pick], rng)
        views = tuple(augment(pixels, rng, self.spec).astype(np.float32) for _ in range(self.views))
        return views + (self.labels[pick].astype(np.int32),)


def build_twoview_source(cfg, split, num_batches, start=0, data=None, views=2):
    """A TwoViewSource for `split` with the config's keys. data: optional (images, labels) of the split."""
    images, labels = data if data is not None else load_split(cfg.data_path, split)
    return TwoViewSource(images, labels, split=split, seed=cfg.seed, num_batches=num_batches,
                         batch_size=cfg.batch_size, image_size=cfg.image_size, color=cfg.color, start=start,
                         views=views)
