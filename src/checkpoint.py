"""Checkpoints: written atomically, carrying the model hyper-parameters, checked when loaded.

A checkpoint holds the parameters plus an entry 'cpc_meta' (a JSON string) with at least
{"kind": "cpc"|"encoder"|"classifier", "hparams": {...}} (a classifier also has "head":
"mlp"|"linear"); eval.py and export.py rebuild the network from
those hyper-parameters, so no flag has to be repeated. Files are saved under a temporary name in
the same folder and renamed, so an interrupted save never leaves a file that looks complete.
"""
import hashlib
import json
import logging
import os

import mindspore as ms

from src.config import IMAGE_MODEL_KEYS, MODEL_KEYS, SEQUENCE_TASK, stored_hparams
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
            ms.save_checkpoint(obj, tmp, append_dict={META_KEY: json.dumps(meta, sort_keys=True)})
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


def check_digest(path):
    """Where `path`.sha256 exists (sha256sum's format: HEX, then the file name), the file must match it:
    a damaged download or another file under the published name is refused before MindSpore reads it."""
    digest_path = path + DIGEST_SUFFIX
    if not os.path.isfile(digest_path):
        return
    with open(digest_path, encoding="utf-8", errors="replace") as handle:
        expected = (handle.read().split() or [""])[0].lower()
    actual = sha256_of(path)
    if actual != expected:
        raise CheckpointError(f"checkpoint {path} does not match {os.path.basename(digest_path)} (sha256 "
                              f"{actual[:12]}..., expected {expected[:12]}...): the file is damaged or not the "
                              f"published one")


def load(path):
    """(parameter dict, meta dict or None) of a checkpoint; CheckpointError if unreadable or if it
    does not match its published sha256."""
    path = require_file(path, "checkpoint", CheckpointError)  # a folder or 0 bytes: said so, not MindSpore's
    check_digest(path)
    try:
        params = ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError/... for corrupt files
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
    for key in MODEL_KEYS + IMAGE_MODEL_KEYS:
        if key in stored and stored[key] != getattr(cfg, key):
            log.info("%s = %r taken from the checkpoint (config says %r)", key, stored[key], getattr(cfg, key))
            setattr(cfg, key, stored[key])
