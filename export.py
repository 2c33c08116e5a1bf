"""Export a trained CPC network for inference (MINDIR everywhere, AIR on Ascend, ONNX for the encoder).

    python export.py --ckpt_path OUT/cpc_best.ckpt --net encoder --file_format MINDIR --batch_size 1 --file_name cpc_encoder

The net is rebuilt from the hyper-parameters stored in the checkpoint and exported with the
device's native convolution (the export is for the inference device, not the training CPU).
The file is written under a temporary name and renamed, so a failed export leaves nothing.
"""
import glob
import logging
import os

import mindspore as ms
import numpy as np

from src import checkpoint
from src.config import model_hparams, parse_config
from src.device import init_device
from src.errors import CPCError, ConfigError, run_main
from src.model import build_cpc

log = logging.getLogger("cpc")
SUFFIX = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}


def _extra(parser):
    parser.add_argument("--net", default="encoder", choices=["encoder", "cpc"],
                        help="encoder: image -> code; cpc: context and future images -> logit")
    parser.add_argument("--file_format", default="MINDIR", choices=list(SUFFIX))
    parser.add_argument("--export_batch_size", type=int,
                        default=1, help="batch size baked into the exported graph")
    parser.add_argument("--file_name", default="cpc", help="output file name without suffix")


def main(argv=None):
    cfg = parse_config(argv, description="Export a CPC network", extra_args=_extra)
    if not cfg.ckpt_path:
        raise ConfigError("config key 'ckpt_path' is required: the checkpoint to export")
    if cfg.export_batch_size < 1:
        raise ConfigError(f"--export_batch_size must be >= 1, got {cfg.export_batch_size}")
    params, meta = checkpoint.load(cfg.ckpt_path)
    if cfg.net == "cpc" and meta is not None and meta.get("kind") == "encoder":
        raise CPCError(f"checkpoint {cfg.ckpt_path} holds only the encoder; --net cpc needs a CPC checkpoint")
    if cfg.net == "cpc" and cfg.file_format == "ONNX":
        raise CPCError("ONNX export of --net cpc is not supported: MindSpore cannot export nn.GRU to ONNX")
    checkpoint.apply_hparams(cfg, meta, cfg.ckpt_path)
    target = init_device(cfg)
    if cfg.file_format == "AIR" and target != "Ascend":
        raise CPCError(f"AIR export needs an Ascend device (this run is on {target}); use MINDIR or ONNX")
    net = build_cpc(model_hparams(cfg), fast_conv=False)
    checkpoint.load_into(net.encoder if cfg.net == "encoder" else net,
                         {k: v for k, v in params.items() if cfg.net == "cpc" or k.startswith("encoder.")},
                         cfg.ckpt_path)
    net.set_train(False)
    channels, size, batch = 3 if cfg.color else 1, cfg.image_size, cfg.export_batch_size
    if cfg.net == "encoder":
        cell, inputs = net.encoder, [np.zeros((batch, channels, size, size), np.float32)]
    else:
        cell = net
        inputs = [np.zeros((batch, cfg.terms, channels, size, size), np.float32),
                  np.zeros((batch, cfg.predict_terms, channels, size, size), np.float32)]
    final = os.path.abspath(cfg.file_name + SUFFIX[cfg.file_format])
    tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(cfg.file_name)}.tmp-{os.getpid()}")
    try:
        ms.export(cell, *[ms.Tensor(x) for x in inputs], file_name=tmp, file_format=cfg.file_format)
        written = glob.glob(tmp + "*")
        if len(written) != 1:
            raise CPCError(f"export wrote {len(written)} files, expected one {SUFFIX[cfg.file_format]} file")
        os.replace(written[0], final)
    finally:
        for leftover in glob.glob(tmp + "*"):
            os.remove(leftover)
    print(f"exported {cfg.net} ({cfg.file_format}, batch {batch}) to {final}")


if __name__ == "__main__":
    run_main(main)
