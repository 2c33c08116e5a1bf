"""Python stand-in for ascend310_infer's C++ program: same flags, same files, MindSpore's own runtime.

    python -m tools.mindir_infer --mindir_path M.mindir --input_path PRE --result_path RES [--device_type CPU]

Loads the MINDIR with mindspore.load + nn.GraphCell, feeds each batch of PRE/00_data (and
PRE/01_data, ... for nets with more inputs), writes RES/<name>_<output>.bin and RES/latency.json,
exactly as ascend310_infer/src/main.cc does with MindSpore Lite. It lets the whole
preprocess -> infer -> postprocess chain run (and be tested) where no Lite package is installed;
scripts/run_infer_310.sh uses it with INFER_RUNNER=python. No preprocessing here either.
"""
import os
import time

import numpy as np

from src.config import ArgParser
from src.deploy import infer_io
from src.device import unavailable_reason
from src.utils.errors import CPCError, first_line, run_main
from src.utils.runlog import write_json

DEVICE_TYPES = ("Ascend", "GPU", "CPU")


def parse_args(argv):
    parser = ArgParser(description="Run an exported MINDIR over .bin inputs with MindSpore")
    parser.add_argument("--mindir_path", required=True)
    parser.add_argument("--input_path", required=True, help="folder written by preprocess.py")
    parser.add_argument("--result_path", required=True, help="folder for <name>_<output>.bin and latency.json")
    parser.add_argument("--device_type", default="CPU", choices=DEVICE_TYPES)
    parser.add_argument("--device_id", type=int, default=0)
    return parser.parse_args(argv)


def summarise(latencies_ms, runner, device_type):
    """The latency.json record (the C++ program writes the same keys)."""
    values = np.asarray(latencies_ms)
    return {"runner": runner, "device_type": device_type, "batches": int(values.size),
            "mean_ms": round(float(values.mean()), 4), "median_ms": round(float(np.median(values)), 4),
            "min_ms": round(float(values.min()), 4),
            "max_ms": round(float(values.max()), 4)}


def main(argv=None):
    args = parse_args(argv)
    shapes = infer_io.mindir_inputs(args.mindir_path)
    names = infer_io.batch_names(args.input_path)
    import mindspore as ms  # after the argument checks: importing MindSpore takes seconds
    from mindspore import nn
    reason = unavailable_reason(args.device_type)
    if reason is not None:
        raise CPCError(f"device_type {args.device_type} is not available on this machine: {reason} (use CPU)")
    ms.set_context(mode=ms.GRAPH_MODE)
    if args.device_type == "CPU":
        ms.set_device("CPU")
    else:
        ms.set_device(args.device_type, args.device_id)
    try:
        graph = nn.GraphCell(ms.load(args.mindir_path))
    except (RuntimeError, ValueError) as exc:
        raise CPCError(f"cannot load {args.mindir_path}: {first_line(exc)}") from None
    os.makedirs(args.result_path, exist_ok=True)
    latencies = []
    for name in names:
        inputs = [ms.Tensor(infer_io.read_bin(os.path.join(infer_io.input_dir(args.input_path, k), name), shape))
                  for k, shape in enumerate(shapes)]
        start = time.perf_counter()
        outputs = graph(*inputs)
        outputs = [o.asnumpy() for o in (outputs if isinstance(outputs, (tuple, list)) else (outputs,))]
        latencies.append(1000 * (time.perf_counter() - start))
        for j, out in enumerate(outputs):
            infer_io.write_bin(os.path.join(args.result_path, infer_io.result_name(name, j)), out)
    record = summarise(latencies, "mindspore_python", args.device_type)
    write_json(os.path.join(args.result_path, infer_io.LATENCY), record)
    print(f"{len(names)} batches -> {args.result_path}; predict {record['mean_ms']:.2f} ms per batch on average")


if __name__ == "__main__":
    run_main(main)
