"""What MindSpore 2.10 itself checks before it loads a device plugin, one line per missing piece.

Read off the 2.10 wheel and observed on CPU with a stand-in nvcc (docs/environment.md says how):
- GPU: the plugin loader (lib/libmindspore_hardware_abstract.so, SelectGpuPlugin) looks only at
  CUDA_HOME: unset, it logs "Please set env CUDA_HOME" at INFO and tries no GPU plugin (nvcc on PATH
  is ignored). Set, it runs `$CUDA_HOME/bin/nvcc --version` and takes the newest plugin the
  release reaches within CUDA 11: 11.1-11.5 -> lib/plugin/libmindspore_gpu.so.11.1, 11.6 and later
  11.x -> .so.11.6; 11.0 or 12+ -> "can not find suitable gpu plugin". The plugin then needs the
  CUDA 11 libraries below (readelf -d), found through its RPATH (/usr/local/cuda/lib64),
  LD_LIBRARY_PATH or the ldconfig cache.
- Ascend: lib/plugin/libmindspore_ascend.so.2 needs CANN's libraries (readelf -d), which CANN's
  set_env.sh puts on LD_LIBRARY_PATH along with ASCEND_HOME_PATH and ASCEND_OPP_PATH.
"""
import os
import re
import shutil
import subprocess

# plugin (CUDA release it was built for) -> the CUDA 11 libraries it loads (readelf -d, MindSpore 2.10)
_CUDA11_LIBS = ("libcudart.so.11.0", "libcublas.so.11", "libcudnn.so.8", "libcufft.so.10",
                "libcurand.so.10", "libcusolver.so.11", "libcusparse.so.11")
GPU_PLUGIN_LIBS = {(11, 1): _CUDA11_LIBS + ("libnvrtc.so.11.1",), (11, 6): _CUDA11_LIBS + ("libnvrtc.so.11.2",)}
GPU_RPATH = ("/usr/local/cuda/lib64",)  # the plugin's own RPATH, searched first
ASCEND_LIBS = ("libascendcl.so", "libge_runner.so", "libgraph.so", "libmsprofiler.so")
ASCEND_ENV = ("ASCEND_HOME_PATH", "ASCEND_OPP_PATH")
SYSTEM_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
               "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu")


def nvcc_release(cuda_home):
    """(major, minor) that `$CUDA_HOME/bin/nvcc --version` reports, as MindSpore reads it; None if
    there is no such nvcc or it names no release."""
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    if not os.access(nvcc, os.X_OK):
        return None
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"Cuda compilation tools, release (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def gpu_plugin_for(release):
    """The wheel's GPU plugin that MindSpore picks for a CUDA release: the newest one not above it,
    within the same major version; None for CUDA 11.0 or 12+."""
    fitting = [plugin for plugin in GPU_PLUGIN_LIBS if plugin[0] == release[0] and plugin <= release]
    return max(fitting) if fitting else None


def _ldconfig_cache():
    """{library file name: path} of the dynamic loader's cache (empty where ldconfig is absent)."""
    ldconfig = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
    if not ldconfig:
        return {}
    try:
        out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\S+) \(.*\) => (\S+)$", out, flags=re.M)}


def missing_libraries(names, environ, first_dirs=(), system=True):
    """The names the dynamic loader would not find: not in first_dirs (an RPATH), LD_LIBRARY_PATH,
    the ldconfig cache or the system folders (system=False: only the first two, for tests)."""
    dirs = list(first_dirs) + [d for d in environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    if system:
        dirs += SYSTEM_DIRS
    cache = _ldconfig_cache() if system else {}
    return [name for name in names
            if name not in cache and not any(os.path.exists(os.path.join(d, name)) for d in dirs)]


def gpu_problems(environ=None, system=True):
    """One line per piece MindSpore's GPU plugin lacks on this machine ([] if nothing is missing)."""
    environ = os.environ if environ is None else environ
    home = environ.get("CUDA_HOME", "")
    if not home:
        on_path = shutil.which("nvcc", path=environ.get("PATH"))
        ignored = f" (nvcc on PATH at {on_path} is ignored)" if on_path else ""
        return [f"CUDA_HOME is not set: MindSpore 2.10 looks for its GPU plugin only through "
                f"$CUDA_HOME/bin/nvcc{ignored}; set CUDA_HOME to a CUDA 11.1-11.8 installation"]
    release = nvcc_release(home)
    if release is None:
        return [f"CUDA_HOME={home} has no bin/nvcc that reports a release (MindSpore reads the CUDA "
                f"version from `$CUDA_HOME/bin/nvcc --version`)"]
    plugin = gpu_plugin_for(release)
    if plugin is None:
        return [f"CUDA_HOME={home}: nvcc reports CUDA {release[0]}.{release[1]}; this MindSpore 2.10 wheel has "
                f"GPU plugins for CUDA 11.1 and 11.6 only (11.1-11.8 work)"]
    missing = missing_libraries(GPU_PLUGIN_LIBS[plugin], environ, GPU_RPATH, system)
    return [f"{name} not found (needed by the CUDA {plugin[0]}.{plugin[1]} GPU plugin; add its folder to "
            f"LD_LIBRARY_PATH)" for name in missing]


def ascend_problems(environ=None, system=True):
    """One line per piece MindSpore's Ascend plugin lacks: CANN's environment and libraries."""
    environ = os.environ if environ is None else environ
    problems = [f"{key} is not set (source CANN's set_env.sh, e.g. /usr/local/Ascend/ascend-toolkit/set_env.sh)"
                for key in ASCEND_ENV if not environ.get(key)]
    problems += [f"{name} not found (a CANN library the Ascend plugin loads; CANN's set_env.sh puts it on "
                 f"LD_LIBRARY_PATH)" for name in missing_libraries(ASCEND_LIBS, environ, (), system)]
    chip = ascend_chip(environ)
    if chip and not chip.upper().startswith("910B"):
        problems.append(f"chip {chip}: MindSpore 2.10 ships Ascend kernels for the 910B series only "
                        f"(lib/plugin/ascend/custom_ascendc_910b); see docs/environment.md for other chips")
    return problems


def ascend_chip(environ):
    """The first NPU's chip name as `npu-smi info` prints it (e.g. '910B3'); None without npu-smi."""
    smi = shutil.which("npu-smi", path=environ.get("PATH"))
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "info"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^\|\s*\d+\s+(\S+)\s*\|", out, flags=re.M)  # '| 0     910B3     | OK ...'
    return match.group(1) if match else None


def device_problems(target, environ=None, system=True):
    """The missing pieces for 'GPU' or 'Ascend' (CPU needs nothing)."""
    if target == "GPU":
        return gpu_problems(environ, system)
    if target == "Ascend":
        return ascend_problems(environ, system)
    return []
