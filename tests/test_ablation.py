"""tools/ablation.py: the grid flags, the flags each run gets, the table; one tiny grid end to end."""
import json

import pytest

from src.utils.errors import ConfigError
from tests.conftest import REPO, TINY, run_entry
from tools import ablation


def test_grid_flags_are_not_forwarded_and_the_rest_is():
    argv = ["--config_path", "c.yaml", "--grid_terms", "1,2", "--epoch_size", "1", "--grid_predict_terms=3"]
    assert ablation.forwarded(argv) == ["--config_path", "c.yaml", "--epoch_size", "1"]


@pytest.mark.parametrize("text", ["", "a", "0,2", "1,-1"])
def test_bad_grid_is_refused(text):
    with pytest.raises(ConfigError, match="--grid_terms"):
        ablation.parse_grid(text, "--grid_terms")


def test_table_has_one_row_per_cell_with_its_figures():
    rows = [{"terms": t, "predict_terms": 2, "val_accuracy": 0.9 + t / 100, "chance_accuracy": 0.5,
             "val_accuracy_per_step": [0.8, 0.7], "knn_accuracy": 0.61, "probe_accuracy": None,
             "train_seconds": 12.0} for t in (1, 3)]
    lines = ablation.table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[2] == "| 1 | 2 | 0.910 (0.50) | 0.800 0.700 | 0.610 | - | 12 |"
    assert lines[3].startswith("| 3 | 2 | 0.930 ")


@pytest.mark.slow
def test_tiny_grid_end_to_end(tmp_path):
    proc = run_entry(["-m", "tools.ablation", "--config_path", TINY, "--grid_terms", "1", "--grid_predict_terms",
                      "1,2", "--epoch_size", "1", "--steps_per_epoch", "20", "--output_path", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "ablation.json").read_text())["rows"]
    assert [(r["terms"], r["predict_terms"]) for r in rows] == [(1, 1), (1, 2)]
    assert [len(r["val_accuracy_per_step"]) for r in rows] == [1, 2]
    for row in rows:
        metrics = json.loads((tmp_path / f"t{row['terms']}_p{row['predict_terms']}" / "metrics.json").read_text())
        assert metrics["steps"] == 20 and row["knn_accuracy"] == metrics["history"][-1]["knn_accuracy"]
    assert proc.stdout.strip().splitlines()[-2:] == (tmp_path / "ablation.md").read_text().strip().splitlines()[-2:]


@pytest.mark.slow  # starts a process
def test_script_runs_the_grid_into_a_run_folder(tmp_path):
    proc = run_entry(["bash", "scripts/run_ablation.sh", "CPU", TINY, "", "--grid_terms", "1", "--grid_predict_terms",
                      "1", "--epoch_size", "1", "--steps_per_epoch", "10"], env={"RUNS_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("ablation_cpc_tiny_") and f"run folder: {run_dir} (exit 0)" in proc.stdout
    (row,) = json.loads((run_dir / "ablation.json").read_text())["rows"]
    assert (row["terms"], row["predict_terms"]) == (1, 1) and (run_dir / "t1_p1" / "metrics.json").is_file()
    bad = run_entry(["bash", "scripts/run_ablation.sh", "CPU", str(tmp_path / "none.yaml")],
                    env={"RUNS_DIR": str(tmp_path)})
    assert bad.returncode == 2 and "CONFIG_PATH" in bad.stderr and len(list(tmp_path.iterdir())) == 1


def test_a_repeated_grid_value_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"--grid_predict_terms names 2 twice \('1,2,2'\)"):
        ablation.parse_grid("1,2,2", "--grid_predict_terms")


def _refused(argv, capsys):
    from src.utils.errors import run_main
    with pytest.raises(SystemExit) as stop:
        run_main(ablation.main, argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize("flags, message", [
    (["--config_path", f"{REPO}/config/cpc_image28_gray.yaml"], r"varies terms and predict_terms, keys of the sequence "
                                                        r"task; .*cpc_image28_gray\.yaml is task: image"),
    (["--grid_predict_terms", "2,1", "--loss", "infonce", "--batch_size", "4", "--predict_terms", "2",
      "--negatives_across_steps", "true", "--num_negatives", "7"],
     r"grid cell terms 1 predict_terms 1: config key 'num_negatives' must be <= 3"),
    (["--grid_predict_terms", "1,1"], r"--grid_predict_terms names 1 twice"),
])
def test_a_grid_that_cannot_run_whole_is_refused_before_the_first_cell(tmp_path, capsys, monkeypatch, flags,
                                                                         message):
    """An image config, a cell whose config is invalid, a repeated value: one line, nothing trained or written."""
    import re
    monkeypatch.setattr(ablation, "run_cell", lambda *a: pytest.fail("a cell was trained"))
    line = _refused(["--config_path", TINY, "--grid_terms", "1", "--output_path", str(tmp_path / "o")] + flags,
                    capsys)
    assert re.search(message, line), line
    assert not (tmp_path / "o").exists()


def test_a_cell_folder_holding_an_earlier_runs_checkpoints_is_refused_up_front(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ablation, "run_cell", lambda *a: pytest.fail("a cell was trained"))
    (tmp_path / "t1_p2").mkdir()
    (tmp_path / "t1_p2" / "cpc_e1_s5.ckpt").write_bytes(b"x")
    line = _refused(["--config_path", TINY, "--grid_terms", "1", "--grid_predict_terms", "1,2", "--output_path",
                     str(tmp_path)], capsys)
    assert "t1_p2 holds rolling checkpoints of an earlier run" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1_p2"]
