"""Shared fixtures: the repository root, a CPU graph-mode context, a tiny trained run."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "config", "cpc_tiny.yaml")


def run_entry(args, cwd=REPO, env=None, timeout=600):
    """Run `python <args>` (or a bash script) from the repo; returns CompletedProcess (text)."""
    cmd = args if args[0] == "bash" else [sys.executable] + args
    full_env = dict(os.environ, GLOG_v="3", **(env or {}))
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def error_lines(stderr):
    """stderr without MindSpore's own [WARNING]/[INFO] log lines."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]


@pytest.fixture(scope="session")
def ms_cpu():
    """MindSpore in graph mode on CPU (set once per test session)."""
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    return ms


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One tiny training run through train.py: its output folder and metrics."""
    out = tmp_path_factory.mktemp("tiny_run")
    proc = run_entry(["train.py", "--config_path", TINY, "--output_path", str(out)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(out / "metrics.json", encoding="utf-8") as handle:
        return out, json.load(handle)


@pytest.fixture(scope="session")
def classify_run(tiny_run, tmp_path_factory):
    """eval.py --task classify on tiny_run's checkpoint (10% and 100% labels): (run folder, output
    folder, downstream_metrics.json, stdout)."""
    run_dir, _ = tiny_run
    out = tmp_path_factory.mktemp("classify")
    proc = run_entry(["eval.py", "--task", "classify", "--config_path", TINY,
                      "--ckpt_path", str(run_dir / "cpc_best.ckpt"), "--output_path", str(out),
                      "--label_fractions", "0.1,1.0"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(out / "downstream_metrics.json", encoding="utf-8") as handle:
        return run_dir, out, json.load(handle), proc.stdout


@pytest.fixture(scope="session")
def classifier(ms_cpu, classify_run):
    """(checkpoint path, Cell, eval.py's accuracy): classifier.ckpt of eval.py --task classify
    (tiny_run's frozen encoder + the MLP head trained on all labels), rebuilt as a Cell."""
    _, out, metrics, _ = classify_run
    path = str(out / "classifier.ckpt")
    from src import checkpoint  # MindSpore is imported by the fixtures that need it, not by conftest
    from src.classifier import build_classifier
    params, meta = checkpoint.load(path)
    net = build_classifier(meta["hparams"], meta["head"], fast_conv=True)
    checkpoint.load_into(net, params, path)
    net.set_train(False)
    accuracy = next(r["accuracy"] for r in metrics["results"] if r["method"] == "cpc_mlp" and r["label_fraction"] == 1.0)
    return path, net, accuracy
