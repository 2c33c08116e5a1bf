"""Shared fixtures and helpers: the repository root, a CPU graph-mode context, a tiny trained run,
IDX files written from arrays, checkpoints read back as arrays; and the two test tiers.

Tiers: a test is end to end, marked `slow`, when it starts a process (an entry point, a script, a
compiler: run_entry or subprocess in its source), uses a trained run (the fixtures in SLOW_FIXTURES),
or carries @pytest.mark.slow itself (in-process training). Everything else is the fast tier:
    python -m pytest -q tests -m "not slow"
"""
import gzip
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "config", "cpc_tiny.yaml")


SLOW_FIXTURES = {"tiny_run", "classify_run", "classifier"}
SLOW_SOURCE = ("run_entry(", "subprocess.")


def _starts_a_process(function):
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return any(word in source for word in SLOW_SOURCE)


def pytest_collection_modifyitems(items):
    for item in items:
        function = getattr(item, "function", None)
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or (function and _starts_a_process(function)):
            item.add_marker(pytest.mark.slow)


def run_entry(args, cwd=REPO, env=None, timeout=600):
    """Run `python <args>` (or a bash script) from the repo; returns CompletedProcess (text)."""
    cmd = args if args[0] == "bash" else [sys.executable] + args
    full_env = dict(os.environ, GLOG_v="3", **(env or {}))
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def error_lines(stderr):
    """stderr without MindSpore's own [WARNING]/[INFO] log lines."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]


def write_idx(path, array):
    """Write uint8 images [N, 28, 28] or labels [N] as an IDX file (gzip if path ends in .gz)."""
    from src.data.mnist import IMAGES_MAGIC, LABELS_MAGIC
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(header + array.tobytes())


def export_embedded_test_split(folder):
    """Write the embedded sample's test split as t10k-* IDX files (real MNIST digits, 1,000)."""
    from src.data.mnist import load_split
    os.makedirs(folder, exist_ok=True)
    images, labels = load_split("", "test")
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte"), images)
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte"), labels)
    return folder


def fake_mnist(folder, count, layout="flat", gz=False):
    """Write train and t10k IDX files of `count` random digits (labels cycle 0-9)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = (np.arange(count) % 10).astype(np.uint8)
    for prefix, sub in (("train", "train"), ("t10k", "test")):
        target = os.path.join(folder, sub) if layout == "split" else folder
        os.makedirs(target, exist_ok=True)
        suffix = ".gz" if gz else ""
        write_idx(os.path.join(target, f"{prefix}-images-idx3-ubyte{suffix}"), images)
        write_idx(os.path.join(target, f"{prefix}-labels-idx1-ubyte{suffix}"), labels)
    return images, labels


def bare_checkpoint(path):
    """A checkpoint without hyper-parameters of a net with code_size 16 (the tiny config says 32)."""
    import mindspore as ms

    from src.config import model_hparams, namespace
    from src.model.build import build_cpc
    net = build_cpc(model_hparams(namespace(image_size=28, color=False, padding="same", terms=2,
                                            predict_terms=2, code_size=16, hidden_size=32)), "cpu")
    ms.save_checkpoint(net, str(path))
    return str(path)


def checkpoint_arrays(path):
    """(parameters as numpy arrays, metadata) of a checkpoint, read by src.checkpoint."""
    from src import checkpoint
    params, meta = checkpoint.load(str(path))
    return {k: v.asnumpy() for k, v in params.items()}, meta


def _two_class(logits):
    """Digit logits [N, 10] as they are; a binary logit [N] or [N, 1] as [N, 2] = (0, logit), whose
    argmax is the prediction logit > 0."""
    logits = np.asarray(logits, np.float64)
    if logits.ndim == 2 and logits.shape[1] > 1:
        return logits
    logits = logits.reshape(-1)
    return np.stack([np.zeros_like(logits), logits], 1)


def assert_accuracy_matches(accuracy, reference_logits, labels, atol):
    """`accuracy` is that of an implementation whose logits agree with reference_logits to atol:
    it equals the reference's accuracy but for the near ties (top two logits within 2 * atol),
    whose argmax either implementation may flip. Two convolution forms are not bit-identical."""
    logits = _two_class(reference_logits)
    reference = float((logits.argmax(1) == np.asarray(labels)).mean())
    top = np.sort(logits, axis=1)[:, -2:]
    ties = int((top[:, 1] - top[:, 0] <= 2 * atol).sum())
    assert abs(accuracy - reference) <= ties / len(labels) + 1e-12, (accuracy, reference, ties)


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
    from src.model.classifier import build_classifier
    params, meta = checkpoint.load(path)
    net = build_classifier(meta["hparams"], meta["head"], "cpu")
    checkpoint.load_into(net, params, path)
    net.set_train(False)
    accuracy = next(r["accuracy"] for r in metrics["results"]
                    if r["method"] == "cpc_mlp" and r["label_fraction"] == 1.0)
    return path, net, accuracy
