"""src/device_env.py: each missing piece MindSpore 2.10 checks before loading a device plugin, faked on
this CPU machine (a CUDA_HOME with and without an nvcc that reports a release, library folders with
and without the files, an npu-smi), and the plugin it names checked against MindSpore's own loader."""
import os
import stat
import subprocess
import sys

import pytest

from src import device_env
from tests.conftest import REPO

CUDA11 = device_env.GPU_PLUGIN_LIBS[(11, 6)]


def _script(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _cuda_home(tmp_path, release):
    home = tmp_path / f"cuda{release}"
    _script(home / "bin" / "nvcc", f"echo 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
                                   f"echo 'Cuda compilation tools, release {release}, V{release}.1'\n")
    return home


def _libs(tmp_path, names):
    folder = tmp_path / "libs"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def test_no_cuda_home_names_the_variable_and_the_ignored_nvcc(tmp_path):
    nvcc = _script(tmp_path / "bin" / "nvcc", "echo 'Cuda compilation tools, release 11.6, V11.6.1'\n")
    (line,) = device_env.gpu_problems({"PATH": str(nvcc.parent)}, system=False)
    assert line.startswith("CUDA_HOME is not set") and f"nvcc on PATH at {nvcc} is ignored" in line


def test_cuda_home_without_nvcc(tmp_path):
    (line,) = device_env.gpu_problems({"CUDA_HOME": str(tmp_path)}, system=False)
    assert f"CUDA_HOME={tmp_path} has no bin/nvcc" in line


@pytest.mark.parametrize("release", ["11.0", "12.4", "13.0"])
def test_a_release_without_a_plugin(tmp_path, release):
    (line,) = device_env.gpu_problems({"CUDA_HOME": str(_cuda_home(tmp_path, release))}, system=False)
    assert f"nvcc reports CUDA {release}" in line and "11.1 and 11.6 only" in line


def test_each_missing_library_is_one_line(tmp_path):
    home = _cuda_home(tmp_path, "11.6")
    present = [name for name in CUDA11 if name != "libcudnn.so.8" and name != "libnvrtc.so.11.2"]
    env = {"CUDA_HOME": str(home), "LD_LIBRARY_PATH": str(_libs(tmp_path, present))}
    lines = device_env.gpu_problems(env, system=False)
    assert [line.split()[0] for line in lines] == ["libcudnn.so.8", "libnvrtc.so.11.2"]
    assert all("CUDA 11.6 GPU plugin" in line and "LD_LIBRARY_PATH" in line for line in lines)


def test_everything_present_is_no_problem(tmp_path):
    env = {"CUDA_HOME": str(_cuda_home(tmp_path, "11.8")), "LD_LIBRARY_PATH": str(_libs(tmp_path, CUDA11))}
    assert device_env.gpu_problems(env, system=False) == []


def test_cuda_11_3_needs_the_11_1_plugin_libraries(tmp_path):
    env = {"CUDA_HOME": str(_cuda_home(tmp_path, "11.3")), "LD_LIBRARY_PATH": str(_libs(tmp_path, CUDA11))}
    (line,) = device_env.gpu_problems(env, system=False)  # 11.6's nvrtc is there, 11.1's is not
    assert line.startswith("libnvrtc.so.11.1 not found") and "CUDA 11.1 GPU plugin" in line


def test_ascend_environment_libraries_and_chip(tmp_path):
    smi = _script(tmp_path / "bin" / "npu-smi",
                  "echo '| NPU   Name                | Health        |'\n"
                  "echo '| 0     910ProB             | OK            |'\n")
    env = {"ASCEND_HOME_PATH": "/usr/local/Ascend/ascend-toolkit/latest", "PATH": str(smi.parent),
           "LD_LIBRARY_PATH": str(_libs(tmp_path, ["libascendcl.so", "libgraph.so", "libmsprofiler.so"]))}
    lines = device_env.ascend_problems(env, system=False)
    assert lines[0].startswith("ASCEND_OPP_PATH is not set")
    assert lines[1].startswith("libge_runner.so not found")
    assert lines[2].startswith("chip 910ProB: MindSpore 2.10 ships Ascend kernels for the 910B series only")
    assert len(lines) == 3


def test_a_910b_with_cann_is_no_problem(tmp_path):
    smi = _script(tmp_path / "bin" / "npu-smi", "echo '| 0     910B3               | OK            |'\n")
    env = {"ASCEND_HOME_PATH": "a", "ASCEND_OPP_PATH": "b", "PATH": str(smi.parent),
           "LD_LIBRARY_PATH": str(_libs(tmp_path, device_env.ASCEND_LIBS))}
    assert device_env.ascend_problems(env, system=False) == []


@pytest.mark.slow
@pytest.mark.parametrize("release", ["11.3", "11.6", "12.4"])
def test_the_plugin_named_is_the_one_mindspore_tries(tmp_path, release):
    """MindSpore's own loader, with the stand-in nvcc as CUDA_HOME: the plugin it tries to open (or
    that it finds none) is the one gpu_plugin_for names for that release."""
    env = dict(os.environ, CUDA_HOME=str(_cuda_home(tmp_path, release)), GLOG_v="1")
    proc = subprocess.run([sys.executable, "-c", "import mindspore"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    plugin = device_env.gpu_plugin_for(tuple(int(x) for x in release.split(".")))
    if plugin is None:
        assert "can not find suitable gpu plugin" in proc.stderr
    else:
        assert f"libmindspore_gpu.so.{plugin[0]}.{plugin[1]}" in proc.stderr
