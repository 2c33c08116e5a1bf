"""Time the two-view augmentation: the numpy batch path (src/data/views.py) against mindspore.dataset.vision.

    python tools/view_benchmark.py [--count 256] [--size 64] [--repeats 7]

On `count` embedded training digits rendered as the colour task renders them (64x64 on the texture;
--size 28 --grey for the grey task), one view each (crop + colour jitter + random grey, no blur, the
ops MindSpore has), timed `repeats` times after one warm-up; prints one line per path with the
median and fastest time in ms for the whole batch:

- numpy: views.augment on the [M, C, S, S] float batch (crop, then colour, then the whole view);
- ms_random_eager: RandomResizedCrop, RandomColorAdjust (uint8 HWC) and ToPIL + RandomGrayscale
  called image by image (seeded by mindspore.dataset.config.set_seed, not by a numpy Generator);
- ms_random_pipeline: the same ops mapped over NumpySlicesDataset and batched (2 workers);
- ms_seeded_eager: the deterministic ops (ResizedCrop, AdjustBrightness / Contrast / Saturation /
  Hue, built per image from parameters drawn by a numpy Generator: the only MindSpore form whose
  views follow the batch's seed);
- to_uint8_hwc: the conversion the MindSpore paths need from the model's float [-1, 1] CHW batch
  (and as much again back), not counted in their figures.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.data import views  # noqa: E402
from src.data.dataset import DigitRenderer  # noqa: E402
from src.data.mnist import load_split  # noqa: E402

NO_BLUR = views.ViewSpec(blur_probability=0.0)  # MindSpore's three ops have no blur: like for like


def timed(function, repeats):
    """(median, min) wall time of function() in ms over `repeats` calls after one warm-up."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def to_uint8_hwc(images):
    return np.ascontiguousarray(((images * 0.5 + 0.5) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1))


def ms_random_ops(spec, size):
    """The random ops at the spec's strengths (RandomColorAdjust draws each factor in [1 - x, 1 + x])."""
    import mindspore.dataset.vision as vision
    return [vision.RandomResizedCrop(size, scale=spec.crop_scale, ratio=spec.crop_ratio),
            vision.RandomColorAdjust(spec.brightness, spec.contrast, spec.saturation, spec.hue)]


def ms_grey(spec):
    import mindspore.dataset.vision as vision
    return [vision.ToPIL(), vision.RandomGrayscale(spec.grayscale_probability), np.asarray]


def ms_random_eager(batch, spec):
    ops = ms_random_ops(spec, batch.shape[1]) + ms_grey(spec)
    for image in batch:
        for op in ops:
            image = op(image)


def ms_random_pipeline(batch, spec):
    import mindspore.dataset as ds
    ops = ms_random_ops(spec, batch.shape[1]) + ms_grey(spec)
    data = ds.NumpySlicesDataset(batch, column_names=["image"], shuffle=False)
    data = data.map(ops, input_columns=["image"], num_parallel_workers=2)
    for _ in data.batch(len(batch)).create_tuple_iterator(output_numpy=True):
        pass


def ms_seeded_eager(batch, spec, rng):
    import mindspore.dataset.vision as vision
    size = batch.shape[1]
    top, left, height, width = views.crop_boxes(rng, len(batch), size, spec.crop_scale, spec.crop_ratio)
    factors = 1 + rng.uniform(-1, 1, (len(batch), 3)) * [spec.brightness, spec.contrast, spec.saturation]
    hue = rng.uniform(-spec.hue, spec.hue, len(batch))
    for i, image in enumerate(batch):
        box = [int(v) for v in (top[i], left[i], max(height[i], 1), max(width[i], 1))]
        image = vision.ResizedCrop(*box, size)(image)
        image = vision.AdjustBrightness(factors[i, 0])(image)
        image = vision.AdjustContrast(factors[i, 1])(image)
        image = vision.AdjustSaturation(factors[i, 2])(image)
        image = vision.AdjustHue(hue[i])(image)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--grey", action="store_true", help="28x28 grey digits (use with --size 28)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    import mindspore.dataset as ds
    ds.config.set_seed(0)
    images, _ = load_split("", "train")
    batch = DigitRenderer(args.size, not args.grey)(images[:args.count], np.random.default_rng(0))
    rng = np.random.default_rng(1)
    hwc = to_uint8_hwc(batch)
    rows = {"numpy_crop": lambda: views.geometry(batch * 0.5 + 0.5, rng, NO_BLUR),
            "numpy_colour": lambda: views.colour(batch * 0.5 + 0.5, rng, NO_BLUR),
            "numpy": lambda: views.augment(batch, rng, NO_BLUR),
            "to_uint8_hwc": lambda: to_uint8_hwc(batch)}
    if not args.grey:  # MindSpore's colour ops and PIL's grey need three channels
        rows.update(ms_random_eager=lambda: ms_random_eager(hwc, NO_BLUR),
                    ms_random_pipeline=lambda: ms_random_pipeline(hwc, NO_BLUR),
                    ms_seeded_eager=lambda: ms_seeded_eager(hwc, NO_BLUR, rng))
    for name, function in rows.items():
        median, best = timed(function, args.repeats)
        print(json.dumps({"path": name, "images": args.count, "size": args.size, "median_ms": round(median, 1),
                          "min_ms": round(best, 1), "load_1min": round(os.getloadavg()[0], 1)}), flush=True)


if __name__ == "__main__":
    main()
