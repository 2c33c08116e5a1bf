"""Export a trained network for inference: MINDIR everywhere, AIR on Ascend, ONNX.

    python export.py --ckpt_path EVAL/classifier.ckpt --net classifier --file_format MINDIR --batch_size 1 \
        --file_name cpc_classifier

--net classifier (image -> 10 digit logits; a classifier checkpoint), encoder (image -> code; a cpc,
encoder or classifier checkpoint) or cpc (context and future images -> logit; a cpc checkpoint).
The net is rebuilt from the hyper-parameters stored in the checkpoint (src/deploy/nets.py), never from
re-typed flags. Here --batch_size is the batch baked into the exported graph (default 1), not the
training key of the config, which export does not use. The file is written under a temporary name
and renamed, so a failed export leaves nothing behind.
"""
import glob
import os

import mindspore as ms

from src import checkpoint
from src.config import ArgParser, model_hparams, parse_config
from src.deploy import nets as deploy
from src.device import check_for_target, init_device
from src.utils.atomic import WriteError
from src.utils.errors import ConfigError, CPCError, first_line, run_main

SUFFIX = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}


def _extra(parser):
    parser.add_argument("--net", default="classifier", choices=list(deploy.NETS),
                        help="classifier: image -> digit logits; encoder: image -> code; "
                             "cpc: context and future images -> logit")
    parser.add_argument("--file_format", default="MINDIR", choices=list(SUFFIX))
    parser.add_argument("--file_name", default="cpc", help="output file name without suffix")


# --batch_size is taken out of the command line before parsing (split_batch_size); say so in --help
KEY_HELP = {"batch_size": "batch baked into the exported graph (default: 1)"}


def split_batch_size(argv):
    """(export batch size, the other arguments): export's --batch_size is the exported graph's batch."""
    pre = ArgParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--batch_size", type=int, default=1)
    known, rest = pre.parse_known_args(argv)
    if known.batch_size < 1:
        raise ConfigError(f"--batch_size (the exported graph's batch) must be >= 1, got {known.batch_size}")
    return known.batch_size, rest


def export_atomically(cell, inputs, file_name, file_format):
    """ms.export to a temporary name in the target folder, then rename to file_name + suffix."""
    final = os.path.abspath(file_name + SUFFIX[file_format])
    folder = os.path.dirname(final)
    if not os.path.isdir(folder):
        raise CPCError(f"folder of --file_name does not exist: {folder}")
    tmp = os.path.join(folder, f".{os.path.basename(final)}.tmp-{os.getpid()}")
    try:
        try:
            ms.export(cell, *[ms.Tensor(x) for x in inputs], file_name=tmp, file_format=file_format)
        except (RuntimeError, ValueError, TypeError) as exc:
            first = first_line(exc)
            raise CPCError(f"{file_format} export failed: {first}") from None
        written = glob.glob(glob.escape(tmp) + "*")
        if len(written) != 1:
            raise CPCError(f"export wrote {len(written)} files, expected one {SUFFIX[file_format]} file")
        os.replace(written[0], final)
    except OSError as exc:
        raise WriteError(f"cannot write {final}: {exc.strerror or exc}") from None
    finally:
        for leftover in glob.glob(glob.escape(tmp) + "*"):
            os.remove(leftover)
    return final


def main(argv=None):
    batch, argv = split_batch_size(argv)
    cfg = parse_config(argv, description="Export a CPC network (--batch_size N: the exported graph's batch, "
                                         "default 1)", extra_args=_extra, key_help=KEY_HELP)
    if not cfg.ckpt_path:
        raise ConfigError("config key 'ckpt_path' is required: the checkpoint to export")
    params, meta = checkpoint.load(cfg.ckpt_path)
    deploy.check_kind(cfg.net, meta, cfg.ckpt_path)
    checkpoint.apply_hparams(cfg, meta, cfg.ckpt_path)
    if cfg.task == "image" and cfg.net == "cpc":
        raise ConfigError(f"--net cpc is the sequence task's network; {cfg.ckpt_path} is an image-task "
                          f"checkpoint: export --net encoder (image -> vector) or --net classifier")
    target = init_device(cfg)
    if cfg.file_format == "AIR" and target != "Ascend":
        raise CPCError(f"AIR export needs an Ascend device (this run is on {target}); use MINDIR or ONNX")
    if cfg.net == "cpc":  # build_cpc constructs nn.GRU for the target before the unrolled GRU replaces it
        check_for_target(cfg, target)
    hparams = model_hparams(cfg)
    cell = deploy.build_inference_net(cfg.net, hparams, params, meta, cfg.ckpt_path)
    final = export_atomically(cell, deploy.example_inputs(cfg.net, hparams, batch), cfg.file_name, cfg.file_format)
    print(f"exported {cfg.net} ({cfg.file_format}, batch {batch}) to {final}")


if __name__ == "__main__":
    run_main(main)
