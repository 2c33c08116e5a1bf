"""tools/publish_pretrained.py checks everything before writing and publishes all or nothing: an image-task
run is refused up front, and a failure while writing leaves the output folder exactly as it was, its
card matching its files."""
import json

import pytest

from src import checkpoint
from src.config import model_hparams, namespace
from src.utils.atomic import WriteError
from src.utils.errors import run_main
from src.utils.runlog import write_json
from tools import publish_pretrained

SMALL = dict(image_size=28, color=False, padding="same", terms=2, predict_terms=2, code_size=16, hidden_size=16,
             encoder_channels=8, encoder_hidden=16, test_steps=1)
IMAGE = dict(SMALL, task="image", patch_size=8, patch_stride=4, encoder_layers=3, input_contrast=False)


def _run(tmp_path, keys):
    """A run folder (cpc_best.ckpt, metrics.json) and an eval folder (classifier.ckpt, downstream metrics)."""
    from src.model.build import build_cpc
    from src.model.classifier import build_classifier
    hparams = model_hparams(namespace(**keys))
    run, ev = tmp_path / "run", tmp_path / "eval"
    run.mkdir()
    ev.mkdir()
    checkpoint.save(build_cpc(hparams, "cpu"), str(run / "cpc_best.ckpt"), {"kind": "cpc", "hparams": hparams})
    checkpoint.save(build_classifier(hparams, "mlp", "cpu"), str(ev / "classifier.ckpt"),
                    {"kind": "classifier", "hparams": hparams, "head": "mlp"})
    (run / "metrics.json").write_text(json.dumps({"history": [{"val_accuracy": 0.5, "epoch": 1}]}))
    (ev / "downstream_metrics.json").write_text(json.dumps({"seeds": [0], "summary": []}))
    return ["--run_dir", str(run), "--eval_dir", str(ev)]


def _published_folder(tmp_path):
    out = tmp_path / "pretrained"
    out.mkdir()
    for name, text in (("cpc_mnist64_color.ckpt", "old net"), ("cpc_mnist64_color.json", "{}"),
                       ("README.txt", "kept")):
        (out / name).write_text(text)
    return out


def _contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_an_image_task_run_is_refused_before_anything_is_written(ms_cpu, tmp_path, capsys):
    out = _published_folder(tmp_path)
    before = _contents(out)
    with pytest.raises(SystemExit) as stop:
        run_main(publish_pretrained.main, _run(tmp_path, IMAGE) + ["--output_dir", str(out)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stop.value.code == 2 and len(lines) == 1, lines
    assert "is of the image task; tools.publish_pretrained publishes the sequence task's model" in lines[0]
    assert _contents(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["eval", "pretrained", "run"]


def test_a_failure_while_writing_leaves_the_folder_as_it_was(ms_cpu, tmp_path, monkeypatch):
    out = _published_folder(tmp_path)
    before = _contents(out)
    argv = _run(tmp_path, SMALL) + ["--output_dir", str(out)]
    # the figures are not what this test is about: measured elsewhere (tests/test_pretrained.py)
    monkeypatch.setattr(publish_pretrained, "contrastive_figures", lambda net, hparams: {"test_accuracy": 0.5})
    monkeypatch.setattr(publish_pretrained, "classifier_accuracy", lambda net, hparams: (0.1, 1000))

    def fail(*args):
        raise WriteError("cannot write JSON file: No space left on device")
    monkeypatch.setattr(publish_pretrained, "write_json", fail)  # the card is the last file written
    with pytest.raises(WriteError):
        publish_pretrained.main(argv)
    assert _contents(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "pretrained", "run"]  # no staging left
    monkeypatch.setattr(publish_pretrained, "write_json", write_json)
    publish_pretrained.main(argv)  # the same command, nothing failing: every file replaced at once
    card = json.loads((out / "cpc_mnist64_color.json").read_text())
    for entry in card["files"].values():
        assert checkpoint.sha256_of(str(out / entry["file"])) == entry["sha256"]
        assert (out / (entry["file"] + ".sha256")).read_text().split()[0] == entry["sha256"]
    assert (out / "README.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "pretrained", "run"]
