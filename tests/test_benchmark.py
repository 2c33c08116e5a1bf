"""The benchmark runs and reports every figure it promises (no speed is asserted: not a timed test)."""
import json
import re

import numpy as np
import pytest

from tests.conftest import REPO, TINY, run_entry

KEYS = {"step_ms_median", "step_ms_min", "samples_per_s", "data_sequences_per_s", "device_target",
        "mindspore_version", "images_per_s", "images_per_s_fresh", "images_per_s_best", "images_per_s_fresh_best",
        "fed_step_ms_median", "feed_overhead_pct",
        "encoder_form"}


@pytest.mark.slow  # starts a process
def test_benchmark_prints_one_json_line(tmp_path):
    proc = run_entry(["bash", "scripts/run_benchmark.sh", "CPU", TINY, "--steps", "3", "--warmup", "1",
                      "--profile_path", str(tmp_path / "prof")], env={"TORCH_REFERENCE": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert KEYS <= set(result) and not {"task", "parameters"} & set(result)  # the sequence line as it always was
    assert result["device_target"] == "CPU" and result["steps"] == 3 and result["encoder_form"] == "kernel"
    assert all(result[k] > 0 for k in ("step_ms_median", "samples_per_s", "data_sequences_per_s", "images_per_s",
                                       "images_per_s_fresh"))
    # the fastest call is at least as fast as the median one
    assert result["images_per_s_best"] >= result["images_per_s"]
    assert result["images_per_s_fresh_best"] >= result["images_per_s_fresh"]
    # the profiler's tables for the steps and for the encoder's inference calls: each a header, then
    # two tables (operator types, parts of the net) of rows with ms per call and share, largest first
    lines = proc.stderr.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("profiler data in")]
    assert len(headers) == 2 and "steps, ms per call (10 calls)" in lines[headers[0]], lines
    assert "encoder inference calls" in lines[headers[1]] and (tmp_path / "prof" / "inference").is_dir()
    for start in headers:
        tables = _profile_tables(lines[start + 1:])
        assert [title for title, _ in tables] == ["operator type", "part of the net"], lines[start:start + 5]
        for _, rows in tables:
            times = [float(r.group(2)) for r in rows]
            assert rows and times == sorted(times, reverse=True) and sum(times) > 0
            assert sum(float(r.group(3)) for r in rows) <= 100.5 and len({r.group(1) for r in rows}) == len(rows)


def _profile_tables(lines):
    """[(title, [row matches])] of the tables that follow a profile's header."""
    tables = []
    for line in lines:
        title = re.fullmatch(r"  by (.+) \(all: [\d.]+ ms per call\):", line)
        row = re.fullmatch(r"    (.+?)\s+([\d.]+) ms\s+([\d.]+)%  x\d+", line)
        if title:
            tables.append((title.group(1), []))
        elif row and tables:
            tables[-1][1].append(row)
        else:
            break
    return tables


IMAGE28 = f"{REPO}/config/cpc_image28_gray.yaml"
# a small image net: the test checks what the line reports, not how fast
SMALL_IMAGE = ["--batch_size", "4", "--code_size", "16", "--hidden_size", "16", "--encoder_channels", "8",
               "--encoder_hidden", "32"]
IMAGE_KEYS = KEYS - {"data_sequences_per_s"} | {"task", "parameters", "data_images_per_s", "patch_size", "grid",
                                               "offsets", "norm", "loss"}


@pytest.mark.slow  # starts a process
def test_benchmark_times_the_image_task(ms_cpu):
    from src.config import model_hparams, parse_config
    from src.model.build import build_cpc
    proc = run_entry(["bash", "scripts/run_benchmark.sh", "CPU", IMAGE28, "--steps", "2", "--warmup", "1"]
                     + SMALL_IMAGE, env={"TORCH_REFERENCE": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert IMAGE_KEYS <= set(result) and "data_sequences_per_s" not in result and "terms" not in result
    assert result["task"] == "image" and result["loss"] == "patch_infonce" and result["encoder_form"] == "kernel"
    assert result["steps"] == 2 and result["batch_size"] == 4 and result["grid"] == 6 and result["offsets"] == 4
    assert all(result[k] > 0 for k in ("step_ms_median", "fed_step_ms_median", "samples_per_s", "data_images_per_s",
                                       "images_per_s", "images_per_s_fresh"))
    assert result["images_per_s_best"] >= result["images_per_s"]
    cfg = parse_config(["--config_path", IMAGE28] + SMALL_IMAGE)
    net = build_cpc(model_hparams(cfg), "cpu")
    assert result["parameters"] == sum(int(np.prod(p.shape)) for p in net.trainable_params())


@pytest.mark.slow  # starts a process
def test_benchmark_bad_arguments():
    proc = run_entry(["bash", "scripts/run_benchmark.sh", "CPU", "missing.yaml"])
    assert proc.returncode == 2 and "CONFIG_PATH not found" in proc.stderr
