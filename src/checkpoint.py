"""Checkpoints: written atomically, carrying the model hyper-parameters, checked when loaded.

A checkpoint holds the parameters plus an entry 'cpc_meta' (a JSON string) with at least
{"kind": "cpc"|"encoder"|"classifier", "hparams": {...}} (a classifier also has "head":
"mlp"|"linear"); eval.py and export.py rebuild the network from
those hyper-parameters, so no flag has to be repeated. Files are saved under a temporary name in
the same folder and renamed, so an interrupted save never leaves a file that looks complete.

Every checkpoint is written with MindSpore's CRC32 (save_checkpoint(crc_check=True) appends
b"crc_num" + 10 bytes after the protobuf records) and read with load_checkpoint(crc_check=True)
whenever it carries one, so a byte flipped anywhere in it is refused instead of evaluating to
nonsense. Files written before (pretrained/*.ckpt among them) have no CRC and load as before; a
published file is guarded by its .sha256 instead.
"""
import hashlib
import json
import logging
import os
import re
from contextlib import contextmanager

import mindspore as ms

from src.config import SEQUENCE_TASK, STORED_MODEL_KEYS, stored_hparams
from src.utils.atomic import WriteError, atomic_write
from src.utils.errors import CheckpointError, first_line
from src.utils.paths import require_file

log = logging.getLogger("cpc")

META_KEY = "cpc_meta"


def save(obj, path, meta):
    """Save a Cell (or list of {'name','data'} dicts) with `meta` to `path`, atomically; WriteError
    (one line, the temporary file removed, an older `path` intact) when it cannot be written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "checkpoint", suffix=".ckpt") as tmp:
        try:
            ms.save_checkpoint(obj, tmp, append_dict={META_KEY: json.dumps(meta, sort_keys=True)}, crc_check=True)
        except RuntimeError as exc:  # MindSpore's own writer reports a failed write so
            first = first_line(exc)
            raise WriteError(f"cannot write checkpoint {path}: {first}") from None


DIGEST_SUFFIX = ".sha256"  # a published checkpoint (pretrained/) carries its digest beside it


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_digest(digest_path, path):
    """The hex digest a .sha256 file gives for `path` (sha256sum's line: HEX, two spaces or ' *', the
    file name; a bare HEX is taken too); CheckpointError naming the .sha256 when it is malformed or
    names another file, so an intact checkpoint is not blamed for its digest file."""
    with open(digest_path, "rb") as handle:
        text = handle.read(4096).decode("utf-8", errors="replace")
    fields = text.split()
    expected = fields[0].lower() if fields else ""
    if len(fields) not in (1, 2) or not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise CheckpointError(f"digest file {digest_path} is malformed (expected one line '<64 hex digits>  "
                              f"{os.path.basename(path)}', as sha256sum writes): {path} was not checked; "
                              f"restore the .sha256 or remove it")
    named = fields[1].lstrip("*") if len(fields) == 2 else os.path.basename(path)
    if os.path.basename(named) != os.path.basename(path):
        raise CheckpointError(f"digest file {digest_path} is the digest of '{named}', not of "
                              f"{os.path.basename(path)}: {path} was not checked; restore its own .sha256")
    return expected


def check_digest(path):
    """Where `path`.sha256 exists, the file must match it: a damaged download or another file under
    the published name is refused before MindSpore reads it."""
    digest_path = path + DIGEST_SUFFIX
    if not os.path.isfile(digest_path):
        return
    expected = _read_digest(digest_path, path)
    actual = sha256_of(path)
    if actual != expected:
        raise CheckpointError(f"checkpoint {path} does not match {os.path.basename(digest_path)} (sha256 "
                              f"{actual[:12]}..., expected {expected[:12]}...): the file is damaged or not the "
                              f"published one")


CRC_MARK = b"crc_num"  # MindSpore's CRC trailer: the mark, then the CRC32 in 10 big-endian bytes


def has_crc(path):
    """Whether the file ends in MindSpore's CRC trailer (the test load_checkpoint itself makes)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() < len(CRC_MARK) + 10:
            return False
        handle.seek(-(len(CRC_MARK) + 10), os.SEEK_END)
        return handle.read(len(CRC_MARK)) == CRC_MARK


@contextmanager
def _quiet_mindspore():
    """MindSpore logs its own [ERROR] line before raising on a damaged file; the CheckpointError that
    follows is the one line the user gets."""
    logger = getattr(ms.log, "_get_logger", lambda: None)()
    level = logger.level if logger is not None else None
    if logger is not None:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        if logger is not None:
            logger.setLevel(level)


def _crc_failed(exc):
    """Whether MindSpore's exception (or one it wraps) is its CRC mismatch."""
    while exc is not None:
        if "crc check is failed" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def load(path):
    """(parameter dict, meta dict or None) of a checkpoint; CheckpointError if unreadable or if it
    does not match its published sha256."""
    path = require_file(path, "checkpoint", CheckpointError)  # a folder or 0 bytes: said so, not MindSpore's
    check_digest(path)
    crc = has_crc(path)
    try:
        with _quiet_mindspore():
            params = ms.load_checkpoint(path, crc_check=crc)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError/... for corrupt files
        if crc and _crc_failed(exc):  # MindSpore's own message blames permissions
            raise CheckpointError(f"checkpoint {path} is damaged: its contents do not match the CRC32 stored "
                                  f"in it") from None
        first = first_line(exc)
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    meta = params.pop(META_KEY, None)
    try:
        meta = json.loads(meta) if isinstance(meta, str) else None
    except json.JSONDecodeError:
        meta = None
    return params, meta


def load_into(net, params, path):
    """Load `params` into `net`; CheckpointError listing every missing or mis-shaped parameter."""
    problems, names = [], set()
    for param in net.get_parameters():  # full names, e.g. 'encoder.dense.weight' also for net.encoder
        name = param.name
        names.add(name)
        if name not in params:
            problems.append(f"{name} missing")
        elif tuple(params[name].shape) != tuple(param.shape):
            problems.append(f"{name} {tuple(params[name].shape)} != net {tuple(param.shape)}")
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... {len(problems) - 8} more" if len(problems) > 8 else "")
        raise CheckpointError(f"checkpoint {path} does not fit the configured network "
                              f"({len(problems)} mismatched parameters): {shown}")
    ms.load_param_into_net(net, {k: v for k, v in params.items() if k in names}, strict_load=True)


def apply_hparams(cfg, meta, path):
    """Take the model keys from the checkpoint's metadata (the net it was trained as)."""
    if meta is None or "hparams" not in meta:
        log.info("checkpoint %s carries no hyper-parameters: building the net from the config", path)
        return
    # a checkpoint written before a model key existed was trained with its old value (stored_hparams);
    # a checkpoint without a task key is a sequence checkpoint
    stored = {**SEQUENCE_TASK, **stored_hparams(meta["hparams"])}
    for key in STORED_MODEL_KEYS:
        if key in stored and stored[key] != getattr(cfg, key):
            log.info("%s = %r taken from the checkpoint (config says %r)", key, stored[key], getattr(cfg, key))
            setattr(cfg, key, stored[key])


# what each kind of checkpoint holds, to name it when a command is given the wrong kind
KIND_TEXT = {"cpc": "a full CPC net", "encoder": "only the encoder",
             "classifier": "a digit classifier (encoder + digit head, written by eval.py --eval_mode classify)"}


def require_kind(meta, path, accepted, needs):
    """CheckpointError naming the checkpoint's kind unless it is one of `accepted` (no metadata: let
    load_into judge); `needs` says what the command needs, e.g. 'a CPC checkpoint (cpc_best.ckpt)'."""
    kind = None if meta is None else meta.get("kind")
    if kind is None or kind in accepted:
        return
    raise CheckpointError(f"checkpoint {path} holds {KIND_TEXT.get(kind, f'a checkpoint of kind {kind!r}')} "
                          f"(kind '{kind}'); {needs}")
