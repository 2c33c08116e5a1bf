"""Device check: does training on Ascend/GPU follow the CPU, and does its exported MINDIR run?

    python -m tools.device_check --work_dir DIR [--device_target auto|Ascend|GPU|CPU] [flags]

(scripts/run_device_check.sh wraps it.) Four steps, each a subprocess of the normal entry points:
  1. train.py on the device: its default data sinking, amp_level O2, a fixed seed;
  2. train.py on CPU: the same seed and data, amp_level O0;
  3. compare the two metrics.json (per-epoch training loss, final validation accuracy);
  4. export.py --net encoder of the device's encoder_best.ckpt to MINDIR, then run it on the device
     through mindspore.load + nn.GraphCell next to the Cell built from the same checkpoint.
Prints a small table and, last, one line: PASS or "FAIL: reason" (exit 0 / 1; bad input: exit 2).
Where no Ascend/GPU is found (or with --device_target CPU) both runs are on CPU with amp O0: a dry
run of the script itself, which says so; it checks no device.
"""
import argparse
import json
import logging
import os
import subprocess
import sys

import numpy as np

from src.utils.errors import ArgParser, CPCError, run_main

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO_ROOT, "config", "cpc_mnist28_gray.yaml")
# 2 x 100 steps of the 28x28 grey config: on CPU (2 cores) the mean loss goes 0.425 -> 0.062 and
# validation accuracy reaches 0.978 (python train.py --config_path config/cpc_mnist28_gray.yaml
# --device_target CPU --epoch_size 2 --steps_per_epoch 100 --val_steps 10; about 45 s).
EPOCHS, STEPS, VAL_STEPS, SEED = 2, 100, 10, 0
# Tolerances. float16 (O2) and other kernels make the device's trajectory drift away from the CPU's
# from the first steps on, so the curves can only agree statistically. Most of epoch 1's mean loss
# is decided by when learning takes off (the CPU's step losses fall from 0.69 to 0.25 between steps
# 20 and 100), so a take-off some ten steps earlier or later moves it by about 0.1: 0.15 allows that,
# while a device run that does not learn (0.69 throughout) is 0.27 off in epoch 1 and 0.63 in
# epoch 2. The final validation accuracy (chance 0.5) must reach 0.9 and be within 0.05 of the CPU's.
LOSS_ATOL = 0.15
VAL_ACC_ATOL = 0.05
MIN_VAL_ACCURACY = 0.9
# The MINDIR and the Cell run the same float32 graph on the same device; only kernel selection and
# fusion differ, so their outputs agree to ~1e-6. 1e-3 of the output scale leaves room for a
# backend that computes convolutions in float16 while still catching a wrong or missing weight.
MINDIR_RTOL = 1e-3
EXPORT_BATCH = 8


def compare_runs(device, cpu, loss_atol=LOSS_ATOL, acc_atol=VAL_ACC_ATOL, min_acc=MIN_VAL_ACCURACY):
    """Compare two metrics.json dicts. Returns (rows, failures): rows (check, device, cpu, limit, ok)
    for the table, failures one short phrase each (empty: the device run followed the CPU run)."""
    rows, failures = [], []
    dev_hist, cpu_hist = device.get("history") or [], cpu.get("history") or []
    if not dev_hist or len(dev_hist) != len(cpu_hist):
        return rows, [f"the runs have {len(dev_hist)} and {len(cpu_hist)} epochs of history"]
    for dev, ref in zip(dev_hist, cpu_hist):
        d, c = float(dev["loss"]), float(ref["loss"])
        ok = bool(np.isfinite(d)) and abs(d - c) <= loss_atol
        rows.append((f"epoch {dev['epoch']} loss", f"{d:.4f}", f"{c:.4f}", f"+-{loss_atol}", ok))
        if not ok:
            failures.append(f"epoch {dev['epoch']} loss {d:.4f} is not within {loss_atol} of the CPU's {c:.4f}")
    first, last = float(dev_hist[0]["loss"]), float(dev_hist[-1]["loss"])
    if len(dev_hist) > 1 and not last < first:
        failures.append(f"the device loss did not fall ({first:.4f} -> {last:.4f})")
    d, c = float(device["val_accuracy"]), float(cpu["val_accuracy"])
    ok = d >= min_acc and abs(d - c) <= acc_atol
    rows.append(("final val_accuracy", f"{d:.4f}", f"{c:.4f}", f">={min_acc}, +-{acc_atol}", ok))
    if d < min_acc:
        failures.append(f"final val_accuracy {d:.4f} is below {min_acc}")
    elif abs(d - c) > acc_atol:
        failures.append(f"final val_accuracy {d:.4f} is not within {acc_atol} of the CPU's {c:.4f}")
    return rows, failures


def compare_outputs(graph_out, cell_out, rtol=MINDIR_RTOL):
    """(max |difference|, limit, ok) between the MINDIR's and the Cell's outputs."""
    graph_out, cell_out = np.asarray(graph_out, np.float64), np.asarray(cell_out, np.float64)
    if graph_out.shape != cell_out.shape:
        return float("inf"), 0.0, False
    diff = float(np.max(np.abs(graph_out - cell_out))) if graph_out.size else 0.0
    limit = rtol * max(1.0, float(np.max(np.abs(cell_out))) if cell_out.size else 1.0)
    return diff, limit, bool(np.isfinite(diff)) and diff <= limit


def _mindir_vs_cell(args):
    """Child process: run the MINDIR (mindspore.load + GraphCell) and the encoder Cell built from the
    checkpoint on the same random batch on args.device_target; print one JSON line."""
    import mindspore as ms
    from mindspore import nn

    from src import checkpoint
    from src.config import namespace
    from src.deploy import nets as deploy
    from src.device import init_device
    init_device(namespace(device_target=args.device_target, seed=SEED))
    params, meta = checkpoint.load(args.ckpt_path)
    hparams = meta["hparams"]
    cell = deploy.build_inference_net("encoder", hparams, params, meta, args.ckpt_path)
    (example,) = deploy.example_inputs("encoder", hparams, EXPORT_BATCH)
    batch = np.random.default_rng(SEED).random(example.shape, dtype=np.float32)
    graph = nn.GraphCell(ms.load(args.mindir_path))
    graph_out = graph(ms.Tensor(batch)).asnumpy()
    cell_out = cell(ms.Tensor(batch)).asnumpy()
    diff, limit, ok = compare_outputs(graph_out, cell_out)
    print(json.dumps({"max_abs_diff": diff, "limit": limit, "ok": ok, "shape": list(graph_out.shape)}))


def _run(name, cmd, work_dir):
    """Run one step; its output goes to work_dir/<name>.log. CPCError naming the step's last error line."""
    log_path = os.path.join(work_dir, f"{name}.log")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log.write(proc.stdout)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip() and not ln.startswith("[")]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise StepFailed(f"{name} failed ({last}); see {log_path}")
    return proc.stdout


class StepFailed(Exception):
    """A step of the check did not complete: the check fails (exit 1), it is not a usage error."""


def _metrics(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def check(args):
    """Run the check; returns (table rows, failures, target, dry_run)."""
    from src.device import resolve_device_target
    target = resolve_device_target(args.device_target)
    dry_run = target == "CPU"
    amp = "O0" if dry_run else "O2"
    py = sys.executable
    common = ["--config_path", args.config_path, "--seed", str(SEED), "--epoch_size", str(args.epoch_size),
              "--steps_per_epoch", str(args.steps_per_epoch), "--val_steps", str(args.val_steps),
              "--log_interval", str(max(1, args.steps_per_epoch // 2))]
    runs = {"device": (target, amp), "cpu": ("CPU", "O0")}
    metrics = {}
    for name, (where, level) in runs.items():
        out = os.path.join(args.work_dir, name)
        _run(f"train_{name}", [py, "train.py", *common, "--device_target", where, "--amp_level", level,
                               "--output_path", out], args.work_dir)
        metrics[name] = _metrics(os.path.join(out, "metrics.json"))
    rows, failures = compare_runs(metrics["device"], metrics["cpu"], min_acc=args.min_val_accuracy)
    ckpt = os.path.join(args.work_dir, "device", "encoder_best.ckpt")
    mindir = os.path.join(args.work_dir, "encoder")
    _run("export", [py, "export.py", "--config_path", args.config_path, "--device_target", target, "--net",
                    "encoder", "--ckpt_path", ckpt, "--file_name", mindir, "--file_format", "MINDIR",
                    "--batch_size", str(EXPORT_BATCH)], args.work_dir)
    out = _run("mindir_vs_cell", [py, "-m", "tools.device_check", "--mindir_vs_cell", "--device_target", target,
                                  "--ckpt_path", ckpt, "--mindir_path", mindir + ".mindir"], args.work_dir)
    result = json.loads(out.strip().splitlines()[-1])
    rows.append(("MINDIR vs Cell max|diff|", f"{result['max_abs_diff']:.2e}", "-", f"<={result['limit']:.1e}",
                 result["ok"]))
    if not result["ok"]:
        failures.append(f"the exported MINDIR differs from the Cell by {result['max_abs_diff']:.3g} "
                        f"(limit {result['limit']:.3g})")
    return rows, failures, target, dry_run


def table(rows, target, amp):
    """The comparison as aligned text."""
    header = ("check", f"{target} ({amp})", "CPU (O0)", "limit", "result")
    body = [(name, dev, cpu, limit, "ok" if ok else "FAIL") for name, dev, cpu, limit, ok in rows]
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header] + body)


def parse_args(argv):
    parser = ArgParser(prog="python -m tools.device_check", description=__doc__.split("\n")[0])
    parser.add_argument("--device_target", default="auto", choices=("auto", "Ascend", "GPU", "CPU"))
    parser.add_argument("--work_dir", help="folder for the runs, the MINDIR and the step logs")
    parser.add_argument("--config_path", default=CONFIG)
    parser.add_argument("--epoch_size", type=int, default=EPOCHS)
    parser.add_argument("--steps_per_epoch", type=int, default=STEPS)
    parser.add_argument("--val_steps", type=int, default=VAL_STEPS)
    parser.add_argument("--min_val_accuracy", type=float, default=MIN_VAL_ACCURACY,
                        help="floor of the device's final validation accuracy (for the default 2 x 100 steps)")
    parser.add_argument("--mindir_vs_cell", action="store_true", help=argparse.SUPPRESS)  # the child step
    parser.add_argument("--ckpt_path", help=argparse.SUPPRESS)
    parser.add_argument("--mindir_path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mindir_vs_cell:
        return args
    if not args.work_dir:
        raise CPCError("--work_dir is required: the folder for the runs")
    if not os.path.isfile(args.config_path):
        raise CPCError(f"config_path not found: {args.config_path}")
    for name in ("epoch_size", "steps_per_epoch", "val_steps"):
        if getattr(args, name) < 1:
            raise CPCError(f"--{name} must be >= 1, got {getattr(args, name)}")
    args.work_dir, args.config_path = os.path.abspath(args.work_dir), os.path.abspath(args.config_path)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.mindir_vs_cell:
        return _mindir_vs_cell(args)
    os.makedirs(args.work_dir, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # why auto got CPU
    try:
        rows, failures, target, dry_run = check(args)
    except StepFailed as exc:
        print(f"FAIL: {exc}")
        sys.exit(1)
    print(table(rows, target, "O0" if dry_run else "O2"))
    if dry_run:
        print("DRY RUN: no Ascend or GPU was used; both runs were on CPU with amp_level O0, so this checked "
              "the script, not a device")
    if failures:
        print("FAIL: " + "; ".join(failures))
        sys.exit(1)
    print("PASS (dry run on CPU)" if dry_run else f"PASS ({target})")


if __name__ == "__main__":
    run_main(main)
