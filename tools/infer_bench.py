"""Classifier latency side by side on CPU: MindSpore Lite C++ (ascend310_infer/out/main),
MindSpore's Python runner (tools/mindir_infer.py) and onnxruntime, at several batch sizes.

    python -m tools.infer_bench [--ckpt_path EVAL/classifier.ckpt | --config_path CONFIG] [--batch_sizes 1,32]
                              [--images 256] [--output_path DIR]

(scripts/run_infer_bench.sh fetches the Lite wheel and builds ascend310_infer first.) For each batch
size B the classifier is exported as MINDIR (the Python runner) and ONNX (onnxruntime; converted
by ascend310_infer/out/convert into the MINDIR that Lite 2.0 reads); the first --images test digits
(src.data.dataset.render_digits, padded to whole batches) are written once in preprocess.py's layout,
and each runner predicts every batch of them. Reported: the median predict time per batch divided
by B (ms per image), each runtime with its default CPU threads; and the largest difference of Lite's
and onnxruntime's outputs from the Python runner's. Without --ckpt_path the classifier of the
config is built with its initial parameters (latency does not depend on the weights' values).
Writes DIR/infer_bench.json and prints a Markdown table.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from src.config import DEFAULT_CONFIG, ArgParser, model_hparams, parse_config
from src.deploy import infer_io
from src.utils.errors import ConfigError, CPCError, run_main
from src.utils.runlog import write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "ascend310_infer", "out")


def parse_args(argv):
    parser = ArgParser(description="Classifier latency: Lite C++, MindSpore Python runner, onnxruntime (CPU)")
    parser.add_argument("--ckpt_path", default="", help="classifier.ckpt; empty: the config's classifier, "
                                                        "initial parameters")
    parser.add_argument("--config_path", default=DEFAULT_CONFIG, help="config giving the net when no --ckpt_path")
    parser.add_argument("--batch_sizes", default="1,32", help="comma-separated exported batch sizes")
    parser.add_argument("--images", type=int, default=256, help="test digits predicted per runner and batch size")
    parser.add_argument("--output_path", default="", help="folder for infer_bench.json and the files (default: a "
                                                          "temporary folder)")
    args = parser.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        raise ConfigError(f"--batch_sizes must be comma-separated integers, got '{args.batch_sizes}'") from None
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        raise ConfigError(f"--batch_sizes must be >= 1, got {args.batch_sizes}")
    if args.images < 1:
        raise ConfigError(f"--images must be >= 1, got {args.images}")
    for name in ("main", "convert"):
        if not os.access(os.path.join(OUT, name), os.X_OK):
            raise CPCError(f"no ascend310_infer/out/{name}: build it first (bash scripts/run_infer_bench.sh does)")
    return args


def run(cmd, what):
    """Run a command from the repository; CPCError with its last line if it fails."""
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ, GLOG_v="3"))
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip() and not line.startswith("[")]
        raise CPCError(f"{what} failed (exit {proc.returncode}): {lines[-1] if lines else ''}")
    return proc.stdout


def classifier_ckpt(args, folder):
    """The checkpoint to export: --ckpt_path, or the config's classifier with initial parameters."""
    if args.ckpt_path:
        return args.ckpt_path, "checkpoint " + os.path.abspath(args.ckpt_path)
    import mindspore as ms

    from src import checkpoint
    from src.model.classifier import build_classifier
    cfg = parse_config(["--config_path", args.config_path])
    ms.set_seed(cfg.seed)
    hparams = model_hparams(cfg)
    path = os.path.join(folder, "classifier_init.ckpt")
    checkpoint.save(build_classifier(hparams, "mlp", "cpu"), path,
                    {"kind": "classifier", "hparams": hparams, "head": "mlp"})
    return path, f"initial parameters of {os.path.relpath(cfg.config_path, REPO)}"


def write_inputs(folder, mindir, images_wanted):
    """preprocess.py's layout for the first images_wanted test digits; the batch files' names."""
    import preprocess
    from src.data.dataset import render_digits
    from src.data.mnist import load_split
    _, batch, (channels, size, _), _ = preprocess.model_inputs(mindir)
    images, labels = load_split("", "test")
    pixels = render_digits(images[:images_wanted], size, channels == 3, 0, "test")
    preprocess.write_batches(folder, pixels, labels[:images_wanted], batch, {"batch_size": batch})
    return infer_io.batch_names(folder), [batch, channels, size, size]


def read_results(folder, names):
    return np.concatenate([np.fromfile(os.path.join(folder, infer_io.result_name(n, 0)), np.float32) for n in names])


def onnx_median_ms(onnx_path, pre, names, shape):
    import onnxruntime as ort
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    times, outputs = [], []
    for name in names:
        x = infer_io.read_bin(os.path.join(infer_io.input_dir(pre, 0), name), shape)
        start = time.perf_counter()
        (y,) = session.run(None, {feed: x})
        times.append(1000 * (time.perf_counter() - start))
        outputs.append(y.reshape(-1))
    return float(np.median(times)), np.concatenate(outputs)


def bench_batch(ckpt, batch, folder, images):
    """{runner: ms per image}, {runner: max |output - Python runner's|}, batches at one batch size."""
    stem = os.path.join(folder, f"classifier_b{batch}")
    for fmt in ("MINDIR", "ONNX"):
        run([sys.executable, "export.py", "--ckpt_path", ckpt, "--net", "classifier", "--file_format", fmt,
             "--batch_size", str(batch), "--file_name", stem], f"export.py --file_format {fmt}")
    lite = stem + "_lite.mindir"
    run([os.path.join(OUT, "convert"), "--onnx_path", stem + ".onnx", "--output_path", lite], "convert")
    pre = os.path.join(folder, f"pre_b{batch}")
    shutil.rmtree(pre, ignore_errors=True)  # a rerun into the same --output_path starts afresh
    names, shape = write_inputs(pre, lite, images)
    medians, outputs = {}, {}
    for runner, cmd in (("lite_cpp", [os.path.join(OUT, "main"), "--mindir_path", lite, "--device_type", "CPU"]),
                        ("mindspore_python", [sys.executable, "-m", "tools.mindir_infer", "--mindir_path",
                                              stem + ".mindir", "--device_type", "CPU"])):
        res = os.path.join(folder, f"res_b{batch}_{runner}")
        run(cmd + ["--input_path", pre, "--result_path", res], runner)
        with open(os.path.join(res, infer_io.LATENCY), encoding="utf-8") as handle:
            medians[runner] = json.load(handle)["median_ms"]
        outputs[runner] = read_results(res, names)
    medians["onnxruntime"], outputs["onnxruntime"] = onnx_median_ms(stem + ".onnx", pre, names, shape)
    per_image = {k: v / batch for k, v in medians.items()}
    diff = {k: float(np.abs(outputs[k] - outputs["mindspore_python"]).max()) for k in ("lite_cpp", "onnxruntime")}
    return per_image, diff, len(names)


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="infer_bench_") as scratch:
        folder = os.path.abspath(args.output_path) if args.output_path else scratch
        os.makedirs(folder, exist_ok=True)
        ckpt, source = classifier_ckpt(args, folder)
        rows = []
        for batch in args.batch_sizes:
            per_image, diff, batches = bench_batch(ckpt, batch, folder, args.images)
            rows.append({"batch_size": batch, "batches": batches, "ms_per_image": per_image,
                         "max_abs_diff_vs_mindspore": diff})
        record = {"classifier": source, "images": args.images, "cpu_count": os.cpu_count(), "rows": rows}
        write_json(os.path.join(folder, "infer_bench.json"), record)
    print(f"classifier: {source}; {args.images} test digits per runner; median predict time per batch / batch size")
    print("| batch | Lite 2.0 C++ (`out/main`) | MindSpore Python runner | onnxruntime "
          "| max abs diff Lite / ORT vs MindSpore |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        ms_ = row["ms_per_image"]
        d = row["max_abs_diff_vs_mindspore"]
        print(f"| {row['batch_size']} | {ms_['lite_cpp']:.3f} ms | {ms_['mindspore_python']:.3f} ms | "
              f"{ms_['onnxruntime']:.3f} ms | {d['lite_cpp']:.1e} / {d['onnxruntime']:.1e} |")
    if args.output_path:
        print(f"-> {os.path.join(os.path.abspath(args.output_path), 'infer_bench.json')}")


if __name__ == "__main__":
    run_main(main)
