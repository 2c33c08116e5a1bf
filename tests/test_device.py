"""src/device.py: why `auto` passed over Ascend/GPU, and why an explicit target is refused (monkeypatched:
no device is needed)."""
import logging

import pytest

import src.device as device
from src.utils.errors import CPCError

GPU_ERROR = ("Load dynamic library: libmindspore_gpu.so.11.6 failed. libcudart.so.11.0: cannot open shared "
             "object file: No such file or directory")
ASCEND_ERROR = ("Load dynamic library: libmindspore_ascend.so.2 failed. libge_runner.so: cannot open shared "
                "object file: No such file or directory")


@pytest.fixture
def no_device(monkeypatch):
    """Neither Ascend nor GPU usable; both plugins failed to load; no hardware signs."""
    monkeypatch.setattr(device, "plugin_available", lambda target: target == "CPU")
    monkeypatch.setattr(device, "plugin_load_errors", lambda: f"{ASCEND_ERROR}\n{GPU_ERROR}\n")
    monkeypatch.setattr(device, "HARDWARE_SIGNS", {"Ascend": (), "GPU": ()})
    monkeypatch.setattr(device, "device_problems", lambda target: [])


def test_auto_fallback_logs_one_line_with_each_reason(no_device, cpc_log):
    assert device.resolve_device_target("auto") == "CPU"
    assert len(cpc_log) == 1 and cpc_log[0].levelno == logging.INFO
    line = cpc_log[0].getMessage()
    assert "\n" not in line and line.startswith("device_target auto: using CPU")
    assert ("GPU: plugin not loadable: libmindspore_gpu.so.11.6: libcudart.so.11.0: cannot open shared object "
            "file") in line
    assert "Ascend: plugin not loadable: libmindspore_ascend.so.2: libge_runner.so" in line
    assert "libcudart" not in line.split("GPU:")[0]  # each target names only its own plugin's error


def test_auto_fallback_is_a_warning_where_the_hardware_is_present(no_device, cpc_log, monkeypatch, tmp_path):
    node = tmp_path / "nvidia0"
    node.write_text("")
    monkeypatch.setattr(device, "HARDWARE_SIGNS", {"Ascend": (), "GPU": (str(node),)})
    assert device.resolve_device_target("auto") == "CPU"
    assert [r.levelno for r in cpc_log] == [logging.WARNING]


def test_auto_takes_an_available_device_silently(monkeypatch, cpc_log):
    monkeypatch.setattr(device, "plugin_available", lambda target: target == "GPU")
    assert device.resolve_device_target("auto") == "GPU"
    assert cpc_log == []


def test_explicit_target_refused_with_the_reason(no_device):
    with pytest.raises(CPCError) as info:
        device.resolve_device_target("GPU")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("device_target GPU is not available on this machine: plugin not loadable: "
                              "libmindspore_gpu.so.11.6: libcudart.so.11.0")
    assert message.endswith("(use --device_target CPU or auto)")


def test_gpu_reason_puts_what_mindspore_checks_first(monkeypatch):
    """The pieces of src/device_env.py come before the loader's own error, in the one line."""
    monkeypatch.setattr(device, "plugin_available", lambda target: False)
    monkeypatch.setattr(device, "plugin_load_errors", lambda: ASCEND_ERROR)  # no GPU plugin was even tried
    pieces = ["CUDA_HOME is not set: x", "libcudnn.so.8 not found"]
    monkeypatch.setattr(device, "device_problems", lambda target: pieces)
    assert device.unavailable_reason("GPU") == "CUDA_HOME is not set: x; libcudnn.so.8 not found"


def test_is_available_raising_is_a_reason(monkeypatch):
    def broken(target):
        raise RuntimeError("plugin table corrupt\nsecond line")

    monkeypatch.setattr(device, "plugin_available", broken)
    assert device.unavailable_reason("Ascend") == ("device_context.ascend.is_available raised RuntimeError: "
                                                   "plugin table corrupt")
    assert device.unavailable_reason("CPU") is None and not device.device_available("Ascend")


def test_availability_is_asked_of_mindspore_device_context(monkeypatch):
    """2.10's replacement of the deprecated ms.hal.is_available answers (no GPU plugin here)."""
    def deprecated(target):
        raise AssertionError("ms.hal.is_available called")

    monkeypatch.setattr(device.ms.hal, "is_available", deprecated)
    asked = []
    monkeypatch.setattr(device.ms.device_context.gpu, "is_available", lambda: asked.append("GPU") or True)
    assert device.plugin_available("GPU") is True and asked == ["GPU"]


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_device_id_from_the_environment_is_checked(monkeypatch, value):
    from src.config import namespace
    from src.utils.errors import ConfigError
    monkeypatch.setenv("DEVICE_ID", value)
    with pytest.raises(ConfigError, match=f"environment variable DEVICE_ID must be a device index .*got '{value}'"):
        device.init_device(namespace(device_target="CPU"))
    monkeypatch.setenv("DEVICE_ID", " 3 ")
    assert device.device_id(namespace()) == 3


@pytest.mark.parametrize("name,value", [("CPC_KERNEL_TARGET", "portabel"), ("CPC_KERNEL_TARGET", ""),
                                        ("CPC_CPU_KERNELS", "off")])
def test_a_kernel_variable_with_a_value_the_kernels_do_not_read_is_refused(monkeypatch, name, value):
    """The kernels would take an unknown value as the default without a word; init_device (which
    every entry point calls before writing anything) names the variable and its values."""
    from src.config import namespace
    from src.utils.errors import ConfigError
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"environment variable {name} must be .* got '{value}'"):
        device.init_device(namespace(device_target="CPU"))
    monkeypatch.setenv(name, device.KERNEL_VARIABLES[name][-1])
    device.check_kernel_variables()


def test_init_device_sets_the_pipelines_prefetch_and_the_mmap_threshold(monkeypatch):
    """Both are process-wide, so every entry point gets them from init_device, before any pipeline."""
    import mindspore.dataset as ds

    from src.config import namespace
    asked = []
    monkeypatch.setattr(device, "set_mmap_threshold", asked.append)
    before = ds.config.get_prefetch_size()
    try:
        device.init_device(namespace(device_target="CPU", prefetch_size=3, mmap_threshold_mb=5))
        assert ds.config.get_prefetch_size() == 3 and asked == [5]
    finally:
        ds.config.set_prefetch_size(before)
