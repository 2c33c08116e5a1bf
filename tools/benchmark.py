"""Benchmark: training step time, data generation rate, feeding overhead, encoder inference.

    python -m tools.benchmark --config_path config/cpc_mnist64_color.yaml --device_target CPU [--steps 30]

Prints one JSON line: step_ms_median / step_ms_min / samples_per_s of the training step on a fixed
pre-generated batch; fed_step_ms_median and feed_overhead_pct of the same step fed from the real
GeneratorDataset pipeline; data_sequences_per_s of the sequence generator on one worker;
images_per_s of the encoder in inference mode after the training steps, images_per_s_fresh the
same measured first, in a process that has run nothing else (each from the median call, and
*_best from the fastest); device_target, mindspore_version and encoder_form
(kernel: the compiled CPU kernels; gather: MindSpore's ops, CPC_CPU_KERNELS=0 or no compiler;
native: the device's conv2d).
task: image (the config's key) times the same way the image task's step (ImageCPC + patch InfoNCE
on a fixed batch of patch grids from its own PatchSource, then fed from its pipeline) and its
ImageEncoder (batch_size rendered whole images in, one pooled vector each out); the line then
says "task": "image", has data_images_per_s (images cut into patch grids per second) in place of
data_sequences_per_s, the patch keys in place of terms / predict_terms, and "parameters" (the
net's trainable scalars, to compare with tools/torch_reference.py's).
task: twoview and cmc (src/methods/twoview.py, cmc.py) time their training step on a fixed first
batch of their own source ((view1, view2, labels); (images, labels)) and its encoder on that
batch's images (both views for twoview; the CMCEncoder, Lab split and both encoders, for cmc); the
line says "task", "loss" and "parameters" and has data_images_per_s; the image task's view term
(view_ntxent_weight > 0) times its two-view step the same way.
--profile_path DIR also profiles 10 steps, and then 10 inference calls of the encoder (DIR/inference), with
mindspore.profiler.profile and prints the top operator types and parts of the net (Cell scopes) of each.
A benchmark, not a test: nothing here asserts a speed.
"""
import csv
import glob
import json
import os
import statistics
import sys

import mindspore as ms
import numpy as np

from src.config import model_hparams, parse_config
from src.data.dataset import create_dataset, render_digits
from src.data.mnist import load_split
from src.device import init_device
from src.methods import create_method
from src.model.backend import backend_for
from src.model.cpu.kernels import build_target
from src.model.cpu.target import processor_name
from src.train.trainer import build_train_cell
from src.utils.errors import ConfigError, batch_guard, run_main
from src.utils.paths import require_folder_target
from src.utils.timing import check_counts, inference_repeats, throughput, timed


def _extra(parser):
    parser.add_argument("--steps", type=int, default=30, help="timed training steps (>= 20 recommended)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation)")
    parser.add_argument("--profile_path", default="",
                        help="also run 10 steps under MindSpore's profiler, write its data here and print the "
                             "operator types that take the most time (to stderr)")


def profile_steps(step, path, target, what="steps", steps=10):
    """Run `step` under mindspore.profiler.profile (2.10's replacement of the deprecated
    ms.Profiler): one warm-up call, then `steps` recorded; print the op types and the parts of the
    net (Cell scopes) with the most time per call."""
    from mindspore.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler
    activities = [ProfilerActivity.CPU] + {"GPU": [ProfilerActivity.GPU], "Ascend": [ProfilerActivity.NPU]}.get(
        target, [])
    plan = schedule(wait=0, warmup=1, active=steps, repeat=1)
    with profile(activities=activities, schedule=plan, on_trace_ready=tensorboard_trace_handler(path)) as prof:
        for _ in range(1 + steps):
            step()
            prof.step()
    tables = glob.glob(os.path.join(path, "**", "cpu_op_detail_info_*.csv"), recursive=True)
    if not tables:
        print(f"profiler data in {path} (no CPU operator table found)", file=sys.stderr)
        return
    with open(tables[0], encoding="utf-8") as handle:
        rows = [(row["op_type"], row["full_op_name"], float(row["op_total_time(ms)"]) / steps)
                for row in csv.DictReader(handle)]
    print(f"profiler data in {path}; {what}, ms per call ({steps} calls):", file=sys.stderr)
    print_top("operator type", [(kind, ms_) for kind, _, ms_ in rows], steps)
    print_top("part of the net", [(op_scope(name), ms_) for _, name, ms_ in rows], steps)


def op_scope(full_name, depth=3):
    """The Cell scope of an operator's full name, `depth` Cells deep, its Cell classes dropped and
    "grad " before a gradient's: Gradients/Default/net-ImageCPC/context-MaskedContext/... -> "grad
    net/context/..."; operators MindSpore made by expanding a composite op keep their own name."""
    parts = full_name.split("/")
    if parts[0] == "Expand":
        return "/".join(parts[:2]) + " (expanded op)"
    grad = parts[0] == "Gradients"
    cells = [p.split("-")[0] for p in parts[:-1] if p not in ("Gradients", "Default") and not p.startswith("Grad_")]
    return ("grad " if grad else "") + ("/".join(cells[:depth]) or parts[-1].split("-")[0])


def print_top(title, timed_keys, steps, top=12):
    """The `top` keys by their summed time, on stderr: ms per call, share and count of operators."""
    totals, counts = {}, {}
    for key, ms_ in timed_keys:
        totals[key] = totals.get(key, 0.0) + ms_
        counts[key] = counts.get(key, 0) + 1
    whole = sum(totals.values())
    print(f"  by {title} (all: {whole:.1f} ms per call):", file=sys.stderr)
    for key in sorted(totals, key=lambda k: -totals[k])[:top]:
        print(f"    {key[:60]:<60} {totals[key]:8.1f} ms {100 * totals[key] / whole:5.1f}%  x{counts[key]}",
              file=sys.stderr)


def loss_value(output):
    """The loss of a train cell's output (a Tensor, or (loss, overflow, scale) under loss scaling);
    reading it waits for the step to finish."""
    return float((output[0] if isinstance(output, tuple) else output).asnumpy())


class BenchInputs:
    """What the benchmark needs from a task: the encoder's inference batch (numpy images), the form of
    its first conv, the JSON fields that say what was timed (in the line's order, after batch_size)
    and the key of the data generation rate."""

    def __init__(self, images, encoder_form, fields, data_key):
        self.images, self.encoder_form, self.fields, self.data_key = images, encoder_form, fields, data_key


def trainable_scalars(net):
    """Number of trainable parameter values (tools/torch_reference.py prints the same count)."""
    return sum(int(np.prod(p.shape)) for p in net.trainable_params())


def sequence_inputs(cfg, source, net, data):
    """The sequence task: the encoder sees the first batch's context and future images as one batch
    (data unused: the batch holds its images)."""
    x, y = source[0][:2]
    images = np.concatenate([x, y], axis=1).reshape((-1,) + x.shape[2:])
    return BenchInputs(images, net.encoder.blocks[0].conv.form,
                       {"terms": cfg.terms, "predict_terms": cfg.predict_terms, "loss": cfg.loss},
                       "data_sequences_per_s")


def image_inputs(cfg, source, net, data):
    """The image task: the ImageEncoder sees batch_size whole rendered digits (the classifier's
    rendering; it cuts them into the patch grid itself), as many as one training batch holds
    (source unused: its batches are patch grids already)."""
    digits = data[0][np.arange(cfg.batch_size) % len(data[0])]  # the split's first, repeated if it is smaller
    images = render_digits(digits, cfg.image_size, cfg.color, cfg.seed, "train")
    return BenchInputs(images, net.encoder.patch_encoder.blocks[0].conv.form,
                       {"task": "image", "patch_size": cfg.patch_size, "patch_stride": cfg.patch_stride,
                        "grid": net.grid, "offsets": len(net.offsets), "norm": cfg.norm,
                        "context_layers": cfg.context_layers, "loss": create_method(cfg.task).loss_name(cfg),
                        "parameters": trainable_scalars(net)},
                       "data_images_per_s")


def method_fields(cfg, net):
    """The JSON fields of the two-view methods: task, loss and trainable scalars."""
    return {"task": cfg.task, "loss": create_method(cfg.task).loss_name(cfg), "parameters": trainable_scalars(net)}


def twoview_inputs(cfg, source, net, data):
    """Task twoview: the encoder sees both views of the first batch (2 x batch_size images, as the
    step's one pass through the net)."""
    images = np.concatenate(source[0][:2])
    return BenchInputs(images, net.encoder.blocks[0].conv.form, method_fields(cfg, net), "data_images_per_s")


def cmc_inputs(cfg, source, net, data):
    """Task cmc: the CMCEncoder (Lab split, both encoders) sees the first batch's RGB images."""
    return BenchInputs(source[0][0], net.encoder.l.blocks[0].conv.form, method_fields(cfg, net),
                       "data_images_per_s")


BENCH_INPUTS = {"sequence": sequence_inputs, "image": image_inputs, "twoview": twoview_inputs, "cmc": cmc_inputs}


def fed_step_times(train_cell, source, cfg):
    """Times of cfg.steps training steps fed from the real GeneratorDataset pipeline (after cfg.warmup)."""
    rows = create_dataset(source, cfg.num_parallel_workers).create_tuple_iterator(num_epochs=1)
    def fed_step():
        return loss_value(train_cell(*next(rows)))
    timed(fed_step, cfg.warmup)
    fed = timed(fed_step, cfg.steps)
    rows.stop()  # its workers would go on prefetching batches beside the timings that follow
    return fed


def generation_times(source, steps):
    """Times of making one batch at a random index (the image task's two-view source names its
    maker make_views)."""
    make = getattr(source, "make_batch", None) or source.make_views
    return timed(lambda: make(np.random.randint(1 << 30)), max(10, steps // 2))


def measure(cfg, target):
    """The JSON line's fields: every timing of the module docstring, for the config's task."""
    data = load_split(cfg.data_path, "train")
    source = create_method(cfg.task).build_source(cfg, "train", cfg.warmup + cfg.steps, data=data)
    net = create_method(cfg.task).build_net(model_hparams(cfg), backend_for(target))
    inputs = BENCH_INPUTS[cfg.task](cfg, source, net, data)
    images = ms.Tensor(inputs.images)

    def encoder_images_per_s():
        net.set_train(False)
        def encode():
            return net.encoder(images).asnumpy()
        return throughput(encode, int(images.shape[0]), inference_repeats(cfg.steps))

    fresh_inference = encoder_images_per_s()  # before anything else ran in this process
    train_cell, _ = build_train_cell(net, cfg, target)
    train_cell.set_train()

    # (x, y, label) or (x, y, negatives, valid) for the sequence task, (patches,) or (patches, patches2)
    # for the image task, (view1, view2, labels) for twoview, (images, labels) for cmc
    row = tuple(ms.Tensor(a) for a in source[0])
    def step():
        return loss_value(train_cell(*row))
    timed(step, cfg.warmup)
    fixed = timed(step, cfg.steps)

    fed = fed_step_times(train_cell, source, cfg)

    if cfg.profile_path:
        profile_steps(step, cfg.profile_path, cfg.device_target)

    generate = generation_times(source, cfg.steps)

    inference = encoder_images_per_s()  # after the training steps
    if cfg.profile_path:
        profile_steps(lambda: net.encoder(images).asnumpy(), os.path.join(cfg.profile_path, "inference"),
                      cfg.device_target, "encoder inference calls")

    median = statistics.median(fixed)
    fed_median = statistics.median(fed)
    return {
        "framework": "mindspore", "mindspore_version": ms.__version__, "device_target": target,
        "processor": processor_name(), "kernel_flags": " ".join(build_target()[0]) or "portable",
        "mode": cfg.mode, "encoder_form": inputs.encoder_form, "image_size": cfg.image_size,
        "color": cfg.color, "batch_size": cfg.batch_size, **inputs.fields, "steps": cfg.steps,
        "step_ms_median": round(1000 * median, 2), "step_ms_min": round(1000 * min(fixed), 2),
        "samples_per_s": round(cfg.batch_size / median, 1),
        "fed_step_ms_median": round(1000 * fed_median, 2),
        "feed_overhead_pct": round(100 * (fed_median / median - 1), 1),
        inputs.data_key: round(cfg.batch_size / statistics.median(generate), 1),
        "images_per_s": round(inference[0], 1), "images_per_s_best": round(inference[1], 1),
        "images_per_s_fresh": round(fresh_inference[0], 1), "images_per_s_fresh_best": round(fresh_inference[1], 1),
        "num_parallel_workers": cfg.num_parallel_workers}


def check_profile_path(cfg):
    """--profile_path is a folder or can become one: checked before anything is timed (MindSpore's
    profiler would refuse it only after the whole benchmark)."""
    if cfg.profile_path:
        cfg.profile_path = os.path.abspath(require_folder_target(cfg.profile_path, "--profile_path", ConfigError))
        existing = os.path.dirname(cfg.profile_path)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise ConfigError(f"--profile_path {cfg.profile_path} cannot be made: {existing} is a file")


def main(argv=None):
    cfg = parse_config(argv, description="Benchmark the CPC training step", extra_args=_extra)
    check_counts(cfg.steps, cfg.warmup)
    check_profile_path(cfg)
    target = init_device(cfg)
    with batch_guard("batch_size", cfg.batch_size):  # memory running out: one line, not a framework stack
        print(json.dumps(measure(cfg, target)))


if __name__ == "__main__":
    run_main(main)
