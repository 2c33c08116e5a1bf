"""The 310 chain on CPU: preprocess -> MINDIR inference (Python runner) -> postprocess, and the C++ sources."""
import json
import os
import shutil
import subprocess

import mindspore as ms
import numpy as np
import pytest

import export
import postprocess
import preprocess
from src.data.dataset import render_digits
from src.data.mnist import load_split
from src.deploy import infer_io
from src.utils.errors import ConfigError, CPCError, DataError
from tests.conftest import REPO, TINY, assert_accuracy_matches, error_lines, run_entry

BATCH = 96  # 1,000 test digits: 10 full batches and one padded one
MS_INCLUDE = os.path.join(os.path.dirname(REPO), "shared", "ms-include")


@pytest.fixture(scope="module")
def mindir(classifier, tmp_path_factory):
    name = str(tmp_path_factory.mktemp("mindir") / "cpc_classifier")
    export.main(["--config_path", TINY, "--ckpt_path", classifier[0], "--net", "classifier",
                 "--batch_size", str(BATCH), "--file_name", name])
    return name + ".mindir"


def test_chain_accuracy_equals_the_cell_and_eval(classifier, mindir, tmp_path):
    _, net, eval_accuracy = classifier
    images, labels = load_split("", "test")
    x = render_digits(images, 28, False, 0, "test")
    logits = net(ms.Tensor(x)).asnumpy()
    cell_accuracy = float((logits.argmax(1) == labels).mean())
    assert cell_accuracy > 0.2  # well above chance (0.1): the equality below is not that of two constant guesses

    proc = run_entry(["bash", "scripts/run_infer_310.sh", "CPU", mindir, "", "0"],
                     env={"INFER_RUNNER": "python", "RUNS_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run_dir,) = [tmp_path / d for d in os.listdir(tmp_path)]
    with open(run_dir / "infer_metrics.json", encoding="utf-8") as handle:
        metrics = json.load(handle)
    assert metrics["num_images"] == len(labels) and metrics["batch_size"] == BATCH
    assert metrics["latency"]["batches"] == -(-len(labels) // BATCH)
    # the result files hold the Cell's logits, in the C++ program's naming and layout
    names = infer_io.batch_names(str(run_dir / "preprocess_Result"))
    got = np.concatenate([np.fromfile(run_dir / "result_Files" / infer_io.result_name(n, 0), np.float32)
                          for n in names]).reshape(-1, 10)[:len(labels)]
    np.testing.assert_allclose(got, logits, atol=1e-5)
    # postprocess reports the accuracy of the chain's own logits, exactly; that is the Cell's and
    # eval.py's but for near ties (native conv2d in the MINDIR, the gather form in the Cell)
    assert metrics["accuracy"] == float((got.argmax(1) == labels).mean())
    assert f"accuracy {metrics['accuracy']:.4f} ({metrics['correct']} of {len(labels)} test digits)" in proc.stdout
    assert_accuracy_matches(metrics["accuracy"], logits, labels, atol=1e-5)
    assert_accuracy_matches(eval_accuracy, logits, labels, atol=1e-5)


def test_preprocess_refuses_a_bad_mindir_and_a_used_folder_and_the_chain_stops(ms_cpu, mindir, tmp_path):
    name = str(tmp_path / "cpc")
    with open(name + ".mindir", "wb") as handle:
        handle.write(b"\xff" * 64)  # no MINDIR: preprocess.py cannot read its inputs
    with pytest.raises(CPCError, match="is not a MINDIR file"):
        preprocess.main(["--mindir_path", name + ".mindir", "--output_path", str(tmp_path / "pre")])
    proc = run_entry(["bash", "scripts/run_infer_310.sh", "CPU", name + ".mindir"],
                     env={"INFER_RUNNER": "python", "RUNS_DIR": str(tmp_path / "runs")})
    assert proc.returncode == 2
    assert "error: step 'preprocess' failed (exit 2)" in proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "result_Files").exists() and not (run_dir / "infer_metrics.json").exists()
    shutil.rmtree(tmp_path / "runs")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old.bin").write_bytes(b"")
    with pytest.raises(CPCError, match="exists and is not an empty folder"):
        preprocess.main(["--mindir_path", mindir, "--output_path", str(tmp_path / "used")])
    assert sorted(os.listdir(tmp_path)) == ["cpc.mindir", "used"]


def test_postprocess_refuses_missing_or_misshaped_results(tmp_path):
    pre, res = tmp_path / "pre", tmp_path / "res"
    preprocess.write_batches(str(pre), np.zeros((5, 1, 28, 28), np.float32), np.arange(5), 2,
                             {"batch_size": 2, "num_images": 5})
    res.mkdir()
    for i in range(3):
        infer_io.write_bin(str(res / f"digits_{i:05d}_0.bin"), np.eye(10, dtype=np.float32)[[2 * i, 2 * i + 1]])
    postprocess.main(["--data_path", str(pre), "--result_path", str(res)])
    with open(tmp_path / "infer_metrics.json", encoding="utf-8") as handle:
        assert json.load(handle)["correct"] == 5
    infer_io.write_bin(str(res / "digits_00002_0.bin"), np.zeros((2, 32), np.float32))  # codes, not logits
    with pytest.raises(DataError, match="expected 2 x 10 digit logits"):
        postprocess.main(["--data_path", str(pre), "--result_path", str(res)])
    os.remove(res / "digits_00002_0.bin")
    with pytest.raises(DataError, match="file not found: .*digits_00002_0.bin"):
        postprocess.main(["--data_path", str(pre), "--result_path", str(res)])


@pytest.mark.slow  # starts a process
def test_run_infer_310_needs_ms_lite_home(tmp_path):
    model = tmp_path / "m.mindir"
    model.write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k != "MS_LITE_HOME"}
    env.update(GLOG_v="3", RUNS_DIR=str(tmp_path / "runs"))
    proc = subprocess.run(["bash", "scripts/run_infer_310.sh", "CPU", str(model)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert error_lines(proc.stderr)[0].startswith("error: MS_LITE_HOME is not set: point it at an unpacked "
                                                  "MindSpore Lite package")
    assert not (tmp_path / "runs").exists()  # stopped before any step ran


@pytest.mark.slow  # starts a process
def test_cpp_sources_compile_against_the_mindspore_headers():
    compiler = shutil.which("g++")
    if compiler is None or not os.path.isfile(os.path.join(MS_INCLUDE, "include", "api", "model.h")):
        pytest.skip(f"needs g++ and MindSpore's include/api headers in {MS_INCLUDE}")
    infer = os.path.join(REPO, "ascend310_infer")
    proc = subprocess.run([compiler, "-fsyntax-only", "-std=c++17", "-Wall", "-Wextra", "-Werror",
                           "-isystem", MS_INCLUDE, "-I", infer, os.path.join(infer, "src", "main.cc"),
                           os.path.join(infer, "src", "utils.cc")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("damage, message", [
    ("json", r"preprocess.py's record .*preprocess\.json is damaged \(not JSON"),
    ("json_list", r"preprocess\.json holds no JSON object"),
    ("batch", r"preprocess\.json has batch_size 'two', expected a whole number >= 1"),
    ("labels", r"labels .*labels\.npy are damaged"),
    ("labels_2d", r"labels .*labels\.npy hold float64 \(2, 2\), expected a non-empty 1-D integer array"),
    ("labels_empty", r"labels .*labels\.npy is empty \(0 bytes\)"),
])
def test_postprocess_on_a_damaged_record_or_labels_is_one_line(tmp_path, damage, message):
    pre, res = tmp_path / "pre", tmp_path / "res"
    preprocess.write_batches(str(pre), np.zeros((2, 1, 28, 28), np.float32), np.arange(2), 2,
                             {"batch_size": 2, "num_images": 2})
    res.mkdir()
    infer_io.write_bin(str(res / "digits_00000_0.bin"), np.eye(10, dtype=np.float32)[:2])
    info, labels = pre / infer_io.INFO, pre / infer_io.LABELS
    if damage == "json":
        info.write_text('{"batch_size": 2, "num_')
    elif damage == "json_list":
        info.write_text("[2]")
    elif damage == "batch":
        info.write_text('{"batch_size": "two"}')
    elif damage == "labels":
        labels.write_bytes(labels.read_bytes()[:60])
    elif damage == "labels_2d":
        np.save(str(labels), np.zeros((2, 2)))
    else:
        labels.write_bytes(b"")
    with pytest.raises(DataError, match=message):
        postprocess.main(["--data_path", str(pre), "--result_path", str(res)])
    assert not (tmp_path / "infer_metrics.json").exists()


def test_preprocess_seed_is_bounded_like_the_configs():
    with pytest.raises(ConfigError, match=r"--seed must be in \[0, 4294967295\], got 99999999999999"):
        preprocess.parse_args(["--mindir_path", "m.mindir", "--output_path", "out", "--seed", "99999999999999"])
