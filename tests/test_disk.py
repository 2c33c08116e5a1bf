"""MindSpore's own habits on disk, tried with the real thing: a really full tmpfs
and a real ONNX export. Whatever MindSpore's writers leave or change stays in the private temporary
folder of src/utils/atomic.py, which is removed: the user's folder holds the finished files only."""
import os
import stat
import subprocess

import pytest

from src.utils.atomic import WriteError
from tests.conftest import TINY


@pytest.fixture
def full_disk(tmp_path):
    """A 9 MB tmpfs (unmounted afterwards); skipped where mounting is not permitted."""
    folder = tmp_path / "disk"
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=9m", "tmpfs", str(folder)], capture_output=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def _free(folder):
    info = os.statvfs(folder)
    return info.f_bavail * info.f_frsize


@pytest.mark.slow
def test_a_really_full_disk_keeps_no_temporary_file(ms_cpu, full_disk):
    """Two 4 MB checkpoints fill the 9 MB disk; the third and fourth saves fail with one line each and
    leave nothing (today MindSpore's own .<name>.tmp stays: 1.4 MB, so the next save fails sooner)."""
    from mindspore import nn

    from src import checkpoint
    net = nn.Dense(1000, 1000)  # 4 MB of float32 weights
    free_before = _free(full_disk)
    for i in range(2):
        checkpoint.save(net, str(full_disk / f"c{i}.ckpt"), {"kind": "test"})
    free_after_two = _free(full_disk)
    for i in (2, 3):
        with pytest.raises(WriteError, match=f"^cannot write checkpoint .*c{i}\\.ckpt: "):
            checkpoint.save(net, str(full_disk / f"c{i}.ckpt"), {"kind": "test"})
        assert sorted(os.listdir(full_disk)) == ["c0.ckpt", "c1.ckpt"]
        assert _free(full_disk) == free_after_two  # every byte of the failed write is given back
    assert free_before - free_after_two >= 8_000_000
    assert checkpoint.load(str(full_disk / "c1.ckpt"))[1] == {"kind": "test"}


@pytest.mark.slow
def test_onnx_export_leaves_the_target_folder_as_it_was(ms_cpu, tmp_path):
    """MindSpore's ONNX writer chmods the folder it writes into to 0700: not the user's folder."""
    import export
    from src import checkpoint
    from src.config import model_hparams, namespace
    from src.model.build import build_cpc
    hparams = model_hparams(namespace(image_size=28, color=False, padding="same", input_contrast=False,
                                      terms=2, predict_terms=2, code_size=32, hidden_size=32))
    ckpt = str(tmp_path / "cpc.ckpt")
    checkpoint.save(build_cpc(hparams, "cpu").encoder, ckpt, {"kind": "encoder", "hparams": hparams})
    target = tmp_path / "shared"
    target.mkdir()
    os.chmod(target, 0o775)
    export.main(["--config_path", TINY, "--ckpt_path", ckpt, "--net", "encoder", "--file_format", "ONNX",
                 "--file_name", str(target / "enc.onnx")])  # the suffix given: not doubled
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o775
    assert os.listdir(target) == ["enc.onnx"]
