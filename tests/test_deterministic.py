"""deterministic: accepted from the command line; on CPU a logged no-op (its runs already repeat);
on a device target MindSpore's set_deterministic is really called, before the device is set."""
import os
import subprocess
import sys

import pytest

from src.config import namespace, parse_config
from tests.conftest import REPO

# init_device with the target resolution alone replaced: this machine has no device, so set_device
# then fails, after set_deterministic has run; MindSpore records the call (once per process) and
# sets HCCL_DETERMINISTIC for the collectives.
DEVICE_SCRIPT = """
import os, sys
from src import device
from src.config import namespace
device.resolve_device_target = lambda requested: sys.argv[1]
try:
    device.init_device(namespace(deterministic=sys.argv[2] == "on"))
except RuntimeError as exc:
    print("set_device:", str(exc).splitlines()[0])
from mindspore._c_expression import DeviceManagerConf
print("configured", DeviceManagerConf.get_instance().is_deterministic_configured())
print("HCCL_DETERMINISTIC", os.environ.get("HCCL_DETERMINISTIC"))
"""


def test_key_is_accepted_and_logged_as_a_no_op_on_cpu(ms_cpu, cpc_log, monkeypatch):
    from mindspore._c_expression import DeviceManagerConf

    from src import device
    monkeypatch.delenv("HCCL_DETERMINISTIC", raising=False)
    assert parse_config(["--deterministic", "true"]).deterministic is True
    assert device.init_device(namespace(device_target="CPU", deterministic=True)) == "CPU"
    assert any("deterministic" in r.getMessage() and "CPU" in r.getMessage() for r in cpc_log)
    assert not DeviceManagerConf.get_instance().is_deterministic_configured()
    assert "HCCL_DETERMINISTIC" not in os.environ


@pytest.mark.slow
@pytest.mark.parametrize("target, wanted, called", [("Ascend", "on", True), ("GPU", "on", True),
                                                    ("Ascend", "off", False)])
def test_a_device_target_calls_set_deterministic_first(target, wanted, called):
    proc = subprocess.run([sys.executable, "-c", DEVICE_SCRIPT, target, wanted], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("set_device:") and target in lines[0]  # the device step came after
    assert f"configured {called}" in lines
    assert ("HCCL_DETERMINISTIC true" in lines) is called
