"""Export a trained network for inference: MINDIR everywhere, ONNX, AIR on Ascend (deprecated by
MindSpore 2.10, which logs that AIR will be removed: prefer MINDIR with MindSpore Lite).

    python export.py --ckpt_path EVAL/classifier.ckpt --net classifier --file_format MINDIR --batch_size 1 \
        --file_name cpc_classifier

--net classifier (image -> 10 digit logits; a classifier checkpoint), encoder (image -> code; a cpc,
encoder or classifier checkpoint) or cpc (context and future images -> logit; a cpc checkpoint).
The net is rebuilt from the hyper-parameters stored in the checkpoint (src/deploy/nets.py), never from
re-typed flags. Here --batch_size is the batch baked into the exported graph (default 1), not the
training key of the config, which export does not use. The file is written under a temporary name
and renamed, so a failed export leaves nothing behind.
"""
import os

import mindspore as ms

from src import checkpoint
from src.config import ArgParser, model_hparams, parse_config
from src.deploy import nets as deploy
from src.device import check_for_target, init_device
from src.methods import create_method
from src.utils.atomic import WriteError, private_folder
from src.utils.errors import ConfigError, CPCError, first_line, run_main
from src.utils.paths import expand

SUFFIX = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}


def _extra(parser):
    parser.add_argument("--net", default="classifier", choices=list(deploy.NETS),
                        help="classifier: image -> digit logits; encoder: image -> code; "
                             "cpc: context and future images -> logit")
    parser.add_argument("--file_format", default="MINDIR", choices=list(SUFFIX),
                        help="MINDIR (MindSpore, MindSpore Lite), ONNX, or AIR (Ascend only; deprecated by "
                             "MindSpore 2.10, which will remove it: use MINDIR with MindSpore Lite)")
    parser.add_argument("--file_name", default="cpc", help="output file; the format's suffix is added unless "
                                                           "it ends in it")


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


def output_file(file_name, file_format):
    """The file export writes: --file_name (`~` expanded) with the format's suffix added unless it is
    there already (enc.mindir stays enc.mindir); CPCError for a folder or a missing parent folder."""
    suffix = SUFFIX[file_format]
    path = expand(file_name)
    if path.endswith(os.sep) or os.path.isdir(path) or os.path.basename(path) in ("", ".", ".."):
        raise ConfigError(f"--file_name {file_name} is a folder; give a file name, e.g. "
                          f"{os.path.join(file_name, 'cpc')} (the suffix {suffix} is added)")
    final = os.path.abspath(path if path.lower().endswith(suffix) else path + suffix)
    if os.path.isdir(final):
        raise ConfigError(f"--file_name {file_name}: {final} is a folder")
    if not os.path.isdir(os.path.dirname(final)):
        raise CPCError(f"folder of --file_name does not exist: {os.path.dirname(final)}")
    return final


def write_graph(cell, tensors, stem, file_format):
    """MindSpore 2.10's writer of the format: mindspore.onnx.export for ONNX (ms.export(file_format=
    'ONNX') says it will be deleted and points there; same bytes here), ms.export for MINDIR and AIR
    (AIR itself is deprecated by MindSpore in favour of MINDIR with MindSpore Lite)."""
    if file_format == "ONNX":
        ms.onnx.export(cell, *tensors, file_name=stem)
    else:
        ms.export(cell, *tensors, file_name=stem, file_format=file_format)


def export_atomically(cell, inputs, final, file_format):
    """MindSpore's export (write_graph) into a private temporary folder beside `final`, then rename
    the one file it wrote to `final`. MindSpore chooses the written name (it adds the suffix) and
    ms.export's writers may change the mode of the folder they write into: both stay inside the
    private folder."""
    with private_folder(final, f"{file_format} file") as private:
        stem = os.path.join(private, "net")
        try:
            write_graph(cell, [ms.Tensor(x) for x in inputs], stem, file_format)
        except (RuntimeError, ValueError, TypeError) as exc:
            first = first_line(exc)
            raise CPCError(f"{file_format} export failed: {first}") from None
        written = [name for name in os.listdir(private) if name.endswith(SUFFIX[file_format])]
        if len(written) != 1:
            raise CPCError(f"export wrote {len(written)} files, expected one {SUFFIX[file_format]} file")
        try:
            os.replace(os.path.join(private, written[0]), final)
        except OSError as exc:
            raise WriteError(f"cannot write {final}: {exc.strerror or exc}") from None
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
    method = create_method(cfg.task)
    if cfg.net not in method.export_nets:
        raise ConfigError(f"--net {cfg.net} is not a net of the {cfg.task} method that trained {cfg.ckpt_path}: "
                          f"export --net {' or --net '.join(method.export_nets)}")
    target = init_device(cfg)
    if cfg.file_format == "AIR" and target != "Ascend":
        raise CPCError(f"AIR export needs an Ascend device (this run is on {target}); use MINDIR or ONNX")
    if cfg.net == "cpc":  # build_cpc constructs nn.GRU for the target before the unrolled GRU replaces it
        check_for_target(cfg, target)
    hparams = model_hparams(cfg)
    cell = deploy.build_inference_net(cfg.net, hparams, params, meta, cfg.ckpt_path)
    final = output_file(cfg.file_name, cfg.file_format)  # checked before anything is written
    export_atomically(cell, deploy.example_inputs(cfg.net, hparams, batch), final, cfg.file_format)
    print(f"exported {cfg.net} ({cfg.file_format}, batch {batch}) to {final}")


if __name__ == "__main__":
    run_main(main)
