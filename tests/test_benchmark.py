"""The benchmark runs and reports every figure it promises (no speed is asserted: not a timed test)."""
import json

from tests.conftest import TINY, run_entry

KEYS = {"step_ms_median", "step_ms_min", "samples_per_s", "data_sequences_per_s", "device_target",
        "mindspore_version", "images_per_s", "fed_step_ms_median", "feed_overhead_pct"}


def test_benchmark_prints_one_json_line(tmp_path):
    proc = run_entry(["bash", "scripts/run_benchmark.sh", TINY, "CPU", "--steps", "3", "--warmup", "1",
                      "--profile_path", str(tmp_path / "prof")], env={"TORCH_REFERENCE": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert KEYS <= set(result)
    assert result["device_target"] == "CPU" and result["steps"] == 3
    assert all(result[k] > 0 for k in ("step_ms_median", "samples_per_s", "data_sequences_per_s", "images_per_s"))
    assert "operator types by time" in proc.stderr and "MatMul" in proc.stderr  # the profiler's table


def test_benchmark_bad_arguments():
    proc = run_entry(["bash", "scripts/run_benchmark.sh", "missing.yaml"])
    assert proc.returncode == 2 and "CONFIG_PATH not found" in proc.stderr
