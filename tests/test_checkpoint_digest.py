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


def _tiny_cpc(tmp_path, name="crc.ckpt"):
    """A checkpoint written by src.checkpoint.save (with CRC) and the net it holds."""
    from src.config import model_hparams, namespace
    from src.model.build import build_cpc
    hparams = model_hparams(namespace(image_size=28, color=False, padding="same", terms=2, predict_terms=2,
                                      code_size=16, hidden_size=16))
    net = build_cpc(hparams, "cpu")
    path = str(tmp_path / name)
    checkpoint.save(net, path, {"kind": "cpc", "hparams": hparams})
    return path, net


def test_flipped_byte_in_a_weight_of_a_crc_checkpoint_is_refused(ms_cpu, tmp_path, capsys):
    """No .sha256 beside it: MindSpore's CRC32, written by every save, catches one flipped bit in a weight."""
    path, net = _tiny_cpc(tmp_path)
    assert checkpoint.has_crc(path) and not (tmp_path / "crc.ckpt.sha256").exists()
    raw = bytearray(open(path, "rb").read())
    weight = net.encoder.embedding.weight.asnumpy().tobytes()
    at = raw.find(weight)
    assert at > 0  # the tensor's bytes as stored
    raw[at + len(weight) // 2] ^= 0x01
    open(path, "wb").write(bytes(raw))
    with pytest.raises(CheckpointError, match=r"crc\.ckpt is damaged: its contents do not match the CRC32"):
        checkpoint.load(path)
    with pytest.raises(SystemExit) as stop:
        run_main(lambda argv: checkpoint.load(path))
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and err[0].startswith("error: checkpoint"), err


def test_intact_crc_checkpoint_loads_its_values(ms_cpu, tmp_path):
    path, net = _tiny_cpc(tmp_path)
    params, meta = checkpoint.load(path)
    assert meta["kind"] == "cpc"
    for param in net.get_parameters():
        assert (params[param.name].asnumpy() == param.asnumpy()).all(), param.name


def test_checkpoints_without_crc_still_load(ms_cpu, tmp_path):
    """Files written before the CRC (a plain save; the shipped pretrained/ files) load as before."""
    import os

    from tests.conftest import REPO
    old = bare_checkpoint(tmp_path / "old.ckpt")
    assert not checkpoint.has_crc(old) and checkpoint.load(old)[0]
    shipped = os.path.join(REPO, "pretrained", "cpc_mnist64_color_classifier.ckpt")
    if os.path.isfile(shipped):
        assert not checkpoint.has_crc(shipped)
        assert checkpoint.load(shipped)[1]["kind"] == "classifier"


@pytest.mark.parametrize("text, message", [
    ("not a digest\n", r"digest file .*model\.ckpt\.sha256 is malformed .*model\.ckpt was not checked"),
    ("", r"digest file .*model\.ckpt\.sha256 is malformed"),
    ("{digest}  other.ckpt\n", r"digest file .*model\.ckpt\.sha256 is the digest of 'other\.ckpt', not of "
                               r"model\.ckpt"),
])
def test_a_bad_digest_file_is_blamed_not_the_checkpoint(ms_cpu, tmp_path, text, message):
    path = bare_checkpoint(tmp_path / "model.ckpt")
    (tmp_path / "model.ckpt.sha256").write_text(text.format(digest=checkpoint.sha256_of(path)))
    with pytest.raises(CheckpointError, match=message) as refused:
        checkpoint.load(path)
    assert "damaged" not in str(refused.value)


@pytest.mark.parametrize("text", ["{digest}\n", "{digest} *model.ckpt\n", "{DIGEST}  model.ckpt\n"])
def test_digest_files_as_tools_write_them_are_read(ms_cpu, tmp_path, text):
    path = bare_checkpoint(tmp_path / "model.ckpt")
    digest = checkpoint.sha256_of(path)
    (tmp_path / "model.ckpt.sha256").write_text(text.format(digest=digest, DIGEST=digest.upper()))
    assert checkpoint.load(path)[0]


@pytest.mark.slow
def test_eval_refuses_a_flipped_byte_with_one_line_and_nothing_else(ms_cpu, tmp_path):
    """The command as a user runs it: stderr holds the one error line (not MindSpore's own log line
    blaming permissions), exit 2, no metrics."""
    from tests.conftest import TINY, run_entry
    path, net = _tiny_cpc(tmp_path)
    raw = bytearray(open(path, "rb").read())
    weight = net.encoder.embedding.weight.asnumpy().tobytes()
    raw[raw.find(weight) + 7] ^= 0x80
    open(path, "wb").write(bytes(raw))
    proc = run_entry(["eval.py", "--config_path", TINY, "--ckpt_path", path, "--output_path", str(tmp_path / "e")])
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "WARNING" not in line]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: checkpoint") and "CRC32" in lines[0]
    assert not (tmp_path / "e" / "eval_metrics.json").exists()
