"""tools.compare_methods: several downstream studies into one table and plot, bad input refused first."""
import json
import os
import re

import pytest

from tools import compare_methods


def _study(root, name, loss, accuracies):
    """A training run's metrics.json and an eval folder's downstream_metrics.json; accuracies:
    {(method, fraction): [per-seed accuracy]}."""
    run, evaluation = root / name / "run", root / name / "eval"
    run.mkdir(parents=True)
    evaluation.mkdir()
    history = [{"epoch": 1, "epoch_seconds": 50.0}, {"epoch": 2, "epoch_seconds": 40.0, "knn_accuracy": 0.5}]
    (run / "metrics.json").write_text(json.dumps({"task": "twoview", "loss": loss, "steps": 120,
                                                  "train_seconds": 7.0, "history": history}))
    results = [{"method": m, "label_fraction": f, "seed": s, "accuracy": a}
               for (m, f), values in accuracies.items() for s, a in enumerate(values)]
    (evaluation / "downstream_metrics.json").write_text(json.dumps(
        {"results": results, "seeds": [0, 1], "ckpt_path": str(run / "cpc_last.ckpt")}))
    return f"{name}={evaluation}"


def test_the_table_holds_every_study_head_and_fraction_with_mean_and_std(tmp_path, capsys):
    simclr = _study(tmp_path, "simclr", "ntxent", {("cpc_logistic", 0.01): [0.5, 0.7],
                                                   ("cpc_logistic", 1.0): [0.9, 0.9],
                                                   ("random_mlp", 0.01): [0.2, 0.4]})
    supcon = _study(tmp_path, "supcon", "supcon", {("cpc_logistic", 0.01): [0.8, 0.8]})
    out = tmp_path / "out"
    assert compare_methods.main(["--study", simclr, "--study", supcon, "--output_path", str(out)]) == 0
    text = (out / "methods_table.md").read_text()
    assert text == capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "| pre-training + head | steps | wall minutes | 1% labels | 100% labels |"
    assert "| simclr + logistic | 120 | 1.5 | 0.600 +- 0.141 | 0.900 +- 0.000 |" in lines
    assert "| random encoder (simclr's architecture) + mlp | - | - | 0.300 +- 0.141 | - |" in lines
    assert "| supcon + logistic (uses all training labels) | 120 | 1.5 | 0.800 +- 0.000 | - |" in lines
    summary = json.loads((out / "methods_summary.json").read_text())
    assert [s["training"]["labels"] for s in summary["studies"]] == [False, True]
    assert summary["studies"][0]["training"]["knn_accuracy"] == 0.5
    assert (out / "methods_accuracy.png").stat().st_size > 0


@pytest.mark.parametrize("bad, message", [
    (["--study", "simclr"], "--study must be NAME=EVAL_DIR, got 'simclr'"),
    (["--study", "a=X", "--study", "a=Y"], "--study name 'a' is given twice"),
    (["--study", "a=MISSING"], "downstream metrics of 'a' not found: .*missing"),
])
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, capsys, bad, message):
    out = tmp_path / "out"
    argv = [a.replace("MISSING", str(tmp_path / "missing")) for a in bad] + ["--output_path", str(out)]
    with pytest.raises(SystemExit) as stop:
        compare_methods.run_main(compare_methods.main, argv)
    assert stop.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert re.search(message, err[0])
    assert not os.path.exists(out)
