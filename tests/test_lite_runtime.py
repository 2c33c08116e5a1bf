"""ascend310_infer on the real MindSpore Lite runtime (the 2.0 CPU wheel of scripts/fetch_lite.sh):
built, linked, run on both exported nets, its results compared with the MindSpore Cells.

MindSpore 2.10 writes MindIR v3, which Lite 2.0 cannot read, so the chain is the one of
INFER_RUNNER=cpp_onnx: checkpoint -> ONNX -> ascend310_infer/out/convert -> Lite MINDIR ->
preprocess.py -> out/main -> postprocess.py. .ci/run fetches the wheel before the tests; these
tests skip (one line) only when the wheel cannot be downloaded at all (no package registry)."""
import json
import os
import shutil
import subprocess

import mindspore as ms
import numpy as np
import pytest

from src.deploy import infer_io
from tests.conftest import REPO, assert_accuracy_matches, error_lines, run_entry
from tests.test_export import reference

pytestmark = pytest.mark.slow  # builds and runs the C++ program: end to end

CLASSIFIER_BATCH = 96  # 1,000 test digits: 10 full batches and one padded one
CPC_BATCH, CPC_BATCHES = 16, 4
FETCH_FAILED = 3  # scripts/fetch_lite.sh: the package registry could not be reached
MAIN = os.path.join(REPO, "ascend310_infer", "out", "main")
CONVERT = os.path.join(REPO, "ascend310_infer", "out", "convert")


def lite_env(home, **extra):
    """The environment of a Lite run: MS_LITE_HOME set, no LD_LIBRARY_PATH (the rpath must do)."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env.update(GLOG_v="3", MS_LITE_HOME=home, **extra)
    return env


def run_cmd(cmd, env, timeout=600):
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def lite_home():
    """The unpacked Lite wheel (fetched once, then cached in .lite/) with ascend310_infer built on it."""
    proc = run_entry(["bash", "scripts/fetch_lite.sh"])
    if proc.returncode == FETCH_FAILED:
        pytest.skip("mindspore-lite 2.0.0 wheel cannot be fetched (no package registry)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    home = proc.stdout.strip().splitlines()[-1]
    build = run_cmd(["bash", "ascend310_infer/build.sh"], lite_env(home))
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return home


def run_chain(home, ckpt, runs, net, batch, *preprocess_flags):
    """scripts/run_infer_310.sh with INFER_RUNNER=cpp_onnx; the run folder."""
    proc = run_cmd(["bash", "scripts/run_infer_310.sh", "CPU", ckpt, "", "0", *preprocess_flags],
                   lite_env(home, INFER_RUNNER="cpp_onnx", EXPORT_NET=net, EXPORT_BATCH_SIZE=str(batch),
                            RUNS_DIR=str(runs)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = [runs / d for d in os.listdir(runs)]
    for step in ("export", "build", "convert", "preprocess", "infer", "postprocess"):
        assert f"== {step}" in proc.stdout
    return run_dir, proc.stdout


def cell_outputs(cell, run_dir, shapes):
    """{batch name: (the Cell's output on the batch's input files, the C++ program's result)}."""
    pre, res = run_dir / "preprocess_Result", run_dir / "result_Files"
    pairs = {}
    for name in infer_io.batch_names(str(pre)):
        inputs = [ms.Tensor(infer_io.read_bin(os.path.join(infer_io.input_dir(str(pre), k), name), shape))
                  for k, shape in enumerate(shapes)]
        pairs[name] = (cell(*inputs).asnumpy(), np.fromfile(res / infer_io.result_name(name, 0), np.float32))
    return pairs


@pytest.fixture(scope="module")
def lite_classifier(lite_home, classifier, tmp_path_factory):
    run_dir, stdout = run_chain(lite_home, classifier[0], tmp_path_factory.mktemp("lite_runs"), "classifier",
                                CLASSIFIER_BATCH)
    return run_dir, stdout


def test_main_carries_an_rpath_and_the_converter_is_built(lite_home):
    dynamic = run_cmd(["readelf", "-d", MAIN], dict(os.environ)).stdout
    assert "(RPATH)" in dynamic and "(RUNPATH)" not in dynamic  # DT_RPATH reaches libdnnl.so.2 too
    assert os.path.join(lite_home, "mindspore_lite", "lib") in dynamic
    assert os.access(CONVERT, os.X_OK)


def test_classifier_on_lite_equals_the_cell_and_eval(classifier, lite_classifier):
    _, net, eval_accuracy = classifier
    run_dir, stdout = lite_classifier
    pairs = cell_outputs(net, run_dir, [[CLASSIFIER_BATCH, 1, 28, 28]])
    assert len(pairs) == 11
    for name, (want, got) in pairs.items():
        assert got.size == want.size, name
        np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-4, err_msg=name)
    labels = np.load(run_dir / "preprocess_Result" / infer_io.LABELS)
    logits = np.concatenate([want for want, _ in pairs.values()])[:len(labels)]
    cell_accuracy = float((logits.argmax(1) == labels).mean())
    assert cell_accuracy > 0.2  # well above chance: the comparison below is not that of two constant guesses
    with open(run_dir / "infer_metrics.json", encoding="utf-8") as handle:
        metrics = json.load(handle)
    lite = np.concatenate([got.reshape(want.shape) for want, got in pairs.values()])[:len(labels)]
    assert metrics["accuracy"] == float((lite.argmax(1) == labels).mean())  # postprocess: Lite's own logits
    assert_accuracy_matches(metrics["accuracy"], logits, labels, atol=1e-4)  # the Cell's but for near ties
    assert_accuracy_matches(eval_accuracy, logits, labels, atol=1e-4)
    assert metrics["latency"]["runner"] == "mindspore_lite" and metrics["latency"]["batches"] == 11
    assert "converted " in stdout and "model_lite.mindir" in stdout


def test_cpc_net_on_lite_equals_the_cell(ms_cpu, lite_home, tiny_run, tmp_path):
    run, _ = tiny_run
    ckpt = str(run / "cpc_best.ckpt")
    run_dir, _ = run_chain(lite_home, ckpt, tmp_path, "cpc", CPC_BATCH, "--num_batches", str(CPC_BATCHES))
    with open(run_dir / "preprocess_Result" / infer_io.INFO, encoding="utf-8") as handle:
        info = json.load(handle)
    assert info["net"] == "cpc" and info["num_images"] == CPC_BATCH * CPC_BATCHES
    image = info["image_shape"]
    shapes = [[CPC_BATCH, info["terms"]] + image, [CPC_BATCH, info["predict_terms"]] + image]
    from src import checkpoint
    cell = reference("cpc", ckpt, checkpoint.load(ckpt)[1]["hparams"])
    pairs = cell_outputs(cell, run_dir, shapes)
    assert len(pairs) == CPC_BATCHES
    for name, (want, got) in pairs.items():
        assert want.shape == (CPC_BATCH, 1) and got.size == CPC_BATCH, name
        np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-4, err_msg=name)
    labels = np.load(run_dir / "preprocess_Result" / infer_io.LABELS)
    assert set(labels.tolist()) == {0, 1}
    logits = np.concatenate([want for want, _ in pairs.values()])[:, 0]
    with open(run_dir / "infer_metrics.json", encoding="utf-8") as handle:
        metrics = json.load(handle)
    lite = np.concatenate([got.reshape(want.shape) for want, got in pairs.values()])[:, 0]
    assert metrics["net"] == "cpc" and metrics["accuracy"] == float(((lite > 0) == labels).mean())
    assert_accuracy_matches(metrics["accuracy"], logits, labels, atol=1e-4)  # the Cell's but for near ties


def assert_refused(proc, code, message, result):
    """Exit `code`, exactly one error line (Lite's own [WARNING] lines aside) holding `message`, no results."""
    lines = error_lines(proc.stderr)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not os.path.isdir(result) or not os.listdir(result)


def test_main_refuses_bad_inputs_with_one_line_and_no_results(lite_home, lite_classifier, tmp_path):
    run_dir, _ = lite_classifier
    model, pre = str(run_dir / "model_lite.mindir"), run_dir / "preprocess_Result"
    env = lite_env(lite_home)
    res = tmp_path / "res"

    def main(model_path, input_path, result_path=res):
        return run_cmd([MAIN, "--mindir_path", str(model_path), "--input_path", str(input_path),
                        "--result_path", str(result_path), "--device_type", "CPU"], env)

    assert_refused(main(tmp_path / "missing.mindir", pre), 2, "model file not found", res)
    (tmp_path / "empty" / "00_data").mkdir(parents=True)
    assert_refused(main(model, tmp_path / "empty"), 2, "no .bin input files in", res)
    # a wrong-sized last batch: found before the first predict, so no batch gets a result
    short = tmp_path / "short"
    shutil.copytree(pre, short)
    last = sorted(os.listdir(short / "00_data"))[-1]
    with open(short / "00_data" / last, "r+b") as handle:
        handle.truncate(100)
    assert_refused(main(model, short), 2, f"{last} holds 100 bytes; model input 0 [{CLASSIFIER_BATCH}, 1, 28, 28]", res)
    # an unwritable result folder (under a regular file: refused even for root)
    (tmp_path / "file").write_text("x")
    assert_refused(main(model, pre, tmp_path / "file" / "res"), 2, "cannot create or write the result folder",
                   tmp_path / "file" / "res")
    assert not os.path.exists(res)
    # nested result folders are created as tools/mindir_infer.py does, and the run then succeeds
    nested = tmp_path / "a" / "b" / "c"
    proc = main(model, pre, nested)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len([n for n in os.listdir(nested) if n.endswith("_0.bin")]) == 11
    with open(nested / infer_io.LATENCY, encoding="utf-8") as handle:
        latency = json.load(handle)
    assert latency["batches"] == 11 and latency["min_ms"] <= latency["median_ms"] <= latency["max_ms"]


def test_convert_refuses_bad_inputs(lite_home, tmp_path):
    env = lite_env(lite_home)
    proc = run_cmd([CONVERT, "--onnx_path", str(tmp_path / "none.onnx"), "--output_path", str(tmp_path / "m.mindir")],
                   env)
    assert_refused(proc, 2, "cannot read ONNX file", tmp_path)
    (tmp_path / "bad.onnx").write_bytes(b"\x01" * 32)
    proc = run_cmd([CONVERT, "--onnx_path", str(tmp_path / "bad.onnx"), "--output_path", str(tmp_path / "m.mindir")],
                   env)
    assert proc.returncode == 1
    errors = [line for line in error_lines(proc.stderr) if line.startswith("error:")]  # Lite logs as [ERROR]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot convert {tmp_path / 'bad.onnx'}: "), errors
    assert sorted(os.listdir(tmp_path)) == ["bad.onnx"]  # nothing half-written


def test_infer_bench_measures_three_runners_that_agree(lite_home, tmp_path):
    proc = run_entry(["-m", "tools.infer_bench", "--config_path", "config/cpc_tiny.yaml", "--batch_sizes", "2",
                      "--images", "6", "--output_path", str(tmp_path)], env={"MS_LITE_HOME": lite_home})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(tmp_path / "infer_bench.json", encoding="utf-8") as handle:
        (row,) = json.load(handle)["rows"]
    assert row["batch_size"] == 2 and row["batches"] == 3
    assert set(row["ms_per_image"]) == {"lite_cpp", "mindspore_python", "onnxruntime"}
    assert all(v > 0 for v in row["ms_per_image"].values())
    assert max(row["max_abs_diff_vs_mindspore"].values()) < 1e-4
    assert "| 2 | " in proc.stdout  # the table row
    bad = run_entry(["-m", "tools.infer_bench", "--batch_sizes", "0"])
    assert bad.returncode == 2 and error_lines(bad.stderr) == ["error: --batch_sizes must be >= 1, got [0]"]
