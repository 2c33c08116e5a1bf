"""The project's named random streams: every seeded numpy generator of data and evaluation, in one table.

Each stream's generator is numpy's default_rng seeded with a list built from its template below: the
run's seed, then fixed tags and named parts. The tags keep the streams of different purposes apart
for the same seed (a label subset never reuses the batches' numbers); they are part of every
published figure, so they never change. numpy's SeedSequence reads a missing trailing word as 0:
[s, 2] seeds like [s, 2, 0] and [s, split, 1] like [s, split, 1, 0], so label_subset meets
sequence_batch (test split, batch 0) and render meets sequence_batch (batch 1) of the same split.
Those pairs feed unrelated draws (which digits are labelled vs which digits form a sequence), so
the coincidence is harmless; a new stream takes a tag of its own (6 is the next) and a distinct length.
"""
import numpy as np

STREAMS = {
    # name: seed template (strings are parts the caller names; ints are the fixed tags)
    "sequence_batch": ("seed", "split", "index"),   # src/data/dataset.py: one sequence batch
    "render": ("seed", "split", 1, "chunk"),         # render_digits: backgrounds of a chunk of digits
    "patch_batch": ("seed", "split", 2, "index"),   # src/data/patches.py: one image-task batch
    "label_subset": ("seed", 2),                     # downstream: the class-balanced labelled subset
    "head_batches": ("seed", 3, "count"),            # downstream: batch order of a fit on `count` examples
    "fixed_subset": ("seed", 4, "split"),            # represent: fixed digit subsets (kNN, probe, t-SNE)
    "twoview_batch": ("seed", "split", 5, "index"),  # src/data/twoview.py: one two-view (or cmc) batch
}


def stream_seed(name, seed, **parts):
    """The seed list of stream `name` for the run's seed and the stream's named parts."""
    try:
        template = STREAMS[name]
    except KeyError:
        raise ValueError(f"unknown random stream {name!r}; known: {', '.join(STREAMS)}") from None
    needed = {p for p in template[1:] if isinstance(p, str)}
    if set(parts) != needed:
        raise ValueError(f"random stream {name!r} takes parts {sorted(needed)}, got {sorted(parts)}")
    return [seed] + [parts[p] if isinstance(p, str) else p for p in template[1:]]


def stream_rng(name, seed, **parts):
    """numpy Generator of stream `name` (see STREAMS) for the run's seed and the named parts."""
    return np.random.default_rng(stream_seed(name, seed, **parts))
