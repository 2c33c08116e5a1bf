"""Shared fixtures and helpers: the repository root, a CPU graph-mode context, a tiny trained run,
IDX files written from arrays, checkpoints read back as arrays; and the two test tiers.

Tiers: a test is end to end, in the `slow` tier, when it is marked so (@pytest.mark.slow, or a
module's `pytestmark`: it starts a process, an entry point, a script or a compiler, or trains in
process) or uses a trained run (the fixtures in SLOW_FIXTURES). Everything else is the fast tier:
    python -m pytest -q tests -m "not slow"
A fast test that starts Python, a shell or msrun fails at once (_fast_tests_start_no_process), so a
missing mark cannot slow the fast tier down unseen.
"""
import gzip
import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "config", "cpc_tiny.yaml")


SLOW_FIXTURES = {"tiny_run", "classify_run", "classifier"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# programs a fast test may not start: the entry points, the scripts and their launcher (a compiler's
# `--version`, which building the CPU kernels asks once per process, is not among them)
STARTS_A_RUN = re.compile(r"^(python[0-9.]*|bash|sh|msrun)$")


def _program(args, shell):
    if shell:
        return "sh"
    first = args if isinstance(args, (str, bytes, os.PathLike)) else args[0]
    return os.path.basename(os.fsdecode(first))


@pytest.fixture(autouse=True)
def _fast_tests_start_no_process(request, monkeypatch):
    """In a test of the fast tier, starting Python, a shell or msrun fails the test naming the command."""
    if request.node.get_closest_marker("slow"):
        return
    real = subprocess.Popen

    class Guarded(real):
        def __init__(self, args, *rest, **kwargs):
            program = _program(args, kwargs.get("shell", False))
            if STARTS_A_RUN.match(program):
                pytest.fail(f"a test of the fast tier started a process ({args!r}): mark it @pytest.mark.slow",
                            pytrace=False)
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Guarded)


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
    """eval.py --eval_mode classify on tiny_run's checkpoint (10% and 100% labels): (run folder, output
    folder, downstream_metrics.json, stdout). A small t-SNE (200 codes per encoder, still a plot) and a
    coarse logistic grid (4 strengths, 3 folds, still a cross-validated choice) keep it short: together
    they took a third of its time at the defaults, and the tests' bounds on the logistic rows hold by far;
    the other rows do not depend on them."""
    run_dir, _ = tiny_run
    out = tmp_path_factory.mktemp("classify")
    proc = run_entry(["eval.py", "--eval_mode", "classify", "--config_path", TINY,
                      "--ckpt_path", str(run_dir / "cpc_best.ckpt"), "--output_path", str(out),
                      "--label_fractions", "0.1,1.0", "--tsne_points", "200", "--logistic_cs", "4",
                      "--logistic_folds", "3"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(out / "downstream_metrics.json", encoding="utf-8") as handle:
        return run_dir, out, json.load(handle), proc.stdout


@pytest.fixture(scope="session")
def classifier(ms_cpu, classify_run):
    """(checkpoint path, Cell, eval.py's accuracy): classifier.ckpt of eval.py --eval_mode classify
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


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def cpc_log():
    """The records of the 'cpc' logger (which does not propagate once a run has set up logging)."""
    logger, handler = logging.getLogger("cpc"), _Records()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)
