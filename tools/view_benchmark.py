"""Time the two-view augmentation: the numpy batch path (src/data/views.py) against mindspore.dataset.vision.

    python tools/view_benchmark.py [--count 256] [--size 64] [--repeats 7]

On `count` embedded training digits rendered as the colour task renders them (64x64 on the texture;
--size 28 --grey for the grey task: the numpy and crop rows only), one view each (crop + colour
jitter + random grey, no blur: the ops MindSpore has). Every path is called once to warm up, then
`repeats` rounds call each path once in turn (a change of the shared machine's load hits all
alike); one JSON line per path: median and fastest wall time and median CPU time of this process,
in ms for the batch.

- numpy_crop, numpy_colour, numpy: views.geometry, views.colour and the whole views.augment on the
  [M, C, S, S] float batch;
- ms_crop_eager, ms_colour_eager, ms_grey_eager: RandomResizedCrop, RandomColorAdjust (uint8 HWC)
  and ToPIL + RandomGrayscale called image by image, ms_random_eager the three in a row (seeded by
  mindspore.dataset.config.set_seed, not by a numpy Generator);
- ms_random_pipeline: the three mapped over NumpySlicesDataset (2 workers) and batched, the
  pipeline built and run once per call;
- ms_seeded_crop_eager: ResizedCrop image by image on float32 HWC, boxes drawn by a numpy Generator
  (the seeded form of the crop; the HWC transpose is counted);
- ms_seeded_eager: the deterministic ops (ResizedCrop, AdjustBrightness / Contrast / Saturation /
  Hue, built per image from parameters drawn by a numpy Generator: the only MindSpore form whose
  views follow the batch's seed);
- to_uint8_hwc: the conversion the MindSpore paths need from the model's float [-1, 1] CHW batch
  (and as much again back), not counted in their figures.
"""
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
from src.utils.errors import ArgParser, run_main  # noqa: E402

NO_BLUR = views.ViewSpec(blur_probability=0.0)  # MindSpore's three ops have no blur: like for like


def interleaved(functions, repeats):
    """{name: (wall ms list, CPU ms list)}: one warm-up call each, then `repeats` rounds calling every
    function once per round, so a change of the machine's load hits every path alike."""
    for function in functions.values():
        function()
    times = {name: ([], []) for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            wall, cpu = time.perf_counter(), time.process_time()
            function()
            times[name][0].append((time.perf_counter() - wall) * 1000)
            times[name][1].append((time.process_time() - cpu) * 1000)
    return times


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


def per_image(ops):
    """A function running `ops` image by image over a uint8 HWC batch (eager MindSpore calls)."""
    def run(batch):
        for image in batch:
            for op in ops:
                image = op(image)
    return run


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


def ms_seeded_crop(batch, spec, rng):
    """ResizedCrop image by image on float32 HWC in [0, 1] (no uint8 round trip), boxes drawn by rng
    as views.crop_boxes draws them (rounded to whole pixels: the op takes integers)."""
    import mindspore.dataset.vision as vision
    hwc = np.ascontiguousarray((batch * 0.5 + 0.5).transpose(0, 2, 3, 1))
    size = hwc.shape[1]
    top, left, height, width = views.crop_boxes(rng, len(hwc), size, spec.crop_scale, spec.crop_ratio)
    out = np.empty_like(hwc)
    for i, image in enumerate(hwc):
        box = [int(v) for v in (top[i], left[i], max(height[i], 1), max(width[i], 1))]
        out[i] = vision.ResizedCrop(*box, size)(image)
    return out.transpose(0, 3, 1, 2)


def paths(batch, grey, repeats_rng):
    """{name: function} of every path to time on the float [-1, 1] batch (see the module doc)."""
    rng, hwc = repeats_rng, to_uint8_hwc(batch)
    rows = {"numpy_crop": lambda: views.geometry(batch * 0.5 + 0.5, rng, NO_BLUR),
            "numpy_colour": lambda: views.colour(batch * 0.5 + 0.5, rng, NO_BLUR),
            "numpy": lambda: views.augment(batch, rng, NO_BLUR),
            "to_uint8_hwc": lambda: to_uint8_hwc(batch)}
    crop, jitter = ms_random_ops(NO_BLUR, batch.shape[-1])
    rows.update({"ms_crop_eager": lambda: per_image([crop])(hwc),
                 "ms_seeded_crop_eager": lambda: ms_seeded_crop(batch, NO_BLUR, rng)})
    if grey:  # MindSpore's colour ops and PIL's grey need three channels
        return rows
    every = [crop, jitter] + ms_grey(NO_BLUR)
    rows.update({"ms_colour_eager": lambda: per_image([jitter])(hwc),
                 "ms_grey_eager": lambda: per_image(ms_grey(NO_BLUR))(hwc),
                 "ms_random_eager": lambda: per_image(every)(hwc),
                 "ms_random_pipeline": lambda: ms_random_pipeline(hwc, NO_BLUR),
                 "ms_seeded_eager": lambda: ms_seeded_eager(hwc, NO_BLUR, rng)})
    return rows


def main(argv=None):
    parser = ArgParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--grey", action="store_true", help="28x28 grey digits (use with --size 28)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    import mindspore.dataset as ds
    ds.config.set_seed(0)
    images, _ = load_split("", "train")
    batch = DigitRenderer(args.size, not args.grey)(images[:args.count], np.random.default_rng(0))
    times = interleaved(paths(batch, args.grey, np.random.default_rng(1)), args.repeats)
    for name, (wall, cpu) in times.items():
        print(json.dumps({"path": name, "images": args.count, "size": args.size,
                          "median_ms": round(statistics.median(wall), 1), "min_ms": round(min(wall), 1),
                          "cpu_median_ms": round(statistics.median(cpu), 1),
                          "load_1min": round(os.getloadavg()[0], 1)}), flush=True)


if __name__ == "__main__":
    run_main(main)
