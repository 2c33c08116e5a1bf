"""tools/ablation.py: the grid flags, the flags each run gets, the table; one tiny grid end to end."""
import json

import pytest

from src.utils.errors import ConfigError
from tests.conftest import TINY, run_entry
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
