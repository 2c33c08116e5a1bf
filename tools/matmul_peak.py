"""MindSpore's CPU MatMul rate at the image task's shapes, next to a square one: the ceiling a
training step's matmuls can reach on this processor (docs/performance.md compares the step's
matmul time with it).

    python -m tools.matmul_peak [--repeats 10] [--batch_size 32]

Each shape is one float32 MatMul in graph mode, called once to warm up, then `repeats` rounds that
call every shape once in turn (a change of a shared machine's load hits all alike). Prints one JSON
line: the processor and, per shape, m x k @ k x n, the GFLOP (2mkn) and GFLOP/s from the median and
the fastest call. The image task's shapes follow the 64x64 colour config (7x7 grid of 16x16
patches, 64 conv channels, 128-wide codes and context, 5 row offsets) at --batch_size images.
"""
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.utils.errors import ArgParser, ConfigError, run_main  # noqa: E402


def image_step_shapes(batch):
    """{name: (m, k, n)} of the image step's largest matmuls (64x64 colour config) and a square one."""
    patches, positions, queries = batch * 49, batch * 49, batch * 7 * (5 + 4 + 3 + 2 + 1)
    return {"square_2048": (2048, 2048, 2048),
            "conv_block1_forward": (patches * 16, 9 * 64, 64),   # im2col rows x (3x3 taps x channels)
            "conv_block1_weight_grad": (9 * 64, patches * 16, 64),
            "patch_logits": (queries, 128, positions),           # predictions x every patch code
            "context_dense": (positions, 9 * 128, 128),          # masked 3x3 conv over the code grid
            "predictor": (positions, 128, 5 * 128)}


def rates(shapes, repeats):
    """{name: (median GFLOP/s, best GFLOP/s)} of one MatMul per shape, interleaved."""
    import mindspore as ms
    from mindspore import Tensor, nn, ops

    class MatMul(nn.Cell):
        def construct(self, a, b):
            return ops.matmul(a, b)

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    net, rng = MatMul(), np.random.default_rng(0)
    inputs = {name: (Tensor(rng.random((m, k), np.float32)), Tensor(rng.random((k, n), np.float32)))
              for name, (m, k, n) in shapes.items()}
    times = {name: [] for name in shapes}
    for round_ in range(repeats + 1):  # round 0 warms up (compiles each shape)
        for name, (a, b) in inputs.items():
            start = time.perf_counter()
            net(a, b).asnumpy()
            if round_:
                times[name].append(time.perf_counter() - start)
    flop = {name: 2.0 * m * k * n for name, (m, k, n) in shapes.items()}
    return {name: (flop[name] / statistics.median(t) / 1e9, flop[name] / min(t) / 1e9) for name, t in times.items()}


def main(argv=None):
    parser = ArgParser(description="MindSpore's CPU MatMul GFLOP/s at the image task's shapes")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per shape")
    parser.add_argument("--batch_size", type=int, default=32, help="images per step (the config's batch_size)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch_size < 1:
        raise ConfigError("--repeats and --batch_size must be >= 1")
    from src.model.cpu.target import processor_name
    shapes = image_step_shapes(args.batch_size)
    measured = rates(shapes, args.repeats)
    print(json.dumps({"processor": processor_name(), "shapes": [
        {"name": name, "m": m, "k": k, "n": n, "gflop": round(2.0 * m * k * n / 1e9, 3),
         "gflops_median": round(measured[name][0], 1), "gflops_best": round(measured[name][1], 1)}
        for name, (m, k, n) in shapes.items()]}))


if __name__ == "__main__":
    run_main(main)
