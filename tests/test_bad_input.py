"""Bad input, one row each: exit code 2, exactly one 'error:' line on stderr, nothing left behind.

Most rows call an entry point's main() in-process through src.utils.errors.run_main (what `python
train.py` does, without paying MindSpore's import per row); the rows marked subprocess run the
real command line."""
import importlib
import logging
import os
import re

import numpy as np
import pytest

from src import checkpoint
from src.config import model_hparams, namespace
from src.data.mnist import IMAGES_MAGIC, VAL_SIZE
from src.model.build import build_cpc
from src.utils.errors import run_main
from tests.conftest import TINY, bare_checkpoint, error_lines, fake_mnist, run_entry, write_idx

TRAIN_FLAGS = ["--epoch_size", "1", "--steps_per_epoch", "2", "--val_steps", "1", "--device_target", "CPU"]


def _data(tmp, damage):
    """A fake MNIST folder (train + t10k) with `damage` applied to its train files."""
    folder = tmp / "mnist"
    fake_mnist(str(folder), VAL_SIZE + 20)
    images, labels = folder / "train-images-idx3-ubyte", folder / "train-labels-idx1-ubyte"
    if damage == "truncated":
        images.write_bytes(images.read_bytes()[:-100])
    elif damage == "magic":
        images.write_bytes(labels.read_bytes())
    elif damage == "count":
        write_idx(str(labels), np.zeros(7, np.uint8))
    elif damage == "empty":
        for path in folder.iterdir():
            path.unlink()
    return ["--data_path", str(folder)]


def _yaml(tmp, text, keep_duplicates=False):
    """The tiny config plus `text`; its own lines of the keys `text` sets are dropped unless
    keep_duplicates (a key given twice is refused)."""
    path = tmp / "bad.yaml"
    given = {line.split(":")[0] for line in text.splitlines() if ":" in line}
    lines = [line for line in open(TINY, encoding="utf-8").read().splitlines(keepends=True)
             if keep_duplicates or line.split(":")[0] not in given]
    path.write_text("".join(lines) + text)
    return ["--config_path", str(path)]


def _binary_yaml(tmp):
    path = tmp / "binary.yaml"
    path.write_bytes(b"seed: 1\n\xff\xfe\x00\x9c\x81binary\x00")
    return ["--config_path", str(path)]


def _good_checkpoint(tmp):
    net = build_cpc(model_hparams(namespace(image_size=28, color=False, padding="same", terms=2,
                                            predict_terms=2, code_size=32, hidden_size=32)), "cpu")
    path = str(tmp / "good.ckpt")
    checkpoint.save(net, path, {"kind": "cpc", "hparams": model_hparams(namespace(
        image_size=28, color=False, padding="same", terms=2, predict_terms=2, code_size=32, hidden_size=32))})
    return path


def _truncated_checkpoint(tmp):
    path = _good_checkpoint(tmp)
    raw = open(path, "rb").read()
    os.chmod(path, 0o600)
    open(path, "wb").write(raw[: len(raw) // 2])
    return path


def _random_checkpoint(tmp):
    path = tmp / "random.ckpt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return str(path)


def _empty_checkpoint(tmp):
    (tmp / "empty.ckpt").write_bytes(b"")
    return ["--ckpt_path", str(tmp / "empty.ckpt")]


def _existing_file(tmp):
    (tmp / "taken").write_text("a user's file")
    return ["--output_path", str(tmp / "taken")]


def _tiny_lines():
    return len(open(TINY, encoding="utf-8").read().splitlines())


def _not_a_folder(tmp):
    (tmp / "file").write_text("x")
    return ["--output_path", str(tmp / "file" / "out")]


# (id, entry, argv builder (tmp folder -> extra args), pattern of the error line, run as a subprocess)
ROWS = [
    ("missing data folder", "train.py", lambda t: ["--data_path", str(t / "nope")],
     r"data_path .*nope is not a folder", True),
    ("folder without IDX files", "train.py", lambda t: _data(t, "empty"),
     r"MNIST file train-images-idx3-ubyte\[\.gz\] not found in", False),
    ("truncated IDX", "train.py", lambda t: _data(t, "truncated"),
     r"IDX file .*train-images-idx3-ubyte is truncated: header says 10020x28x28", False),
    ("wrong-magic IDX", "train.py", lambda t: _data(t, "magic"),
     rf"has magic number 2049, expected MNIST images \(magic {IMAGES_MAGIC}\)", False),
    ("images/labels count mismatch", "train.py", lambda t: _data(t, "count"),
     r"MNIST train files disagree: 10020 images but 7 labels", False),
    ("unknown config key", "train.py", lambda t: _yaml(t, "batchsize: 32\n"),
     r"unknown config key 'batchsize' in .*bad\.yaml", True),
    ("binary config file", "train.py", lambda t: _binary_yaml(t), r"config file .*binary\.yaml is not UTF-8 text",
     False),
    ("unknown flag", "train.py", lambda t: ["--termz", "3"], r"unrecognized arguments: --termz 3", False),
    ("wrong type", "train.py", lambda t: _yaml(t, "epoch_size: two\n"),
     r"config key 'epoch_size' must be of type int, got 'two'", False),
    ("terms out of range", "train.py", lambda t: ["--terms", "0"], r"config key 'terms' must be >= 1, got 0", False),
    ("predict_terms out of range", "eval.py", lambda t: ["--predict_terms", "-1"],
     r"config key 'predict_terms' must be >= 1, got -1", False),
    ("batch_size odd", "train.py", lambda t: ["--batch_size", "7"], r"config key 'batch_size' must be even", False),
    ("batch_size out of range", "train.py", lambda t: ["--batch_size", "0"],
     r"config key 'batch_size' must be >= 2, got 0", False),
    ("image_size too small", "train.py", lambda t: ["--image_size", "8"],
     r"config key 'image_size' must be >= 16, got 8", False),
    ("image_size too large", "train.py", lambda t: ["--image_size", "4096"],
     r"config key 'image_size' must be <= 256, got 4096", False),
    ("learning_rate negative", "train.py", lambda t: ["--learning_rate", "-0.1"],
     r"config key 'learning_rate' must be > 0, got -0.1", False),
    ("learning_rate infinite", "train.py", lambda t: ["--learning_rate", "inf"],
     r"config key 'learning_rate' must be a finite number", False),
    ("unknown device_target", "train.py", lambda t: ["--device_target", "TPU"],
     r"config key 'device_target' must be one of auto, Ascend, GPU, CPU, got 'TPU'", False),
    ("device target not present", "train.py", lambda t: ["--device_target", "GPU"],
     r"device_target GPU is not available on this machine", True),
    ("checkpoint of another configuration (eval)", "eval.py",
     lambda t: ["--ckpt_path", bare_checkpoint(t / "other.ckpt")],
     r"checkpoint .*other\.ckpt does not fit the configured network \(\d+ mismatched parameters\): "
     r".*encoder\.embedding\.weight \(16, 256\) != net \(32, 256\)", False),
    ("checkpoint of another configuration (export)", "export.py",
     lambda t: ["--ckpt_path", bare_checkpoint(t / "other.ckpt"), "--net", "cpc",
                "--file_name", str(t / "out" / "cpc")],
     r"does not fit the configured network .*\(16, 256\) != net \(32, 256\)", False),
    ("corrupted checkpoint", "eval.py", lambda t: ["--ckpt_path", _random_checkpoint(t)],
     r"cannot read checkpoint .*random\.ckpt", True),
    ("truncated checkpoint", "export.py",
     lambda t: ["--ckpt_path", _truncated_checkpoint(t), "--net", "cpc", "--file_name", str(t / "out" / "cpc")],
     r"cannot read checkpoint .*good\.ckpt", False),
    ("missing checkpoint", "eval.py", lambda t: ["--ckpt_path", str(t / "none.ckpt")],
     r"checkpoint not found: .*none\.ckpt", False),
    ("mixed precision on CPU", "train.py", lambda t: ["--amp_level", "O2"],
     r"amp_level O2 needs Ascend or GPU; use amp_level O0 on CPU", False),
    ("amp_level O1", "train.py", lambda t: ["--amp_level", "O1"], r"amp_level O1 is not supported", False),
    ("unwritable output folder", "train.py", _not_a_folder, r"output_path .*file/out cannot be written", True),
    # values MindSpore refuses, paths and names as people write them
    ("seed beyond MindSpore's range", "train.py", lambda t: ["--seed", "99999999999999"],
     r"config key 'seed' must be <= 4294967295, got 99999999999999", True),
    ("config key given twice", "train.py", lambda t: _yaml(t, "code_size: 16\n", keep_duplicates=True),
     rf"config key 'code_size' is given twice in .*bad\.yaml: lines \d+ and {_tiny_lines() + 1}$", False),
    ("YAML syntax error", "train.py", lambda t: _yaml(t, "lr_patience: [1,\n"),
     rf"cannot parse config file .*bad\.yaml: .* at line {_tiny_lines() + 2}, column 1$", False),
    ("YAML indentation error", "eval.py", lambda t: _yaml(t, "lr_patience: 1\n  head_steps: 2\n"),
     rf"mapping values are not allowed here at line {_tiny_lines() + 2}, column 13$", False),
    ("config path is a folder", "train.py", lambda t: ["--config_path", str(t)],
     r"config file .* is a folder, not a file$", False),
    ("checkpoint path is a folder", "eval.py", lambda t: ["--ckpt_path", str(t)],
     r"checkpoint .* is a folder, not a file$", False),
    ("empty checkpoint", "export.py", _empty_checkpoint, r"checkpoint .*empty\.ckpt is empty \(0 bytes\)$", False),
    ("output_path is an existing file", "train.py", _existing_file,
     r"output_path .*taken is an existing file, not a folder$", False),
    ("export file_name is a folder", "export.py",
     lambda t: ["--ckpt_path", _good_checkpoint(t), "--net", "cpc", "--file_name", str(t) + "/"],
     r"--file_name .* is a folder; give a file name", False),
]


@pytest.mark.parametrize("entry, build, pattern, subprocess", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
@pytest.mark.slow  # starts a process
def test_bad_input(ms_cpu, tmp_path, capsys, entry, build, pattern, subprocess):
    out = tmp_path / "out"
    argv = ["--config_path", TINY, "--output_path", str(out)] + (TRAIN_FLAGS if entry == "train.py" else [])
    argv += build(tmp_path)
    if subprocess:
        proc = run_entry([entry] + argv)
        code, stderr = proc.returncode, proc.stderr
        assert "Traceback" not in stderr
    else:
        main = importlib.import_module(entry[:-3]).main
        logging.getLogger("cpc").handlers.clear()  # an earlier in-process run's handlers hold closed streams
        with pytest.raises(SystemExit) as stop:
            run_main(main, argv)
        logging.getLogger("cpc").handlers.clear()
        code, stderr = stop.value.code, capsys.readouterr().err
    lines = error_lines(stderr)
    assert code == 2 and len(lines) == 1, stderr[-2000:]
    assert lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines[0]
    left = [p.name for p in out.rglob("*")] if out.exists() else []
    assert not [n for n in left if n.endswith((".ckpt", ".mindir", ".onnx", ".json")) or ".tmp" in n], left
