"""A checkpoint with a .sha256 beside it (as in pretrained/) is read only when it matches: a damaged
copy is refused with one line before MindSpore reads it; one without a digest loads as before."""
import pytest

from src import checkpoint
from src.utils.errors import CheckpointError, run_main
from tests.conftest import bare_checkpoint


def _published(tmp_path):
    path = bare_checkpoint(tmp_path / "model.ckpt")
    (tmp_path / "model.ckpt.sha256").write_text(f"{checkpoint.sha256_of(path)}  model.ckpt\n")
    return path


def test_matching_digest_loads(ms_cpu, tmp_path):
    params, _ = checkpoint.load(_published(tmp_path))
    assert params


def test_damaged_copy_is_refused_with_one_line(ms_cpu, tmp_path, capsys):
    path = _published(tmp_path)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    open(path, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match=r"does not match model\.ckpt\.sha256 .*damaged or not the published"):
        checkpoint.load(path)
    with pytest.raises(SystemExit) as stop:
        run_main(lambda argv: checkpoint.load(path))
    assert stop.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: checkpoint")


def test_no_digest_no_check(ms_cpu, tmp_path):
    path = bare_checkpoint(tmp_path / "plain.ckpt")
    assert checkpoint.load(path)[0]
